"""Checks an experiment config before anything is launched: one clear line per problem.

The fields' values and bounds, the task (reset and one step), the prior artifact. The
command line's config arguments are checked in loading.py, the machine fit in fit.py,
the run directory in workdir.py.
"""

from __future__ import annotations

import ml_collections

from bprl.environments import registry
from bprl.launch.config import derived, xla
from bprl.launch.config.errors import ConfigError
from bprl.launch.config.loading import check_known_fields

# Actor streams and evaluators seed their environments seed * 1000 + their id (< 1000),
# which MuJoCo and NumPy take only below 2**32.
MAX_SEED = (2**32 - 1 - 999) // 1000


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError naming the first problem found in `config`."""
    check_known_fields(config)
    if not 0 <= config.seed <= MAX_SEED:
        raise ConfigError(
            f"seed must be in [0, {MAX_SEED}] (environments are seeded seed * 1000 + their "
            f"actor or evaluator id, which must fit in 32 bits), got {config.seed}"
        )
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

    from bprl.agents import prior_kinds
    from bprl.agents.learning_rule import ACTION_SQUASHES
    from bprl.agents.prior_kinds import PRIOR_KINDS

    burn_in = config.prior.get("burn_in", 0)
    stateful = config.prior.kind in PRIOR_KINDS and prior_kinds.get(config.prior.kind).stateful

    checks = [
        (
            config.prior.kind in PRIOR_KINDS,
            f"prior.kind must be one of {PRIOR_KINDS}, got {config.prior.kind!r}",
        ),
        (config.prior.lstm_size >= 1, "prior.lstm_size must be >= 1"),
        (burn_in >= 0, f"prior.burn_in must be >= 0, got {burn_in}"),
        (
            burn_in == 0 or stateful,
            f"prior.burn_in={burn_in} needs a prior with a state (kind 'lstm'); "
            f"kind {config.prior.kind!r} has none",
        ),
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
        ("resources.learner_threads", -1, True),
        ("resources.critic_one_pass_bytes", 0, True),
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
