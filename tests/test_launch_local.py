"""A real `local_mp` Launchpad program, launched through `bprl run` (real processes)."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest
from tests_support import BPRL, CONFIG, REPO, run_processes

from launch import events

SEQNAV_TINY = "--config=experiments/configs/seqnav_pointmass.py:tiny"


def bprl(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([BPRL, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO)


def _assert_prior_rollout(tmp_path, workdir: str, kind: str) -> None:
    """`bprl rollout --prior` plays the run's checkpointed prior alone and records it."""
    out = str(tmp_path / "prior.npz")
    result = bprl("rollout", f"--workdir={workdir}", "--prior", "--episodes=2", f"--out={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    with np.load(out) as data:
        assert str(data["prior_kind"]) == kind and str(data["head"]) == "prior"
        assert data["action"].shape == (200, 2)  # 2 episodes of the tiny variant's 100 steps
        assert set(np.unique(data["episode"])) == {0, 1}
        assert data["target_history"].size >= 2
        assert ("latent" in data.files) == (kind == "hierarchical")


def test_two_actor_program_runs_logs_and_leaves_nothing(tmp_path):
    """The tiny sequential-navigation config as a real 2-actor program, then a rollout of
    its checkpointed prior. (The tiny walker program runs in tests/test_sweep.py.)"""
    workdir = str(tmp_path / "run")
    result = bprl(
        "run",
        SEQNAV_TINY,
        "--config.actors.num_actors=2",
        f"--workdir={workdir}",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"tensorboard --logdir {workdir}" in result.stdout

    learner = events.read_scalars(os.path.join(workdir, "learner"))
    for tag in (
        "critic_loss",
        "policy_loss",
        "prior_loss",
        "kl_policy_prior",
        "learner_steps_per_second",
    ):
        assert tag in learner, tag
    assert max(step for step, _ in learner["critic_loss"]) > 0  # the learner stepped
    # Data reached Reverb: the learner's dataset blocks until replay holds min_size items,
    # so a learner step is proof that actors inserted and the learner sampled.
    assert learner["learner_steps"][-1][1] >= 1

    total_steps = 0
    for actor_id in range(2):  # every actor wrote episodes (so inserted data into Reverb)
        actor = events.read_scalars(os.path.join(workdir, "actors", str(actor_id)))
        assert "episode_return" in actor and "steps_per_second" in actor
        returns = [value for _, value in actor["episode_return"]]
        # A return is a number of targets reached: a whole number, at most one per step.
        assert all(value == int(value) and 0 <= value <= 100 for value in returns)
        total_steps = max(total_steps, max(value for _, value in actor["actor_steps"]))
    assert total_steps >= 1_500  # the run went to its budget

    evaluator = events.read_scalars(os.path.join(workdir, "evaluator_0"))
    assert evaluator["policy_return"] and evaluator["prior_return"]
    assert run_processes(workdir) == []  # no process of the run is left
    _assert_prior_rollout(tmp_path, workdir, "mlp")


WALKER = f"--config={CONFIG}"


@pytest.mark.parametrize(
    "args, message",
    [
        # the config's values
        ([f"{WALKER}:tiny", "--config.task=no_such_task"], "unknown task 'no_such_task'"),
        (
            [f"{WALKER}:tiny", "--config.prior_info=('no_such_set',)"],
            "no information set 'no_such_set'",
        ),
        ([f"{WALKER}:tiny", "--config.actors.num_actors=0"], "actors.num_actors must be >= 1"),
        ([f"{WALKER}:tiny", "--config.prior.kind=gru"], "prior.kind must be one of"),
        # the command line itself
        (
            [f"{WALKER}:tiny", "--config.agent.alhpa=0.1"],
            "unknown config field 'agent.alhpa'; did you mean 'agent.alpha'?",
        ),
        (
            [f"{WALKER}:tiny", "--config.task_kwargs.foo=1"],
            "task 'walker_walk' takes no keyword 'foo' (task_kwargs.foo); it takes: time_limit",
        ),
        (
            ["--config=experiments/configs/nope.py"],
            "config file 'experiments/configs/nope.py' not found; configs in "
            "experiments/configs: ant_box.py,",
        ),
        (
            [f"{WALKER}:nope"],
            "unknown variant 'nope'; use one of '', 'local_short', 'tiny'",
        ),
        (
            [f"{WALKER}:tiny", "--config.actors.num_actors=abc"],
            "flag --config.actors.num_actors=abc: invalid literal for int()",
        ),
        ([f"{WALKER}:tiny", "--network=foo"], "flag --network=foo: value should be one of"),
        ([f"{WALKER}:tiny", "--wrokdir=x"], "Unknown command line flag 'wrokdir'"),
        ([f"{WALKER}:tiny", "extra"], "unexpected arguments ['extra']"),
    ],
)
def test_bad_input_is_one_error_line_and_launches_nothing(tmp_path, args, message):
    """Every bad input `bprl run` can see: one `error:` line, exit code 1, nothing started,
    no run directory."""
    workdir = str(tmp_path / "run")
    result = bprl("run", *args, f"--workdir={workdir}", timeout=120)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    assert message in lines[0]
    assert result.returncode == 1
    assert not os.path.exists(workdir)  # nothing was written, so nothing was launched
    assert run_processes(workdir) == []


def test_misspelt_command_is_one_error_line():
    result = bprl("rnu", timeout=120)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: unknown command 'rnu'; use one of run, tasks, sweep, rollout, report"
    ]


def test_unwritable_workdir_fails_before_launch(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if os.access(locked, os.W_OK):  # root ignores permissions: use a path under a file
        target = str(tmp_path / "a_file" / "run")
        (tmp_path / "a_file").write_text("")
    else:
        target = str(locked / "run")
    result = bprl("run", f"--config={CONFIG}:tiny", f"--workdir={target}", timeout=120)
    assert result.returncode == 1
    assert "is not writable" in result.stderr


@pytest.mark.parametrize(
    "kind",
    # Both kinds' replay paths are also covered, through a real Reverb table, by
    # tests/test_priors.py, and the MLP prior's whole program and rollout by the test
    # above; these runs are in `make test-slow` (CI time budget).
    [
        pytest.param("lstm", marks=pytest.mark.slow),
        pytest.param("hierarchical", marks=pytest.mark.slow),
    ],
)
def test_prior_architectures_train_and_roll_out(tmp_path, kind):
    """Each prior kind runs as a real program (its extras go through Reverb to the learner),
    and `bprl rollout --prior` plays the checkpointed prior alone and records trajectories."""
    workdir = str(tmp_path / "run")
    result = bprl(
        "run",
        SEQNAV_TINY,
        f"--config.prior.kind={kind}",
        "--config.stop.max_actor_steps=0",  # stop on learner updates: there are always some
        "--config.stop.max_learner_steps=30",
        f"--workdir={workdir}",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    learner = events.read_scalars(os.path.join(workdir, "learner"))
    assert learner["learner_steps"][-1][1] >= 1
    assert "prior_return" in events.read_scalars(os.path.join(workdir, "evaluator_0"))
    _assert_prior_rollout(tmp_path, workdir, kind)
