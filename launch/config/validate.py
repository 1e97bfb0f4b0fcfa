"""Checks an experiment config before anything is launched: one clear line per problem.

Also checks the command line's config arguments before absl and ml_collections parse
them (`check_config_args`): a missing config file, an unknown variant or an unknown
`--config.a.b` field each become one ConfigError instead of a traceback.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import re
import tempfile

import ml_collections

from bprl.environments import registry
from bprl.launch.config import derived, packing, xla


class ConfigError(ValueError):
    """A configuration problem, reported as one line before any process starts."""


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError naming the first problem found in `config`."""
    check_known_fields(config)
    try:
        task = registry.get_task(config.task)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    accepted = task.keyword_arguments()
    if accepted is not None:
        for name in config.task_kwargs.keys():
            if name not in accepted:
                raise ConfigError(
                    f"task {task.name!r} takes no keyword {name!r} (task_kwargs.{name}); "
                    f"it takes: {', '.join(accepted) or 'none'}"
                )
    if isinstance(config.prior_info, str) or not config.prior_info:
        raise ConfigError(
            f"prior_info must be a non-empty tuple of information-set names, got "
            f"{config.prior_info!r}; task {task.name!r} has {sorted(task.information_sets)}"
        )
    try:
        keys = task.keys_for(tuple(config.prior_info))
    except (ValueError, TypeError) as error:
        raise ConfigError(f"prior_info {tuple(config.prior_info)}: {error}") from None
    observation_spec, action_shape = check_task_runs(config, keys)

    from bprl.agents.learning_rule import ACTION_SQUASHES
    from bprl.agents.prior_kinds import PRIOR_KINDS

    checks = [
        (
            config.prior.kind in PRIOR_KINDS,
            f"prior.kind must be one of {PRIOR_KINDS}, got {config.prior.kind!r}",
        ),
        (config.prior.lstm_size >= 1, "prior.lstm_size must be >= 1"),
        (
            config.network.max_scale <= 0
            or config.network.min_scale < config.network.init_scale < config.network.max_scale,
            "network.max_scale > 0 needs network.min_scale < network.init_scale < max_scale",
        ),
        (config.prior.latent_size >= 1, "prior.latent_size must be >= 1"),
        (config.network.mean_bound > 0, "network.mean_bound must be > 0"),
        (
            config.agent.action_squash in ACTION_SQUASHES,
            f"agent.action_squash must be one of {ACTION_SQUASHES}, "
            f"got {config.agent.action_squash!r}",
        ),
        (
            config.resources.learner_kernels in xla.KERNELS,
            f"resources.learner_kernels must be one of {xla.KERNELS}, "
            f"got {config.resources.learner_kernels!r}",
        ),
        (
            config.actors.num_actors >= 1,
            f"actors.num_actors must be >= 1, got {config.actors.num_actors}",
        ),
        (
            (packed := config.actors.envs_per_process) >= 0,
            f"actors.envs_per_process must be >= 0 (0: auto), got {packed}",
        ),
        (config.evaluators.num_evaluators >= 0, "evaluators.num_evaluators must be >= 0"),
        (config.replay.sequence_length >= 1, "replay.sequence_length must be >= 1"),
        (config.replay.batch_size >= 1, "replay.batch_size must be >= 1"),
        (config.replay.min_size >= 1, "replay.min_size must be >= 1"),
        (
            config.replay.max_size >= config.replay.min_size,
            "replay.max_size must be >= replay.min_size",
        ),
        (config.replay.samples_per_insert > 0, "replay.samples_per_insert must be > 0"),
        (config.agent.num_action_samples >= 1, "agent.num_action_samples must be >= 1"),
        (config.agent.alpha >= 0, "agent.alpha must be >= 0"),
        (0.0 <= config.agent.discount <= 1.0, "agent.discount must be in [0, 1]"),
        (config.agent.target_update_period >= 1, "agent.target_update_period must be >= 1"),
        (
            config.stop.max_actor_steps > 0 or config.stop.max_learner_steps > 0,
            "set stop.max_actor_steps or stop.max_learner_steps, or the run never ends",
        ),
    ]
    # A field out of its range is named first (a negative step budget is not "unset").
    checks = _bound_checks(config) + checks
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    if config.prior.artifact:
        check_artifact(config, observation_spec, action_shape)


def check_artifact(config: ml_collections.ConfigDict, observation_spec, action_shape) -> None:
    """Before launch: the configured artifact exists, is intact and fits this run's task
    and prior; ConfigError with one line naming the first problem otherwise."""
    from bprl.agents import prior_artifact  # TensorFlow: not needed to parse flags

    path = config.prior.artifact
    try:
        metadata = prior_artifact.read_metadata(path)
    except prior_artifact.ArtifactError as error:
        raise ConfigError(f"prior.artifact: {error}") from None
    problems = prior_artifact.mismatches(
        metadata,
        config.prior.kind,
        derived.head_sizes(config),
        derived.prior_keys(config),
        observation_spec,
        action_shape,
        config.agent.action_squash,
    )
    if problems:
        raise ConfigError(f"prior.artifact {path}: {problems[0]}")


def check_task_runs(config: ml_collections.ConfigDict, keys: tuple[str, ...]) -> tuple:
    """Builds the task with the run's keywords, resets it and takes one step (the middle
    of the action box), as every actor and evaluator does first: an error there is one
    ConfigError before anything starts, not a failure of every node after launch. Also
    checks that the prior's information keys fit the observation. Returns the
    observation spec and the action shape. (One reset and one step: cheap.)"""
    from bprl.networks import information  # TensorFlow: not needed to parse the command line

    kwargs = config.task_kwargs.to_dict()
    what = f"task {config.task} with task_kwargs {kwargs}"
    try:
        env = registry.make_environment(config.task, config.seed, **kwargs)
    except Exception as error:  # noqa: BLE001 - any failure of the task's factory
        raise ConfigError(f"{what} fails to build: {_one_line(error)}") from None
    try:
        observation_spec, action_spec = env.observation_spec(), env.action_spec()
        try:
            information.input_size(observation_spec, keys)
        except (ValueError, TypeError) as error:
            raise ConfigError(f"prior_info {tuple(config.prior_info)}: {error}") from None
        stage = "at reset"
        try:
            env.reset()
            stage = "on its first step"
            env.step(middle_action(action_spec))
        except Exception as error:  # noqa: BLE001 - any failure of the task's code
            raise ConfigError(f"{what} fails {stage}: {_one_line(error)}") from None
    finally:
        try:
            env.close()
        except Exception:  # noqa: BLE001, S110 - a failing close must not hide the above
            pass
    return observation_spec, action_spec.shape


def middle_action(action_spec):
    """The middle of each bounded action's box (zero where a bound is infinite or none)."""
    import numpy as np
    import tree

    def middle(spec):
        value = np.zeros(spec.shape, spec.dtype)
        low, high = getattr(spec, "minimum", None), getattr(spec, "maximum", None)
        if low is not None and high is not None:
            low, high = np.broadcast_to(low, spec.shape), np.broadcast_to(high, spec.shape)
            finite = np.isfinite(low) & np.isfinite(high)
            value[finite] = ((low[finite] + high[finite]) / 2).astype(spec.dtype)
        return value

    return tree.map_structure(middle, action_spec)


def _one_line(error: BaseException) -> str:
    """'Type: message' with the message's lines joined (an error is one line)."""
    text = "; ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _bound_checks(config: ml_collections.ConfigDict) -> list[tuple[bool, str]]:
    """Numeric fields that have a meaningful range (a NaN fails every check)."""
    checks = []
    for name in ("policy", "critic", "prior"):
        rate = config.agent[f"{name}_learning_rate"]
        checks.append((rate > 0, f"agent.{name}_learning_rate must be > 0, got {rate}"))
    for dotted, low, inclusive in (
        ("agent.retrace_lambda", 0.0, True),
        ("agent.max_bad_updates", 1, True),
        ("network.min_scale", 0.0, False),
        ("network.init_scale", 0.0, False),
        ("replay.samples_per_insert_tolerance", 0.0, True),
        ("replay.prefetch_size", 0, True),
        ("actors.variable_update_period", 1, True),
        ("actors.max_errors", 1, True),
        ("actors.max_restarts", 0, True),
        ("actors.inject_fault_every_steps", 0, True),
        ("checkpoint.every_seconds", 0.0, False),
        ("evaluators.episodes", 1, True),
        ("evaluators.every_actor_steps", 1, True),
        ("stop.max_actor_steps", 0, True),
        ("stop.max_learner_steps", 0, True),
        ("logging.learner_every_steps", 1, True),
        ("resources.learner_threads", 0, True),
        ("resources.learner_updates_per_call", 0, True),
        ("resources.actor_threads", 1, True),
        ("reliability.max_program_restarts", 0, True),
        ("reliability.restart_backoff_secs", 0.0, True),
    ):
        group, field = dotted.split(".")
        value = config[group][field]
        ok = value >= low if inclusive else value > low
        checks.append((ok, f"{dotted} must be {'>=' if inclusive else '>'} {low}, got {value}"))
    hang = config.reliability.hang_timeout_secs
    checks.append(
        (
            hang >= 0 or hang == -1,
            f"reliability.hang_timeout_secs must be >= 0 (0: derived) or -1 (off), got {hang}",
        )
    )
    lam = config.agent.retrace_lambda
    checks.append((lam <= 1.0, f"agent.retrace_lambda must be in [0, 1], got {lam}"))
    for dotted in ("network.policy_hidden", "network.prior_hidden", "network.critic_hidden"):
        group, field = dotted.split(".")
        sizes = tuple(config[group][field])
        checks.append(
            (
                all(isinstance(n, int) and n >= 1 for n in sizes),
                f"{dotted} must be layer widths >= 1, got {sizes}",
            )
        )
    return checks


# Memory of one node process that imports TensorFlow, Reverb, Acme and dm_control (learner,
# replay, counter, stopper, evaluators; the launcher too): 17.63 GiB RSS over the 38
# processes of an unpacked 32-actor run (docs/results.md).
GIB_PER_NODE = 0.5
# An actor process: its light supervising node (no TensorFlow), the worker it spawns and
# multiprocessing's resource tracker; and each environment stream the worker runs
# (benchmarks/memory.py, docs/results.md "Throughput II"; rounded up).
GIB_PER_ACTOR_PROCESS = 0.4
GIB_PER_STREAM = 0.02


def program_size(config: ml_collections.ConfigDict) -> tuple[int, int, float]:
    """(nodes, processes, GiB) of a local run of `config`: each actor process is a node,
    its worker and a resource tracker (launch/config/packing.py groups the streams); replay,
    counter, learner, stopper and the evaluators one process each; and the launcher."""
    streams = int(config.actors.num_actors)
    actor_processes = len(packing.stream_groups(config))
    others = 4 + int(config.evaluators.num_evaluators)
    nodes = actor_processes + others
    processes = 1 + nodes + 2 * actor_processes  # launcher, nodes, workers, trackers
    gib = (
        GIB_PER_NODE * (others + 1)
        + GIB_PER_ACTOR_PROCESS * actor_processes
        + GIB_PER_STREAM * streams
    )
    return nodes, processes, gib


def validate_fits_machine(config: ml_collections.ConfigDict, runs_at_once: int = 1) -> None:
    """Refuses a local launch this machine cannot hold (memory, process limit)."""
    import resource

    import psutil

    nodes, processes, gib = program_size(config)
    processes, gib = processes * runs_at_once, gib * runs_at_once
    total = psutil.virtual_memory().total / 2**30
    streams = int(config.actors.num_actors)
    actor_processes = len(packing.stream_groups(config))
    what = (
        f"{streams} actor streams in {actor_processes} actor processes, "
        f"~{GIB_PER_ACTOR_PROCESS} GiB each + {GIB_PER_STREAM} GiB per stream; "
        f"{nodes - actor_processes} other nodes + the launcher, ~{GIB_PER_NODE} GiB each"
    )
    if runs_at_once > 1:
        what += f"; times {runs_at_once} runs at once"
    if gib > total:
        fit = _most_streams_that_fit(config, total / runs_at_once)
        raise ConfigError(
            f"the program needs about {gib:.1f} GiB of memory ({what}; {processes} "
            f"processes) but this machine has {total:.1f} GiB; "
            f"use at most {fit} actors (--config.actors.num_actors)"
        )
    limit = resource.getrlimit(resource.RLIMIT_NPROC)[0]
    with open("/proc/sys/kernel/pid_max") as f:
        pid_max = int(f.read())
    ceiling = pid_max if limit == resource.RLIM_INFINITY else min(limit, pid_max)
    if processes > ceiling:
        raise ConfigError(
            f"the program needs {processes} processes ({what}) but this machine allows "
            f"{ceiling} (ulimit -u / kernel.pid_max)"
        )


def _most_streams_that_fit(config: ml_collections.ConfigDict, gib: float) -> int:
    """The most actor streams (same packing setting) whose program fits in `gib`."""
    trial = ml_collections.ConfigDict(config.to_dict())
    low, high = 0, int(config.actors.num_actors)
    while low < high:  # program_size grows with the number of streams
        middle = (low + high + 1) // 2
        trial.actors.num_actors = middle
        if program_size(trial)[2] <= gib:
            low = middle
        else:
            high = middle - 1
    return low


def validate_workdir(workdir: str) -> None:
    """The run directory must be creatable and writable."""
    if not workdir:
        raise ConfigError("--workdir is required")
    try:
        os.makedirs(workdir, exist_ok=True)
        with tempfile.TemporaryFile(dir=workdir):
            pass
    except OSError as error:
        raise ConfigError(f"workdir {workdir!r} is not writable: {error.strerror}") from None


def validate_resume(config: ml_collections.ConfigDict, workdir: str) -> bool:
    """True when `workdir` holds an earlier run to resume; raises if `config` cannot."""
    from bprl.launch.config import defaults
    from bprl.launch.rundir import checkpointing

    saved_path = os.path.join(workdir, "config.json")
    if not os.path.exists(saved_path):
        return False
    saved = defaults.load_saved(saved_path).to_dict()
    try:
        checkpointing.check_resume_compatible(saved, config.to_dict())
    except ValueError as error:
        raise ConfigError(str(error)) from None
    return True


_CONFIG_ARG = re.compile(r"^--?config(?:=(.*))?$")
_OVERRIDE_ARG = re.compile(r"^--?(?:no)?config\.([^=]+)(?:=.*)?$")


def check_config_args(args: list[str]) -> None:
    """Checks `--config=FILE[:variant]` and each `--config.a.b=value` in `args`.

    Raises ConfigError for a config file that is missing or fails to load, an unknown
    variant, and an override naming a field the config does not have (with the closest
    name). `task_kwargs.<name>` may name a new field: the task's factory decides
    (`validate_config`).
    """
    spec, overrides = None, []
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if match := _CONFIG_ARG.match(arg):
            spec = match.group(1) if match.group(1) is not None else None
            if spec is None and i + 1 < len(args):
                spec = args[i + 1]
        elif match := _OVERRIDE_ARG.match(arg):
            overrides.append(match.group(1))
    if spec is None:
        if overrides:
            raise ConfigError(f"--config.{overrides[0]} needs --config=FILE before it")
        return
    config = load_config(spec)
    for name in overrides:
        check_field(config, name)


# The shipped configs' folder: bprl.experiments.configs, wherever the package is installed.
SHIPPED_CONFIGS = importlib.util.find_spec("bprl.experiments.configs").submodule_search_locations[0]
MAX_LISTED = 10  # config names an error lists


def config_files(folder: str) -> list[str]:
    """The config files in `folder`: .py files that define get_config (sorted)."""
    if not os.path.isdir(folder):
        return []
    found = []
    for name in sorted(os.listdir(folder)):
        full = os.path.join(folder, name)
        if not name.endswith(".py") or name == "__init__.py" or not os.path.isfile(full):
            continue
        try:
            with open(full, encoding="utf-8", errors="replace") as f:
                if "def get_config" in f.read(200_000):
                    found.append(name)
        except OSError:
            continue
    return found


def load_config(spec: str) -> ml_collections.ConfigDict:
    """`get_config(variant)` of the config file `spec` = 'path[:variant]', as --config does."""
    path, colon, variant = spec.partition(":")
    if not os.path.isfile(path):
        folder = os.path.dirname(path) or "."
        known = config_files(folder)
        if not known and folder != SHIPPED_CONFIGS:
            shipped = os.path.relpath(SHIPPED_CONFIGS)
            folder = SHIPPED_CONFIGS if shipped.startswith("..") else shipped
            known = config_files(SHIPPED_CONFIGS)
        close = difflib.get_close_matches(os.path.basename(path), known, n=3, cutoff=0.6)
        listed = close + [name for name in known if name not in close]
        more = f" and {len(listed) - MAX_LISTED} more" if len(listed) > MAX_LISTED else ""
        hint = f"; configs in {folder}: {', '.join(listed[:MAX_LISTED])}{more}" if known else ""
        raise ConfigError(f"config file {path!r} not found{hint}")
    module_spec = importlib.util.spec_from_file_location("bprl_checked_config", path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
        get_config = module.get_config
    except Exception as error:  # noqa: BLE001 - any failure of the user's file is reported
        raise ConfigError(f"config file {path!r}: {type(error).__name__}: {error}") from None
    try:
        config = get_config(variant) if colon else get_config()
    except ValueError as error:  # unknown_variant and the configs' own checks
        raise ConfigError(f"{spec}: {error}") from None
    except Exception as error:  # noqa: BLE001
        raise ConfigError(f"{spec}: get_config: {type(error).__name__}: {error}") from None
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(
            f"{spec}: get_config() returned {type(config).__name__}, not a ConfigDict"
        )
    return config


def check_field(config: ml_collections.ConfigDict, name: str) -> None:
    """Raises ConfigError when `config` has no field `name` (dotted), naming the closest."""
    node, walked = config, []
    parts = name.split(".")
    for i, part in enumerate(parts):
        if isinstance(node, ml_collections.ConfigDict) and part in node:
            node, walked = node[part], [*walked, part]
            continue
        if walked == ["task_kwargs"] and i == len(parts) - 1:
            return  # a keyword for the task's factory: checked by validate_config
        if not isinstance(node, ml_collections.ConfigDict):
            raise ConfigError(f"config field {'.'.join(walked)!r} has no field {part!r}")
        choices = sorted(node.keys())
        close = difflib.get_close_matches(part, choices, n=1)
        if close:
            hint = f"did you mean {'.'.join([*walked, close[0]])!r}?"
        else:
            where = f"config field {'.'.join(walked)!r}" if walked else "the config"
            hint = f"{where} has: {', '.join(choices)}"
        raise ConfigError(f"unknown config field {name!r}; {hint}")


def _leaf_fields(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    names = []
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, ml_collections.ConfigDict) and key != "task_kwargs":
            names += _leaf_fields(value, f"{dotted}.")
        else:
            names.append(dotted)
    return names


def check_known_fields(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError for a field that is not in the run's schema (launch/config/defaults.py).

    An experiment config that sets a field no code reads (a typo, or a field since
    removed) would otherwise be silently ignored; it is refused, naming the closest field.
    """
    from bprl.launch.config.defaults import base_config

    schema = base_config()
    for name in _leaf_fields(config):
        try:
            check_field(schema, name)
        except ConfigError as error:
            raise ConfigError(f"{error} (set by the experiment config; no code reads it)") from None
