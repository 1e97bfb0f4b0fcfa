"""When and how each node process of a local program exited, in the order they did.

Launchpad reports only "One of the workers exited with code N", and by the time the
launcher looks, the nodes it asked to stop may have died too (an evaluator that crashes
while stopping after the replay was killed): "expected minus alive" would name them all.
Here a thread waits on a pidfd per node and, when one becomes a zombie, peeks at its exit
status with `waitid(..., WNOWAIT)`, which leaves the child for Launchpad to reap.
"""

from __future__ import annotations

import os
import select
import signal
import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Exit:
    node: str  # "<group>/<task id>"
    time: float  # time.monotonic() when it was seen to exit
    cause: str  # "SIGKILL", "SIGSEGV", "exit code 1", or "" when it could not be read


def describe_status(code: int, status: int) -> str:
    """'SIGKILL' / 'exit code 1' from waitid's si_code and si_status."""
    if code == os.CLD_EXITED:
        return f"exit code {status}"
    try:
        return signal.Signals(status).name
    except ValueError:
        return f"signal {status}"


class ExitRecorder:
    """Records the exits of `processes` (node -> psutil.Process, children of this process)
    from the moment it is made until `close()`."""

    def __init__(self, processes: dict):
        self._fds: dict[int, str] = {}
        for node, process in processes.items():
            try:
                self._fds[os.pidfd_open(process.pid)] = node
            except OSError:  # already gone, or no pidfd on this kernel
                continue
        self._exits: list[Exit] = []
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="node_exits", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        poller = select.poll()
        for fd in self._fds:
            poller.register(fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        pending = set(self._fds)
        while pending:
            for fd, _ in poller.poll():
                if fd == self._wake_r:
                    return
                poller.unregister(fd)
                pending.discard(fd)
                self._record(fd)

    def _record(self, fd: int) -> None:
        seen = time.monotonic()
        cause = ""
        try:
            result = os.waitid(os.P_PIDFD, fd, os.WEXITED | os.WNOWAIT | os.WNOHANG)
            if result is not None:
                cause = describe_status(result.si_code, result.si_status)
        except ChildProcessError:  # Launchpad reaped it first
            pass
        with self._lock:
            self._exits.append(Exit(self._fds[fd], seen, cause))

    def exits(self) -> list[Exit]:
        """The exits seen so far, earliest first."""
        with self._lock:
            return sorted(self._exits, key=lambda e: e.time)

    def close(self) -> None:
        os.write(self._wake_w, b"x")
        self._thread.join(timeout=5)
        for fd in (*self._fds, self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
