"""XLA flags and TensorFlow kernel settings of the learner's process, set from outside the
learning rule.

The learner node gets them in its process environment (launch/local/launcher.py, beside the BLAS
thread settings); the benchmark and the tests, which run the learner in their own
process, call `request_fast_math()` before anything compiles. XLA reads XLA_FLAGS once,
at a process's first compilation; TensorFlow reads TF_ENABLE_ONEDNN_OPTS and
TF_XLA_FLAGS once, at its import.

Fast math lets XLA:CPU reassociate float sums, which lets LLVM vectorise the layer norm's
and the output layer's row sums: about 10% off the learner update on a 2-core machine
(docs/results.md, issue 5). Results change only at rounding level. NaN and Inf handling
is kept (`xla_cpu_fast_math_honor_nans/infs` stay at their default, true), so the learner's
non-finite update guard still works. A fast-math setting the user already put in
XLA_FLAGS is left alone.

Kernels (`config.resources.learner_kernels`, docs/results.md, issue 18):
  xla_float32      the whole update one XLA program, float32 throughout (TF's oneDNN
                   kernels on for what runs around it: ~10% more updates/s).
  onednn_bfloat16  the update in TensorFlow's graph: its matrix products in bfloat16 on
                   oneDNN (float32 accumulation; float32 weights, optimiser state, losses
                   and everything elementwise), the elementwise ops between them fused by
                   XLA's auto-clustering (`--tf_xla_ops_to_cluster=FUSIBLE`: products are
                   left to oneDNN). Pays only on a CPU whose bfloat16 products are fast,
                   and for a big update (at small sizes each op of the graph is dispatched
                   on its own where XLA runs one program: fixed costs that faster products
                   would not remove). The ratios measured against xla_float32:
                   docs/results.md, "The learner at 2x Acme" and issue 30's part 4.
  auto             onednn_bfloat16 where the update has at least BFLOAT16_MIN_UPDATE_FLOPS
                   of matrix products (`agents/update_cost.py` counts them) and the
                   launching machine's bfloat16 products are fast: AMX tiles, or AVX512-BF16
                   whose measured bfloat16 product rate is at least
                   BFLOAT16_MIN_PRODUCT_SPEEDUP times float32's (a probe of a few seconds in
                   a child process, only for such updates, kept per CPU in PROBE_CACHE: the
                   same instruction set was 0.77x on one Intel CPU and 2.0x on an AMD
                   EPYC); else xla_float32.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
import sys

FAST_MATH_FLAG = "--xla_cpu_enable_fast_math=true"
ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"
# XLA clusters TensorFlow's elementwise ops only; MatMul stays a oneDNN kernel.
FUSIBLE_CLUSTERING = "--tf_xla_auto_jit=2 --tf_xla_cpu_global_jit --tf_xla_ops_to_cluster=FUSIBLE"
KERNELS = ("auto", "xla_float32", "onednn_bfloat16")
# What `auto` needs for the bfloat16 kernels: fast bfloat16 products (AMX's tiles, or
# AVX512-BF16 measured fast here), and an update of at least this many matrix-product
# FLOPs (15 GFLOP: the default sizes' 16.4 ran 1.42x, Acme's 24.9 2.1x on the AMD EPYC;
# 1.1 GFLOP and below were slower in bfloat16 on every CPU measured).
BFLOAT16_CPU_FLAGS = ("amx_bf16",)
BFLOAT16_PROBE_FLAGS = ("avx512_bf16",)
BFLOAT16_MIN_PRODUCT_SPEEDUP = 1.5
BFLOAT16_MIN_UPDATE_FLOPS = 15e9
# The probe: one [rows, inner] x [inner, out] product in each dtype, oneDNN on, the two
# timed in turn 15 times and the fastest of each kept (a busy machine slows some calls 2x).
_PROBE = """
import os, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import tensorflow as tf
calls = {}
for dtype in (tf.float32, tf.bfloat16):
    a = tf.cast(tf.random.normal([8192, 512]), dtype)
    b = tf.cast(tf.random.normal([512, 512]), dtype)
    f = tf.function(lambda a, b: tf.reduce_sum(tf.cast(tf.matmul(a, b), tf.float32)))
    f(a, b).numpy()
    calls[dtype] = (f, a, b)
best = {dtype: float("inf") for dtype in calls}
for _ in range(15):
    for dtype, (f, a, b) in calls.items():
        start = time.perf_counter()
        f(a, b).numpy()
        best[dtype] = min(best[dtype], time.perf_counter() - start)
print(best[tf.float32] / best[tf.bfloat16])
"""
# The probe's answer is kept per CPU model and flags (every run of a sweep, and every
# later launch on this machine, then picks the same kernels).
PROBE_CACHE = os.path.join(
    os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache")),
    "bprl",
    "bfloat16_probe.json",
)


def with_fast_math(flags: str) -> str:
    """`flags` (an XLA_FLAGS value) with fast math on, unless it already says either way."""
    if "xla_cpu_enable_fast_math" in flags:
        return flags
    return f"{flags} {FAST_MATH_FLAG}".strip()


def cpu_has_bfloat16(cpuinfo: str | None = None, product_speedup: float | None = None) -> bool:
    """Whether this machine's CPU (or the /proc/cpuinfo text given) has fast bfloat16
    products: AMX's bfloat16 tiles, or AVX512-BF16 with bfloat16 products at least
    BFLOAT16_MIN_PRODUCT_SPEEDUP times float32's (`product_speedup`, else measured here:
    only for this machine's own cpuinfo; a given text without AMX is taken as slow)."""
    here = cpuinfo is None
    if here:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            return False
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    if any(flag in flags for flag in BFLOAT16_CPU_FLAGS):
        return True
    if not any(flag in flags for flag in BFLOAT16_PROBE_FLAGS):
        return False
    if product_speedup is None:
        product_speedup = bfloat16_product_speedup() if here else 0.0
    return product_speedup >= BFLOAT16_MIN_PRODUCT_SPEEDUP


@functools.lru_cache(maxsize=1)
def bfloat16_product_speedup(cache: str | None = PROBE_CACHE) -> float:
    """float32 time / bfloat16 time of one oneDNN matrix product on this machine: the
    answer kept in `cache` for this CPU, else measured in a child process (TensorFlow
    reads TF_ENABLE_ONEDNN_OPTS at import) and kept there; 0 if it fails (not kept)."""
    key = _cpu_key()
    known = _read_cache(cache)
    if key in known:
        return float(known[key])
    env = {**os.environ, ONEDNN_ENV: "1", "CUDA_VISIBLE_DEVICES": ""}
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=180
        )
        speedup = float(done.stdout.strip().splitlines()[-1])
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        return 0.0
    if cache:
        try:
            os.makedirs(os.path.dirname(cache), exist_ok=True)
            tmp = f"{cache}.{os.getpid()}"
            with open(tmp, "w") as f:
                json.dump({**_read_cache(cache), key: speedup}, f)
            os.replace(tmp, cache)
        except OSError:
            pass  # an unwritable cache only means measuring again next time
    return speedup


def _cpu_key() -> str:
    """This CPU's model name and a digest of its flags."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return "unknown"
    model = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "")
    flags = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("flags")), "")
    return f"{model} {hashlib.sha256(flags.encode()).hexdigest()[:16]}"


def _read_cache(cache: str | None) -> dict:
    if not cache:
        return {}
    try:
        with open(cache) as f:
            known = json.load(f)
        return known if isinstance(known, dict) else {}
    except (OSError, ValueError):
        return {}


def resolve_kernels(setting: str, update_flops: float, has_bfloat16: bool | None = None) -> str:
    """`setting` (one of KERNELS) as it runs: auto becomes onednn_bfloat16 on a CPU with
    fast bfloat16 products (this machine's, unless `has_bfloat16` says) for an update of
    at least BFLOAT16_MIN_UPDATE_FLOPS matrix-product FLOPs, else xla_float32."""
    if setting not in KERNELS:
        raise ValueError(f"learner kernels must be one of {', '.join(KERNELS)}, not {setting!r}")
    if setting != "auto":
        return setting
    if update_flops < BFLOAT16_MIN_UPDATE_FLOPS:
        return "xla_float32"
    if has_bfloat16 is None:
        has_bfloat16 = cpu_has_bfloat16()
    return "onednn_bfloat16" if has_bfloat16 else "xla_float32"


def learner_environment(kernels: str = "xla_float32", environ: dict | None = None) -> dict:
    """The variables a learner process with these (resolved) kernels starts with, from this
    process's environment by default: what it already says is kept."""
    environ = os.environ if environ is None else environ
    env = {
        "XLA_FLAGS": with_fast_math(environ.get("XLA_FLAGS", "")),
        ONEDNN_ENV: environ.get(ONEDNN_ENV, "1"),
    }
    if kernels == "onednn_bfloat16":
        flags = environ.get("TF_XLA_FLAGS", "")
        env["TF_XLA_FLAGS"] = (
            flags if "tf_xla_auto_jit" in flags else (f"{flags} {FUSIBLE_CLUSTERING}".strip())
        )
    return env


def request_fast_math() -> bool:
    """Fast math for XLA in this process (before its first compile); True if it was added."""
    flags = os.environ.get("XLA_FLAGS", "")
    new = with_fast_math(flags)
    os.environ["XLA_FLAGS"] = new
    return new != flags
