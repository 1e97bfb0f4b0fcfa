"""The rehearsed job's life, as Vertex AI runs a job: when it ends, and how.

The primary replica (workerpool0, the stop node) exiting 0 ends the job SUCCEEDED; a cancel
(or a signal to the launcher) SIGTERMs every replica, CANCELLED; a replica that fails while
the others run ends the attempt as RESTART, which the run loop (launch/vertex/rehearsal.py)
turns into a restart of the whole job (`restartJobOnWorkerRestart`); what is left after the
grace period is SIGKILLed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import threading
import time

from bprl.launch.vertex.rehearsal_hosts import Replica


@dataclasses.dataclass
class Outcome:
    """How the rehearsed job ended."""

    state: str  # SUCCEEDED, CANCELLED (a cancel request or a signal), FAILED
    reason: str
    failed: list[str]  # nodes that exited with an error before the job ended
    cancel_from: str  # the node whose cancel request ended the job, or ""
    restarts: int = 0  # whole-job restarts after a replica failed


def _signal_replica(r: Replica, signum: int) -> None:
    """A signal to the replica's PID 1 (its init forwards it to the node), as Vertex AI
    stops a container; to its launcher process when the init is not known."""
    target = r.init_pid or (r.process.pid if r.process is not None else None)
    if target:
        with contextlib.suppress(ProcessLookupError):
            os.kill(target, signum)


def wait(replicas: list[Replica], cancel: threading.Event, why: dict, grace_secs: float) -> Outcome:
    """Vertex AI's job lifecycle: the primary replica exiting 0 ends the job SUCCEEDED; a
    cancel (or a signal) SIGTERMs every replica (CANCELLED); a replica that fails while
    others run ends this attempt as RESTART (the caller restarts the job); SIGKILL for
    what is left `grace_secs` after the SIGTERM."""
    state, failed, deadline, failed_at = "RUNNING", [], None, None
    chief = replicas[0]
    while True:
        for r in replicas:
            if r.returncode is None and r.process.poll() is not None:
                r.returncode = r.process.returncode
                if state == "RUNNING" and r.returncode != 0:
                    failed.append(r.node)
                    failed_at = failed_at or time.monotonic()
        if state == "RUNNING":
            alive = [r for r in replicas if r.returncode is None]
            # Replicas that ended as a SIGTERM ends a node (a stop from outside: a cancel,
            # a pre-emption, a VM's maintenance) and those that crashed or were killed.
            stopped = [n for n in failed if _stopped(n, replicas)]
            crashed = [n for n in failed if n not in stopped]
            waited = time.monotonic() - failed_at if failed_at else 0.0
            if cancel.is_set():
                state = "CANCELLED"
            elif chief.returncode == 0:
                state = "SUCCEEDED"
                why.setdefault("reason", f"{chief.node} ({chief.pool}-0) finished")
            elif failed and not alive and not crashed:
                state = "CANCELLED"  # every replica stopped: a stop from outside
                why.setdefault("reason", f"every replica stopped ({failed[0]} first)")
            elif (crashed and waited > 3.0) or (failed and waited > grace_secs):
                # A replica restarted in place restarts the whole job
                # (restartJobOnWorkerRestart); the others are stopped first.
                state = "RESTART"
                first = (crashed or failed)[0]
                why.setdefault("reason", f"{first} exited with {_code(first, replicas)}")
            if state != "RUNNING":
                deadline = time.monotonic() + grace_secs
                for r in replicas:
                    if r.returncode is None:
                        _signal_replica(r, signal.SIGTERM)
        if all(r.returncode is not None for r in replicas):
            break
        if deadline is not None and time.monotonic() > deadline:
            for r in replicas:
                if r.returncode is None:
                    r.process.kill()
            deadline = None
        time.sleep(0.3)
    return Outcome(state, why.get("reason", ""), failed, why.get("cancel_from", ""))


def _stopped(node: str, replicas: list[Replica]) -> bool:
    """True when `node`'s replica ended as a stopped node does: by SIGTERM, or by
    Launchpad's SIGALRM countdown after one (through the init: 128 + the signal)."""
    code = next(r.returncode for r in replicas if r.node == node)
    stops = {int(signal.SIGTERM), int(signal.SIGALRM)}
    return code is not None and (-code in stops or code - 128 in stops)


def _code(node: str, replicas: list[Replica]) -> str:
    code = next(r.returncode for r in replicas if r.node == node)
    if code is not None and code < 0:
        return signal.Signals(-code).name
    if code is not None and code > 128:
        with contextlib.suppress(ValueError):
            return signal.Signals(code - 128).name
    return f"exit code {code}"
