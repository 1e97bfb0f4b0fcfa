"""Every experiment config loads and validates (real environments); one trains end to end.

Each file in experiments/configs/ (but base.py) is loaded from its path and its
`get_config(variant)` called, as `bprl --config=path:variant` does, in each of its
variants ("" for none), and checked by
`launch.validate.validate_config`, which builds the task's real environment and looks up
the prior's information sets. Then the tiny variant of seqnav_pointmass runs through
`bprl run` as real processes and writes episodes, learner steps and evaluations.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import subprocess

import pytest
from tests_support import BPRL, REPO, run_processes

from environments import registry
from launch import events, validate

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


def load(path: str, variant: str):
    spec = importlib.util.spec_from_file_location("experiment_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant)


def test_every_task_of_the_talk_has_a_config():
    names = {os.path.splitext(os.path.basename(path))[0] for path in CONFIG_FILES}
    assert set(HIDDEN_FROM_PRIOR) <= names, sorted(names)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("path", CONFIG_FILES, ids=os.path.basename)
def test_config_variant_validates(path, variant):
    config = load(path, variant)
    validate.validate_config(config)  # raises ConfigError on any problem
    assert config.task == os.path.splitext(os.path.basename(path))[0]
    assert config.stop.max_actor_steps > 0
    hidden = HIDDEN_FROM_PRIOR.get(config.task)
    if hidden is not None:
        assert hidden not in config.prior_info
        task = registry.get_task(config.task)
        prior_keys = set(task.keys_for(tuple(config.prior_info)))
        assert not prior_keys & set(task.information_sets[hidden])


@pytest.mark.parametrize("path", CONFIG_FILES, ids=os.path.basename)
def test_unknown_variant_is_refused(path):
    with pytest.raises(ValueError, match="unknown variant"):
        load(path, "no_such_variant")


def test_seqnav_pointmass_tiny_trains_end_to_end(tmp_path):
    workdir = str(tmp_path / "run")
    config = os.path.join(CONFIG_DIR, "seqnav_pointmass.py")
    result = subprocess.run(
        [BPRL, "run", f"--config={config}:tiny", f"--workdir={workdir}"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    learner = events.read_scalars(os.path.join(workdir, "learner"))
    assert learner["learner_steps"][-1][1] >= 1  # actors inserted, the learner sampled
    for tag in ("critic_loss", "policy_loss", "prior_loss", "kl_policy_prior"):
        assert tag in learner, tag

    total_steps = 0
    for actor_id in range(2):
        actor = events.read_scalars(os.path.join(workdir, "actors", str(actor_id)))
        returns = [value for _, value in actor["episode_return"]]
        # A return is a number of targets reached: a whole number, at most one per step.
        assert all(value == int(value) and 0 <= value <= 100 for value in returns)
        total_steps = max(total_steps, max(value for _, value in actor["actor_steps"]))
    assert total_steps >= 1_500  # the run went to its budget

    evaluator = events.read_scalars(os.path.join(workdir, "evaluator_0"))
    assert evaluator["policy_return"] and evaluator["prior_return"]
    assert run_processes(workdir) == []  # no process of the run is left
