"""XLA flags of the learner's process, set from outside the learning rule.

The learner node gets them in its process environment (launch/local.py, beside the BLAS
thread settings); the benchmark and the tests, which run the learner in their own
process, call `request_fast_math()` before anything compiles. XLA reads XLA_FLAGS once,
at a process's first compilation.

Fast math lets XLA:CPU reassociate float sums, which lets LLVM vectorise the layer norm's
and the output layer's row sums: about 10% off the learner update on a 2-core machine
(docs/results.md, issue 5). Results change only at rounding level. NaN and Inf handling
is kept (`xla_cpu_fast_math_honor_nans/infs` stay at their default, true), so the learner's
non-finite update guard still works. A fast-math setting the user already put in
XLA_FLAGS is left alone.
"""

from __future__ import annotations

import os

FAST_MATH_FLAG = "--xla_cpu_enable_fast_math=true"


def with_fast_math(flags: str) -> str:
    """`flags` (an XLA_FLAGS value) with fast math on, unless it already says either way."""
    if "xla_cpu_enable_fast_math" in flags:
        return flags
    return f"{flags} {FAST_MATH_FLAG}".strip()


def learner_environment(environ: dict | None = None) -> dict[str, str]:
    """The XLA variables a learner process starts with (from this process's, by default)."""
    environ = os.environ if environ is None else environ
    return {"XLA_FLAGS": with_fast_math(environ.get("XLA_FLAGS", ""))}


def request_fast_math() -> bool:
    """Fast math for XLA in this process (before its first compile); True if it was added."""
    flags = os.environ.get("XLA_FLAGS", "")
    new = with_fast_math(flags)
    os.environ["XLA_FLAGS"] = new
    return new != flags
