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
from typing import NoReturn

from absl import app, flags, logging
from ml_collections import config_flags


def _rehearsing(argv: list[str]) -> bool:
    return "--launch=vertex_ai_local" in argv or any(
        a == "--launch" and b == "vertex_ai_local" for a, b in zip(argv, argv[1:], strict=False)
    )


if _rehearsing(sys.argv):
    # The rehearsal writes its run directory into a storage emulator through TensorFlow's
    # modular GCS filesystem (launch/vertex/gcs_emulator.py), which TensorFlow registers for gs://
    # only when this is set before it is first imported.
    os.environ.setdefault("TF_USE_MODULAR_FILESYSTEM", "1")

# New fields are accepted by the parser only so that `--config.task_kwargs.<name>` can add
# a task keyword; every other override must name an existing field, which
# loading.check_config_args checks first. The config is locked once parsed.
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
    from bprl.environments import registry

    for name, spec in sorted(registry.all_tasks().items()):
        print(f"{name}: {spec.description}")
        for set_name, keys in spec.information_sets.items():
            print(f"    {set_name}: {', '.join(keys)}")
    return 0


def _cmd_run() -> int:
    from bprl.launch import run

    return run.run(_CONFIG.value, _WORKDIR.value, _LAUNCH.value, _NETWORK.value)


def _cmd_sweep() -> int:
    from bprl.launch import sweep
    from bprl.launch.config import errors, fit, validate, workdir_checks

    config = _CONFIG.value
    if config is None:
        raise errors.ConfigError("--config is required")
    if not _WORKDIR.value:
        raise errors.ConfigError("--workdir is required")
    if _PARALLEL.value < 1:
        raise errors.ConfigError(f"--parallel must be >= 1, got {_PARALLEL.value}")
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
        raise errors.ConfigError(str(error)) from None
    validated = set()
    for run in runs:  # each variant once: every problem is found before anything starts
        if run.variant not in validated:
            validate.validate_config(run.config)
            validated.add(run.variant)
    if _LAUNCH.value != "local":
        from bprl.launch.vertex import job as vertex

        for run in runs:
            vertex.validate_cluster(run.config, submit=_LAUNCH.value == "vertex_ai")
    workdir_checks.validate_workdir(_WORKDIR.value)  # created only once everything checks out
    if _LAUNCH.value == "vertex_ai":
        from bprl.launch.vertex import job as vertex

        return vertex.launch_sweep(runs, _WORKDIR.value)
    launch_args = []
    if _LAUNCH.value == "vertex_ai_local":
        from bprl.launch.vertex import rehearsal

        rehearsal.check_can_rehearse()
        launch_args = ["--launch=vertex_ai_local"]
    from bprl.launch.local import runlock

    at_once = max(1, min(_PARALLEL.value, len(runs)))
    for run in runs:  # the largest variant decides
        fit.validate_fits_machine(run.config, at_once)
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
    from bprl.launch.config.errors import ConfigError
    from bprl.launch.reuse import rollout

    if not _WORKDIR.value:
        raise ConfigError("--workdir (the run to load) is required")
    print(rollout.rollout_command(_WORKDIR.value, _PRIOR.value, _EPISODES.value, _OUT.value))
    return 0


def _cmd_export_prior() -> int:
    from bprl.launch.config.errors import ConfigError
    from bprl.launch.reuse import transfer

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


def _point_at_a_rehearsals_bucket(path: str) -> None:
    """A rehearsal's local folder holds its logs and the emulated bucket, not the run: say
    where the run is rather than "no runs"."""
    from bprl.launch.rundir import layout
    from bprl.launch.vertex import rehearsal

    if os.path.exists(os.path.join(path, rehearsal.RECORD)) and not os.path.exists(
        os.path.join(path, layout.CONFIG_FILE)
    ):
        view = rehearsal.run_dir_view(path)
        raise FileNotFoundError(
            f"{path} is a Vertex AI rehearsal's folder; its run directory's objects are "
            f"under {view}: bprl report {view}"
        )


def _cmd_report(path: str) -> int:
    from bprl.launch.rundir import report, storage

    if not storage.is_remote(path):
        _point_at_a_rehearsals_bucket(path)
        written = report.write_report(path, _THRESHOLD.value, _BASELINE.value)
        for name in written:
            print(name)
        missing = report.left_out(path)
        if missing:
            print(f"left out, not finished (no DONE marker): {', '.join(missing)}")
        return 0
    # A sweep on object storage (Vertex AI): its event files, configs and FINISHED marks
    # are copied down (no checkpoints or pickles), reported here, the report copied up.
    import tempfile

    from bprl.launch.rundir import layout

    if not storage.isdir(path):
        raise FileNotFoundError(f"{path} does not exist or is empty")
    with tempfile.TemporaryDirectory(prefix="bprl_report_") as local:
        storage.copy_tree(path, local, exclude=(layout.REPORT_DIR, layout.CHECKPOINTS_DIR, "nodes"))
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
        from bprl.launch.config.errors import ConfigError

        try:
            return _cmd_report(argv[2])
        except (ConfigError, FileNotFoundError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    if len(argv) < 2:
        print(_USAGE, file=sys.stderr)
        return 2
    from bprl.launch.config.errors import ConfigError

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
    from bprl.launch.config.errors import ConfigError
    from bprl.launch.config.loading import check_config_args

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
    from bprl.launch.program.quiet import quiet_warnings

    quiet_warnings()
    logging.set_verbosity(logging.WARNING)
    entry = sys.modules["__main__"]  # the `bprl` console script: absl's --help prints its doc
    if not getattr(entry, "__doc__", None):
        entry.__doc__ = __doc__
    app.run(lambda argv: sys.exit(_main(argv)), flags_parser=_parse_flags)


if __name__ == "__main__":
    main()
