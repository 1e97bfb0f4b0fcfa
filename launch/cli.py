"""`bprl`: the command line of the behavior-prior trainer.

bprl run --config=experiments/configs/walker_walk.py[:variant] [--config.key=value ...]
         --workdir=DIR
bprl tasks
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (.py).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (logs, TensorBoard, checkpoints).")

_USAGE = __doc__


def _cmd_tasks() -> int:
    from environments import registry

    for name, spec in sorted(registry.all_tasks().items()):
        print(f"{name}: {spec.description}")
        for set_name, keys in spec.information_sets.items():
            print(f"    {set_name}: {', '.join(keys)}")
    return 0


def _cmd_run() -> int:
    from launch import local, validate

    config = _CONFIG.value
    if config is None:
        raise validate.ConfigError("--config is required")
    validate.validate_config(config)
    validate.validate_workdir(_WORKDIR.value)
    workdir = os.path.abspath(_WORKDIR.value)
    print(f"run directory: {workdir}")
    print(f"watch it with: tensorboard --logdir {workdir}")
    local.launch_local(config, workdir)
    print(f"done. TensorBoard: tensorboard --logdir {workdir}")
    return 0


def _main(argv: list[str]) -> int:
    commands = {"run": _cmd_run, "tasks": _cmd_tasks}
    if len(argv) < 2 or argv[1] not in commands:
        print(_USAGE, file=sys.stderr)
        return 2
    if len(argv) > 2:
        print(f"error: unexpected arguments {argv[2:]}", file=sys.stderr)
        return 2
    from launch.validate import ConfigError

    try:
        return commands[argv[1]]()
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def main() -> None:
    os.environ.setdefault("MUJOCO_GL", "disable")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.set_verbosity(logging.WARNING)
    app.run(lambda argv: sys.exit(_main(argv)))


if __name__ == "__main__":
    main()
