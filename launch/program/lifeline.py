"""No orphans: every process of a run ends when the process that started it dies.

Two mechanisms, because each has a gap the other covers:
- The kernel's parent-death signal (`prctl(PR_SET_PDEATHSIG)`): the process gets a
  signal the moment its parent dies, SIGKILL of the parent included. It is set by the
  process itself, so a parent that dies before the child gets that far is missed; the
  child therefore checks, once set, that its parent is still the one expected.
- A watchdog thread that polls the parent's pid: it backs the signal up (a signal that
  is handled gracefully but never finishes) by SIGKILLing the process `grace_secs` after
  the parent is gone.

Who ties itself to whom:
- Launchpad node processes to the `bprl run` launcher (`node_init`, run by Launchpad's
  `--init_file` before the node's code is even unpickled): SIGTERM, so a node stops as it
  does on Ctrl-C (final checkpoints), then SIGKILL after the grace period.
- A `bprl run` started by `bprl sweep` to the sweep (`tie_to_parent` in the CLI).
- Actor worker processes to their actor node (`supervision.exit_with_parent`).
"""

from __future__ import annotations

import ctypes
import os
import signal
import threading
import time

LAUNCHER_PID = "BPRL_LAUNCHER_PID"  # set by the launcher for its node processes
SWEEP_PID = "BPRL_SWEEP_PID"  # set by `bprl sweep` for its `bprl run` children
_PR_SET_PDEATHSIG = 1


def set_parent_death_signal(sig: int) -> bool:
    """Asks the kernel to send `sig` to this process when its parent dies (Linux only)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def tie_to_parent(
    expected_parent: int, sig: int = signal.SIGTERM, grace_secs: float = 25.0
) -> None:
    """Ends this process when `expected_parent` dies: `sig` at once, SIGKILL `grace_secs`
    later if it is still alive. Exits at once if that parent is already gone."""
    set_parent_death_signal(sig)
    if os.getppid() != expected_parent:  # died before the signal was armed
        os._exit(1)

    def watch() -> None:
        while os.getppid() == expected_parent:
            time.sleep(1.0)
        time.sleep(grace_secs)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="bprl_lifeline", daemon=True).start()


def node_init() -> None:
    """Run in every Launchpad node process before the node is built (`--init_file`)."""
    launcher = os.environ.get(LAUNCHER_PID)
    if launcher:
        tie_to_parent(int(launcher), signal.SIGTERM, grace_secs=20.0)


def write_node_init_file(directory: str) -> str:
    """Writes the pickled `node_init` for Launchpad's `--init_file`; returns its path."""
    import cloudpickle

    path = os.path.join(directory, ".node_init.pkl")
    with open(path, "wb") as f:
        cloudpickle.dump(node_init, f)
    return path


def maybe_tie_to_sweep() -> None:
    """A `bprl run` started by `bprl sweep` ends with the sweep, however the sweep ends."""
    sweep = os.environ.get(SWEEP_PID)
    if sweep:
        # The launcher stops its program gracefully on SIGTERM (<= 25 s, then kills).
        tie_to_parent(int(sweep), signal.SIGTERM, grace_secs=28.0)
