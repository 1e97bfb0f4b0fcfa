"""Self-healing of a local run: after a node died or hung, restart the whole program
from its last complete checkpoint, unless the failure recurs the same way
(restart_policy.py), the budget is spent or a person asked it to stop."""

from __future__ import annotations

import os
import sys

from bprl.launch.rundir import layout

RESTARTS_ENV = "BPRL_PROGRAM_RESTARTS"  # program restarts so far (kept across exec)


def after_failure(config, workdir: str, failure) -> int:
    """Reports which node died and why; restarts the whole program from the last complete
    checkpoint while `reliability.max_program_restarts` allows (this process re-executes
    itself, keeping its pid, its lock and its network namespace)."""
    import json
    import signal
    import time

    from bprl.launch.local import launcher as local
    from bprl.launch.local import restart_policy
    from bprl.launch.rundir import checkpoint_record
    from bprl.launch.rundir.progress import RunProgress

    if not failure.hang:  # (a hang was named on the console when it was found)
        print(f"error: {failure}", file=sys.stderr)
    for node, tail in failure.log_tails.items():
        print(f"  last lines of {node} ({os.path.join(workdir, 'logs', node)}):", file=sys.stderr)
        for line in tail:
            print(f"    {line}", file=sys.stderr)
    for line in local.node_errors(workdir):
        print(f"  {line}", file=sys.stderr)
    restarts = int(os.environ.get(RESTARTS_ENV, "0"))
    budget = int(config.reliability.max_program_restarts)
    counts = checkpoint_record.load_counts(workdir)
    at_checkpoint = int(counts.get("learner_steps", 0))
    progress = RunProgress(workdir).poll()
    reached = progress.learner_steps
    lost = max(0, reached - at_checkpoint)
    if local.stop_requested():
        print(
            f"the program was asked to stop ({local.stop_requested()}: a person, or the "
            f"stop condition at the budget): not restarting; `bprl run` on this directory "
            f"resumes from the last checkpoint",
            file=sys.stderr,
        )
        return 1
    # A hung node raised nothing: whatever its log says last is not why it stopped, so
    # a hang is never taken for a deterministic failure (it is always retried).
    log_dir = layout.logs_dir(workdir)
    errors = {} if failure.hang else restart_policy.node_exceptions(log_dir, failure.nodes)
    attempt = restart_policy.attempt_record(
        failure.nodes,
        failure.cause,
        errors,
        counts,
        reached,
        progress.actor_steps,
    )
    previous = _previous_attempt(workdir, restarts)
    recurring = restart_policy.recurring_failure(previous, attempt)
    if recurring:
        print(
            f"error: {restart_policy.describe(recurring)}; not restarting (restart "
            f"{restarts} made no progress: no learner or actor steps since the checkpoint "
            f"at learner step {at_checkpoint}); node logs: {os.path.join(workdir, 'logs')}; "
            f"fix the cause, then `bprl run` on this directory resumes from that checkpoint",
            file=sys.stderr,
        )
        return 1
    if restarts >= budget:
        print(
            f"error: the program failed {restarts + 1} time(s) and its restart budget is "
            f"spent (reliability.max_program_restarts={budget}); node logs: "
            f"{os.path.join(workdir, 'logs')}; `bprl run` on this directory resumes from the "
            f"last checkpoint (learner step {at_checkpoint})",
            file=sys.stderr,
        )
        return 1
    attempt["restarts_without_progress"] = restart_policy.restarts_without_progress(
        previous, attempt
    )
    delay = restart_policy.backoff_secs(
        config.reliability.restart_backoff_secs, attempt["restarts_without_progress"]
    )
    print(
        f"restarting the whole program from the last complete checkpoint (learner step "
        f"{at_checkpoint}; about {lost} learner steps lost): restart {restarts + 1} of "
        f"{budget} in {delay:.0f} s",
        file=sys.stderr,
        flush=True,
    )
    entry = {
        "restart": restarts + 1,
        "time": time.time(),
        **attempt,  # nodes, cause, errors, the counts (launch/local/restart_policy.py)
        "learner_steps_lost": lost,
    }
    if failure.hang:  # what the liveness watch saw, and when (launch/local/liveness.py)
        entry["hang"] = failure.hang
        entry["detected"] = failure.detected_at
    with open(layout.restarts_path(workdir), "a") as f:
        f.write(json.dumps(entry) + "\n")
    from bprl.launch.rundir import events

    events.append_events(  # TensorBoard: reliability/* under the "launcher" run
        layout.launcher_dir(workdir),
        step=progress.actor_steps,  # every tag's x-axis is actor steps
        scalars={"program_restarts": restarts + 1, "learner_steps_lost": lost},
        text=(
            f"restart {restarts + 1} of {budget}: {failure}; resumed from the checkpoint at "
            f"learner step {at_checkpoint}, {lost} learner steps lost"
        ),
    )
    logs = layout.logs_dir(workdir)
    if os.path.isdir(logs):  # keep the failed attempt's node logs
        os.replace(logs, layout.failed_logs_dir(workdir, restarts + 1))

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    try:
        time.sleep(delay)
    except KeyboardInterrupt:
        print("stopped by a signal during the back-off: not restarting", file=sys.stderr)
        return 1
    os.environ[RESTARTS_ENV] = str(restarts + 1)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "bprl.launch.cli", *sys.argv[1:]])
    return 1  # not reached


def _previous_attempt(workdir: str, restarts: int) -> dict | None:
    """The restarts.jsonl entry of the attempt before this one, when this launcher is its
    restart (restart number `restarts`); None for a launch by a person."""
    import json

    if restarts < 1:
        return None
    try:
        with open(os.path.join(workdir, "restarts.jsonl")) as f:
            lines = [line for line in f if line.strip()]
        entry = json.loads(lines[-1]) if lines else None
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or entry.get("restart") != restarts:
        return None
    return entry
