"""`bprl`: the command line of the behavior-prior trainer.

bprl run --config=experiments/configs/walker_walk.py[:variant] [--config.key=value ...]
         --workdir=DIR [--launch=local|vertex_ai|vertex_ai_local]
bprl sweep --config=... --seeds=5 --workdir=DIR [--parallel=1]
           [--sweep_field=prior_info --sweep_values='proprioception;velocity']
           [--config.key=value ...] [--launch=local|vertex_ai|vertex_ai_local]
bprl report DIR [--threshold=RETURN] [--baseline=VARIANT]
bprl rollout --workdir=RUN [--prior] [--episodes=20] [--out=FILE.npz]
bprl export-prior --workdir=RUN [--step=N] --out=DIR
bprl tasks
"""

from __future__ import annotations

import os
import sys
import time
from typing import NoReturn

from absl import app, flags, logging
from ml_collections import config_flags


def _rehearsing(argv: list[str]) -> bool:
    return "--launch=vertex_ai_local" in argv or any(
        a == "--launch" and b == "vertex_ai_local" for a, b in zip(argv, argv[1:], strict=False)
    )


if _rehearsing(sys.argv):
    # The rehearsal writes its run directory into a storage emulator through TensorFlow's
    # modular GCS filesystem (launch/gcs_emulator.py), which TensorFlow registers for gs://
    # only when this is set before it is first imported.
    os.environ.setdefault("TF_USE_MODULAR_FILESYSTEM", "1")

# New fields are accepted by the parser only so that `--config.task_kwargs.<name>` can add
# a task keyword; every other override must name an existing field, which
# validate.check_config_args checks first. The config is locked once parsed.
_CONFIG = config_flags.DEFINE_config_file(
    "config",
    None,
    "Experiment config file (.py), optionally :variant.",
    lock_config=False,
    accept_new_attributes=True,
)
_NETWORK = flags.DEFINE_enum(
    "network",
    "isolated",
    ["isolated", "host"],
    "local runs: 'isolated' runs every node in a private network namespace whose only "
    "interface is loopback (Reverb and Courier servers bind all interfaces and have no "
    "option to bind loopback only); falls back to 'host', with a warning, where the "
    "machine cannot create one. 'host' runs in the machine's network namespace.",
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (logs, TensorBoard, checkpoints).")
_LAUNCH = flags.DEFINE_enum(
    "launch",
    "local",
    ["local", "vertex_ai", "vertex_ai_local"],
    "Where to run: this machine, Vertex AI, or 'vertex_ai_local': the Vertex AI job "
    "rehearsed on this machine, every replica its own host (network namespace; root).",
)
_SEEDS = flags.DEFINE_integer("seeds", 5, "sweep: seeds per variant (config.seed, +1, ...).")
_PARALLEL = flags.DEFINE_integer("parallel", 1, "sweep: local runs at a time.")
_SWEEP_FIELD = flags.DEFINE_string("sweep_field", "", "sweep: a config field to vary.")
_PRIOR = flags.DEFINE_bool("prior", False, "rollout: play the prior alone (default: the policy).")
_EPISODES = flags.DEFINE_integer("episodes", 20, "rollout: episodes to record.")
_OUT = flags.DEFINE_string(
    "out",
    "",
    "rollout: output .npz (default RUN/rollouts/HEAD.npz); export-prior: the artifact "
    "directory to create.",
)
_STEP = flags.DEFINE_integer(
    "step", None, "export-prior: the learner step of the checkpoint (default: the latest)."
)
_SWEEP_VALUES = flags.DEFINE_string("sweep_values", "", "sweep: its values, separated by ';'.")
_THRESHOLD = flags.DEFINE_float(
    "threshold",
    None,
    "report: a return threshold; the table gives actor steps to reach it and the speed-up "
    "over the baseline (default: the runs' report.threshold).",
)
_BASELINE = flags.DEFINE_string(
    "baseline", None, "report: the variant speed-ups are relative to (default: '*scratch*')."
)

_USAGE = __doc__


def _cmd_tasks() -> int:
    from environments import registry

    for name, spec in sorted(registry.all_tasks().items()):
        print(f"{name}: {spec.description}")
        for set_name, keys in spec.information_sets.items():
            print(f"    {set_name}: {', '.join(keys)}")
    return 0


_RESTARTS_ENV = "BPRL_PROGRAM_RESTARTS"  # program restarts so far (kept across exec)


def _cmd_run() -> int:
    from launch import lifeline

    lifeline.maybe_tie_to_sweep()  # a run of a sweep ends with the sweep
    if _WORKDIR.value:
        # Launchpad reads this once, when first imported (Acme imports it too): set it first.
        os.environ["LAUNCHPAD_LOGGING_DIR"] = os.path.join(os.path.abspath(_WORKDIR.value), "logs")
    from launch import local, validate

    if _NETWORK.value == "isolated" and _LAUNCH.value == "local":  # (a rehearsal: its own)
        from launch import netns

        # First, so the checks below (which import TensorFlow) run once, in the run's
        # own namespace; a bad config still ends with one error line before any node.
        netns.reexec_isolated(sys.argv)  # returns only where isolation is not possible
    config = _CONFIG.value
    if config is None:
        raise validate.ConfigError("--config is required")
    if config.prior.artifact:  # saved in config.json: resumable from any directory
        config.prior.artifact = os.path.abspath(config.prior.artifact)
    validate.validate_config(config)
    if _LAUNCH.value == "vertex_ai":  # the run directory is under the bucket, not here
        from launch import vertex

        vertex.validate_cluster(config, submit=True)
        vertex.launch_vertex(config, _WORKDIR.value)
        return 0
    validate.validate_workdir(_WORKDIR.value)
    workdir = os.path.abspath(_WORKDIR.value)
    lock = None
    run_dir = workdir  # where the run's files are read from (the bucket's, rehearsed)
    if _LAUNCH.value == "vertex_ai_local":
        from launch import rehearsal, vertex

        rehearsal.check_can_rehearse()
        vertex.validate_cluster(config, submit=False)
        run_dir = rehearsal.run_dir_view(workdir)
    if _LAUNCH.value in ("local", "vertex_ai_local"):
        from launch import runlock

        validate.validate_fits_machine(config)
        lock = runlock.acquire(workdir, "bprl run")  # kept across restarts (exec)
    resuming = validate.validate_resume(config, run_dir)
    print(f"run directory: {workdir}")
    print(f"watch it with: tensorboard --logdir {run_dir}")
    if resuming:
        from launch import checkpointing

        if _LAUNCH.value == "local":  # (rehearsed nodes choose their checkpoint themselves)
            try:  # a damaged newest checkpoint falls back to the previous one
                checkpointing.prepare_resume(workdir)
            except checkpointing.CheckpointError as error:
                raise validate.ConfigError(str(error)) from None
        counts = checkpointing.load_counts(run_dir)
        if counts:
            learner_steps = int(counts.get("learner_steps", 0))
            actor_steps = int(counts.get("actor_steps", 0))
            print(f"resuming {workdir}: learner step {learner_steps}, actor step {actor_steps}")
        else:
            print(f"resuming {workdir}: no complete checkpoint yet, starting from scratch")
    started = time.monotonic()
    if _LAUNCH.value == "vertex_ai_local":
        try:
            code = _rehearse(config, workdir)
        finally:
            runlock.release(lock)
        if code:
            return code
        return _summary(config, run_dir, started, out_dir=workdir)
    try:
        local.launch_local(config, workdir)
    except local.LaunchInterrupted as interrupted:
        print(f"stopped by {interrupted} while starting; no process of the run is left")
        return 130
    except local.NodeFailure as failure:  # every process of the program has been stopped
        return _after_failure(config, workdir, failure)
    finally:  # (a restart re-executes this process: no `finally`, the lock stays held)
        if lock is not None:
            from launch import runlock

            runlock.release(lock)
    return _summary(config, workdir, started)


def _rehearse(config, workdir: str) -> int:
    """The rehearsal of the Vertex AI job; 0 when the job ended as a finished run does
    (SUCCEEDED: the stop node, its primary replica, exited 0 at the budget)."""
    from launch import local, rehearsal

    outcome = rehearsal.launch_rehearsal(config, workdir)
    print(f"rehearsed job {outcome.state}: {outcome.reason}")
    for node in outcome.failed:
        print(
            f"error: {node} failed; its log: {os.path.join(workdir, 'logs', node)}", file=sys.stderr
        )
        for line in local.log_tail(workdir, node):
            print(f"    {line}", file=sys.stderr)
    return 0 if outcome.state == "SUCCEEDED" else 1


def _summary(config, workdir: str, started: float, out_dir: str | None = None) -> int:
    from launch import summary

    task = f"{config.task}, prior sees {', '.join(config.prior_info)}"
    summary.write_learning_curve(workdir, title=f"evaluation return ({task})", out_dir=out_dir)
    print("\n".join(summary.summary_lines(workdir, time.monotonic() - started, out_dir)))
    return 0


def _after_failure(config, workdir: str, failure) -> int:
    """Reports which node died and why; restarts the whole program from the last complete
    checkpoint while `reliability.max_program_restarts` allows (this process re-executes
    itself, keeping its pid, its lock and its network namespace)."""
    import json
    import signal
    import time

    from launch import checkpointing, local, restart_policy
    from launch.progress import RunProgress

    if not failure.hang:  # (a hang was named on the console when it was found)
        print(f"error: {failure}", file=sys.stderr)
    for node, tail in failure.log_tails.items():
        print(f"  last lines of {node} ({os.path.join(workdir, 'logs', node)}):", file=sys.stderr)
        for line in tail:
            print(f"    {line}", file=sys.stderr)
    for line in local.node_errors(workdir):
        print(f"  {line}", file=sys.stderr)
    restarts = int(os.environ.get(_RESTARTS_ENV, "0"))
    budget = int(config.reliability.max_program_restarts)
    counts = checkpointing.load_counts(workdir)
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
    log_dir = os.path.join(workdir, "logs")
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
    delay = float(config.reliability.restart_backoff_secs) * 2**restarts
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
        **attempt,  # nodes, cause, errors, the counts (launch/restart_policy.py)
        "learner_steps_lost": lost,
    }
    if failure.hang:  # what the liveness watch saw, and when (launch/liveness.py)
        entry["hang"] = failure.hang
        entry["detected"] = failure.detected_at
    with open(os.path.join(workdir, "restarts.jsonl"), "a") as f:
        f.write(json.dumps(entry) + "\n")
    from launch import events, layout

    events.append_events(  # TensorBoard: reliability/* under the "launcher" run
        os.path.join(workdir, layout.LAUNCHER_DIR),
        step=progress.actor_steps,  # every tag's x-axis is actor steps
        scalars={"program_restarts": restarts + 1, "learner_steps_lost": lost},
        text=(
            f"restart {restarts + 1} of {budget}: {failure}; resumed from the checkpoint at "
            f"learner step {at_checkpoint}, {lost} learner steps lost"
        ),
    )
    logs = os.path.join(workdir, "logs")
    if os.path.isdir(logs):  # keep the failed attempt's node logs
        os.replace(logs, os.path.join(workdir, f"logs.failed.{restarts + 1}"))

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    try:
        time.sleep(delay)
    except KeyboardInterrupt:
        print("stopped by a signal during the back-off: not restarting", file=sys.stderr)
        return 1
    os.environ[_RESTARTS_ENV] = str(restarts + 1)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "launch.cli", *sys.argv[1:]])
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


def _cmd_sweep() -> int:
    from launch import sweep, validate

    config = _CONFIG.value
    if config is None:
        raise validate.ConfigError("--config is required")
    if not _WORKDIR.value:
        raise validate.ConfigError("--workdir is required")
    if _PARALLEL.value < 1:
        raise validate.ConfigError(f"--parallel must be >= 1, got {_PARALLEL.value}")
    workdir = os.path.abspath(_WORKDIR.value)
    try:
        runs = sweep.plan(
            config,
            workdir,
            _SEEDS.value,
            _SWEEP_FIELD.value,
            sweep.split_values(_SWEEP_VALUES.value),
        )
    except ValueError as error:
        raise validate.ConfigError(str(error)) from None
    validated = set()
    for run in runs:  # each variant once: every problem is found before anything starts
        if run.variant not in validated:
            validate.validate_config(run.config)
            validated.add(run.variant)
    if _LAUNCH.value != "local":
        from launch import vertex

        for run in runs:
            vertex.validate_cluster(run.config, submit=_LAUNCH.value == "vertex_ai")
    validate.validate_workdir(_WORKDIR.value)  # created only once everything checks out
    if _LAUNCH.value == "vertex_ai":
        from launch import vertex

        return vertex.launch_sweep(runs, _WORKDIR.value)
    launch_args = []
    if _LAUNCH.value == "vertex_ai_local":
        from launch import rehearsal

        rehearsal.check_can_rehearse()
        launch_args = ["--launch=vertex_ai_local"]
    from launch import runlock

    at_once = max(1, min(_PARALLEL.value, len(runs)))
    for run in runs:  # the largest variant decides
        validate.validate_fits_machine(run.config, at_once)
    lock = runlock.acquire(workdir, "bprl sweep")  # each run locks its own directory
    try:
        print(f"sweep directory: {workdir}")
        print(f"watch it with: tensorboard --logdir {workdir}")
        code = sweep.run_local(
            runs, [*launch_args, *sweep.config_args_from_argv(sys.argv[1:])], _PARALLEL.value
        )
    finally:
        runlock.release(lock)
    if code == 0:
        print(f"report: bprl report {workdir}")
    return code


def _cmd_rollout() -> int:
    from launch import rollout
    from launch.validate import ConfigError

    if not _WORKDIR.value:
        raise ConfigError("--workdir (the run to load) is required")
    print(rollout.rollout_command(_WORKDIR.value, _PRIOR.value, _EPISODES.value, _OUT.value))
    return 0


def _cmd_export_prior() -> int:
    from launch import transfer
    from launch.validate import ConfigError

    if not _WORKDIR.value:
        raise ConfigError("--workdir (the run whose prior to export) is required")
    metadata = transfer.export_prior(_WORKDIR.value, _OUT.value, _STEP.value)
    keys = ", ".join(o["key"] for o in metadata["observations"])
    source = metadata["source"]
    print(
        f"prior artifact: {os.path.abspath(_OUT.value)} ({metadata['kind']} prior of "
        f"{source['task']} at learner step {source['learner_step']}; reads {keys})"
    )
    print(
        f"use it: --config.prior.artifact={os.path.abspath(_OUT.value)} "
        "[--config.prior.frozen=True]"
    )
    return 0


def _cmd_report(path: str) -> int:
    from launch import report, storage

    if not storage.is_remote(path):
        written = report.write_report(path, _THRESHOLD.value, _BASELINE.value)
        for name in written:
            print(name)
        return 0
    # A sweep on object storage (Vertex AI): its event files, configs and FINISHED marks
    # are copied down (no checkpoints or pickles), reported here, the report copied up.
    import tempfile

    from launch import layout

    if not storage.isdir(path):
        raise FileNotFoundError(f"{path} does not exist or is empty")
    with tempfile.TemporaryDirectory(prefix="bprl_report_") as local:
        storage.copy_tree(path, local, exclude=(layout.REPORT_DIR, "checkpoints", "nodes"))
        written = report.write_report(local, _THRESHOLD.value, _BASELINE.value)
        target = storage.join(path, layout.REPORT_DIR)
        storage.copy_tree(os.path.join(local, layout.REPORT_DIR), target)
        for name in written:
            print(
                storage.join(target, os.path.relpath(name, os.path.join(local, layout.REPORT_DIR)))
            )
    return 0


def _main(argv: list[str]) -> int:
    commands = {
        "run": _cmd_run,
        "tasks": _cmd_tasks,
        "sweep": _cmd_sweep,
        "rollout": _cmd_rollout,
        "export-prior": _cmd_export_prior,
    }
    if len(argv) == 3 and argv[1] == "report":
        from launch.validate import ConfigError

        try:
            return _cmd_report(argv[2])
        except (ConfigError, FileNotFoundError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    if len(argv) < 2:
        print(_USAGE, file=sys.stderr)
        return 2
    from launch.validate import ConfigError

    if argv[1] == "report":
        _fail("report takes one directory: bprl report DIR")
    if argv[1] not in commands:
        _fail(f"unknown command {argv[1]!r}; use one of {', '.join([*commands, 'report'])}")
    if len(argv) > 2:
        _fail(f"unexpected arguments {argv[2:]} (flags are written --name=value)")

    try:
        return commands[argv[1]]()
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def _fail(message: object) -> NoReturn:
    """Exits with code 1 after one `error:` line on stderr (the message's lines joined)."""
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    print(f"error: {'; '.join(lines)}", file=sys.stderr)
    sys.exit(1)


def _parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, every bad input reported as one `error:` line (exit code 1).

    The config file, its variant and the override names are checked first, by us: absl
    and ml_collections report them as tracebacks or several lines.
    """
    from launch.validate import ConfigError, check_config_args

    try:
        check_config_args(argv[1:])
        remaining = flags.FLAGS(argv)
    except ConfigError as error:
        _fail(error)
    except flags.Error as error:  # bad values, unknown flags (absl says which)
        _fail(error)
    except (ValueError, TypeError, AttributeError, KeyError, OSError) as error:
        _fail(f"bad command line: {type(error).__name__}: {error}")
    if _CONFIG.value is not None:
        _CONFIG.value.lock()  # from here on, a misspelt field is an error, not a new one
    return remaining


def main() -> None:
    os.environ.setdefault("MUJOCO_GL", "disable")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from launch.quiet import quiet_warnings

    quiet_warnings()
    logging.set_verbosity(logging.WARNING)
    entry = sys.modules["__main__"]  # the `bprl` console script: absl's --help prints its doc
    if not getattr(entry, "__doc__", None):
        entry.__doc__ = __doc__
    app.run(lambda argv: sys.exit(_main(argv)), flags_parser=_parse_flags)


if __name__ == "__main__":
    main()
