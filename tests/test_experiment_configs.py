"""Every experiment config loads and validates (real environments); one trains end to end.

Each file in experiments/configs/ (but base.py) is loaded from its path and its
`get_config(variant)` called, as `bprl --config=path:variant` does, in each of its
variants ("" for none), and checked by
`launch.validate.validate_config`, which builds the task's real environment and looks up
the prior's information sets. The tiny variant of seqnav_pointmass trains end to end
through `bprl run` in tests/test_launch_local.py; the tiny walker, in tests/test_sweep.py.
"""

from __future__ import annotations

import glob
import importlib.util
import os

import pytest

from bprl.environments import registry
from bprl.launch.config import errors, validate
from tests_support import REPO

CONFIG_DIR = os.path.join(REPO, "experiments", "configs")
CONFIG_FILES = sorted(
    path
    for path in glob.glob(os.path.join(CONFIG_DIR, "*.py"))
    if os.path.basename(path) not in ("__init__.py", "base.py")
)
VARIANTS = ("", "local_short", "tiny")

# The talk's choices: what the prior must not see, per task.
HIDDEN_FROM_PRIOR = {
    "seqnav_pointmass": "next_target",
    "seqnav_ant": "next_target",
    "ant_box": "target_identity",
    "multitask_pointmass": "task_id",
}


def _module(path: str):
    spec = importlib.util.spec_from_file_location("experiment_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load(path: str, variant: str):
    return _module(path).get_config(variant)


def _variants(path: str) -> tuple[str, ...]:
    """A config file's own `VARIANTS` where it lists them; else the usual three."""
    return tuple(getattr(_module(path), "VARIANTS", VARIANTS))


CONFIG_VARIANTS = [(path, variant) for path in CONFIG_FILES for variant in _variants(path)]


def test_every_task_of_the_talk_has_a_config():
    names = {os.path.splitext(os.path.basename(path))[0] for path in CONFIG_FILES}
    assert set(HIDDEN_FROM_PRIOR) <= names, sorted(names)


@pytest.mark.parametrize(
    "path,variant", CONFIG_VARIANTS, ids=[f"{os.path.basename(p)}:{v}" for p, v in CONFIG_VARIANTS]
)
def test_config_variant_validates(path, variant):
    config = load(path, variant)
    validate.validate_config(config)  # raises ConfigError on any problem
    name = os.path.splitext(os.path.basename(path))[0]
    if name in registry.all_tasks():  # a task's own config (others, e.g. transfer, span two)
        assert config.task == name
    assert config.stop.max_actor_steps > 0
    hidden = HIDDEN_FROM_PRIOR.get(config.task)
    if hidden is not None:
        assert hidden not in config.prior_info
        task = registry.get_task(config.task)
        prior_keys = set(task.keys_for(tuple(config.prior_info)))
        assert not prior_keys & set(task.information_sets[hidden])


@pytest.mark.parametrize("kind", ("mlp", "hierarchical"))
def test_fixed_configuration_variant_validates(kind):
    """multitask_pointmass:fixed_config, flat and hierarchical (experiments/prior_modes.py)."""
    config = load(os.path.join(CONFIG_DIR, "multitask_pointmass.py"), "fixed_config")
    config.prior.kind = kind
    validate.validate_config(config)
    assert config.task_kwargs.fixed_start
    assert "task_id" not in config.prior_info


@pytest.mark.parametrize("path", CONFIG_FILES, ids=os.path.basename)
def test_unknown_variant_is_refused(path):
    with pytest.raises(ValueError, match="unknown variant"):
        load(path, "no_such_variant")


@pytest.mark.parametrize(
    "kind,burn_in,message",
    [
        ("lstm", 8, None),
        ("lstm", -1, "prior.burn_in must be >= 0"),
        ("mlp", 8, "needs a prior with a state"),
        ("hierarchical", 3, "needs a prior with a state"),
    ],
)
def test_a_burn_in_is_accepted_only_for_a_prior_with_a_state(kind, burn_in, message):
    config = load(os.path.join(CONFIG_DIR, "seqnav_pointmass.py"), "tiny")
    config.prior.kind, config.prior.burn_in = kind, burn_in
    if message is None:
        validate.validate_config(config)
    else:
        with pytest.raises(errors.ConfigError, match=message):
            validate.validate_config(config)


@pytest.mark.parametrize(
    "path,variant", CONFIG_VARIANTS, ids=[f"{os.path.basename(p)}:{v}" for p, v in CONFIG_VARIANTS]
)
def test_a_config_that_declares_a_threshold_says_why(path, variant):
    """A report threshold is chosen before the runs, on stated grounds (issue 28)."""
    config = load(path, variant)
    if config.report.threshold is not None:
        assert len(config.report.threshold_reason) > 20, (path, variant)
