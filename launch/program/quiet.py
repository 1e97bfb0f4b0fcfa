"""A quiet console: third-party deprecation noise off, Launchpad's chatter as our own lines.

`quiet_warnings` is called by the entry points (`bprl`, and every node process through
launch/program/nodes.py). It ignores DeprecationWarnings raised *from* the pinned third-party
packages (distutils version checks in Reverb and TF-Probability, `np.bool` in Sonnet, ...)
and keeps those raised from our own code. dm_control's composer turns every
DeprecationWarning on ('always') for the whole process when first imported, so it is
imported first and our filters go in front of its.

`LaunchpadConsole` wraps stdout while Launchpad launches and waits: its per-node
"Logging to: ..." lines become one "node logs:" line, and its shutdown countdown (printed
with '\\r' every second: one run-together line in a log) becomes one "stopping:" line.
"""

from __future__ import annotations

import io
import re
import warnings
from typing import TextIO

# Top-level packages whose DeprecationWarnings are not ours to fix.
THIRD_PARTY = (
    "absl",
    "acme",
    "distutils",
    "dm_control",
    "dm_env",
    "google",
    "importlib",  # load_module(), as ml_collections loads a config file
    "keras",
    "launchpad",
    "matplotlib",
    "ml_collections",
    "numpy",
    "pkg_resources",
    "pyparsing",
    "reverb",
    "scipy",
    "setuptools",
    "sonnet",
    "tensorboard",
    "tensorflow",
    "tensorflow_probability",
    "tree",
)
_THIRD_PARTY_MODULE = r"(" + "|".join(re.escape(name) for name in THIRD_PARTY) + r")(\.|$)"


def quiet_warnings() -> None:
    """Ignores DeprecationWarnings raised from third-party modules in this process."""
    try:  # its import-time simplefilter('always', DeprecationWarning) must come first
        import dm_control.composer  # noqa: F401
    except ImportError:
        pass
    for category in (DeprecationWarning, PendingDeprecationWarning):
        warnings.filterwarnings("ignore", category=category, module=_THIRD_PARTY_MODULE)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_COUNTDOWN = re.compile(r"Waiting for workers to stop for (\d+)s\.")
_NODE_LOG = re.compile(r"^(Logs are being output to: |Logging to: )")


class LaunchpadConsole(io.TextIOBase):
    """A stdout that rewrites Launchpad's launch and shutdown messages; passes the rest."""

    def __init__(self, stream: TextIO, logs_dir: str):
        self._stream = stream
        self._logs_dir = logs_dir
        self._said_logs = False
        self._said_stopping = False
        self._drop_next = ""  # the end print() writes after a line we dropped

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self._stream.isatty()

    def write(self, text: str) -> int:
        plain = _ANSI.sub("", text)
        drop_next, self._drop_next = self._drop_next, ""
        if drop_next and plain == drop_next:
            return len(text)
        if countdown := _COUNTDOWN.search(plain):
            self._drop_next = "\r"
            if not self._said_stopping:
                self._said_stopping = True
                self._stream.write(
                    f"stopping: waiting up to {countdown.group(1)}s for the nodes to finish "
                    "(final checkpoints)\n"
                )
                self._stream.flush()
            return len(text)
        if _NODE_LOG.match(plain):
            self._drop_next = "\n"
            if not self._said_logs:
                self._said_logs = True
                self._stream.write(f"node logs: {self._logs_dir}/<node>/<i>\n")
            return len(text)
        return self._stream.write(text)

    def flush(self) -> None:
        self._stream.flush()
