"""Whether a failed program is restarted: a failure that recurs the same way is not.

The launcher restarts the whole program after a node dies (launch/cli.py,
docs/reliability.md). That heals a transient failure (a kill, an out-of-memory kill, a
lost connection) but not a deterministic one: a node that raises the same exception at
every start would be restarted until the budget is spent, minutes of back-off later.
After each failed attempt the launcher records, in `RUN/restarts.jsonl`, each failed
node's last exception line and the counts the attempt reached (`attempt_record`); the
next failure is compared with it (`recurring_failure`). The program is not restarted
when this attempt made no progress (the checkpoint's counts and the steps in the event
files are those of the previous failure) and every node that failed now failed with an
exception the same node group raised last time. A failure by a signal from outside
(SIGKILL, SIGTERM), a node whose log names no exception, a different error or any
progress is retried as before.
"""

from __future__ import annotations

import os
import re

# Deaths that come from outside the node (a person, the kernel's out-of-memory killer, a
# teardown): never evidence of a deterministic failure.
EXTERNAL_SIGNALS = frozenset({"SIGKILL", "SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT"})

# The last line of a Python traceback: an exception class name (dotted or not) at the
# start of the line, and its message. Log lines (absl's `W1204 12:00:00 ...`) and the
# indented lines of a traceback do not match.
_EXCEPTION_LINE = re.compile(
    r"^(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception|Failure|Fault|Exit)\b(?::.*)?$"
)
_NUMBER = re.compile(r"\d+")


def last_exception_line(path: str) -> str:
    """The last traceback exception line of the log at `path` ('' when it has none)."""
    found = ""
    try:
        with open(path, errors="replace") as f:
            for line in f:
                line = line.rstrip()
                if _EXCEPTION_LINE.match(line):
                    found = line
    except OSError:
        return ""
    return found


def node_exceptions(log_dir: str, nodes: list[str]) -> dict[str, str]:
    """Each of `nodes` ('<group>/<i>') -> the last exception line of its log in
    `log_dir` (RUN/logs), '' when its log names none."""
    return {node: last_exception_line(os.path.join(log_dir, node)) for node in nodes}


def attempt_record(
    nodes: list[str],
    cause: str,
    errors: dict[str, str],
    checkpoint_counts: dict,
    reached_learner_steps: int,
    reached_actor_steps: int,
) -> dict:
    """The fields of a restarts.jsonl entry that `recurring_failure` compares."""
    return {
        "nodes": list(nodes),
        "cause": cause,
        "errors": dict(errors),
        "checkpoint_learner_steps": int(checkpoint_counts.get("learner_steps", 0)),
        "checkpoint_actor_steps": int(checkpoint_counts.get("actor_steps", 0)),
        "learner_steps_at_failure": int(reached_learner_steps),
        "actor_steps_at_failure": int(reached_actor_steps),
    }


def _same_error(node: str, line: str) -> tuple[str, str]:
    """What two failures must share to be the same: the node's group and its exception
    line with numbers blanked (replica ids, ports, addresses differ between starts)."""
    return node.split("/")[0], _NUMBER.sub("N", line)


def made_progress(previous: dict, current: dict) -> bool:
    """Whether the attempt that ended in `current` got further than the one that ended
    in `previous` (both `attempt_record`s): its checkpoint counts differ (the restart
    resumed from the previous failure's checkpoint, and the learner writes a final one
    when the program stops), or its event files reached more steps."""
    for field in ("checkpoint_learner_steps", "checkpoint_actor_steps"):
        if int(current.get(field, 0)) != int(previous.get(field, -1)):
            return True
    for field in ("learner_steps_at_failure", "actor_steps_at_failure"):
        if int(current.get(field, 0)) > int(previous.get(field, 0)):
            return True
    return False


MAX_BACKOFF_SECS = 300.0  # the wait before a restart grows to this at most


def restarts_without_progress(previous: dict | None, current: dict) -> int:
    """How many restarts in a row, this one included, came after an attempt that made no
    progress: 0 when the attempt that just failed got further than the one before (or it
    is the first failure of this launch). The back-off grows with it, so a run that heals
    and trains on between occasional faults waits the base time after each."""
    if previous is None or made_progress(previous, current):
        return 0
    return int(previous.get("restarts_without_progress", 0)) + 1


def backoff_secs(base: float, without_progress: int) -> float:
    """base * 2**without_progress, at most max(base, MAX_BACKOFF_SECS)."""
    return min(float(base) * 2 ** min(without_progress, 30), max(float(base), MAX_BACKOFF_SECS))


def recurring_failure(previous: dict | None, current: dict) -> dict[str, str]:
    """The failed nodes of `current` (node -> exception line) when they fail the way the
    attempt before failed (`previous`, its restarts.jsonl entry; None for the first
    attempt of this launch) with no progress in between: the program is then not
    restarted. Empty when the failure is to be retried."""
    if previous is None:
        return {}
    errors = current.get("errors") or {}
    # The nodes whose logs name an exception. The others found dead with them were
    # stopped by Launchpad once the first one exited (on a loaded machine the launcher
    # may look only after they are gone), so they are not compared.
    nodes = [node for node in current.get("nodes") or [] if errors.get(node)]
    if not nodes:
        return {}  # no death names an exception: nothing to compare
    if current.get("cause") in EXTERNAL_SIGNALS or previous.get("cause") in EXTERNAL_SIGNALS:
        return {}
    before = {_same_error(node, line) for node, line in (previous.get("errors") or {}).items()}
    if not all(_same_error(node, errors[node]) in before for node in nodes):
        return {}
    if made_progress(previous, current):
        return {}
    return {node: errors[node] for node in nodes}


def describe(recurring: dict[str, str]) -> str:
    """'learner/0 fails the same way at every start (ValueError: ...)', for the launcher's
    one error line; replicas failing alike share one exception line (the first one's)."""
    if len(recurring) == 1:
        ((node, line),) = recurring.items()
        return f"{node} fails the same way at every start ({line})"
    alike = {_NUMBER.sub("N", line) for line in recurring.values()}
    if len(alike) == 1:
        shown = next(iter(recurring.values()))
    else:
        shown = "; ".join(f"{node}: {line}" for node, line in recurring.items())
    return f"{', '.join(recurring)} fail the same way at every start ({shown})"
