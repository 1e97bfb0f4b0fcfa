"""A real `local_mp` Launchpad program, launched through `bprl run` (real processes)."""

from __future__ import annotations

import json
import os
import re
import subprocess

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.custom_scalar import metadata as custom_scalar_metadata

from bprl.launch.rundir import events
from tests_support import BPRL, CONFIG, REPO, run_processes

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


def _assert_quiet_console(result: subprocess.CompletedProcess, workdir: str) -> None:
    """Where the run is comes first; no deprecation noise; Launchpad's chatter in one line
    each (its countdown is not run together)."""
    lines = result.stdout.splitlines()
    assert lines[:3] == [
        f"run directory: {workdir}",
        f"watch it with: tensorboard --logdir {workdir}",
        f"node logs: {workdir}/logs/<node>/<i>",
    ], result.stdout[:2000]
    assert "Warning" not in result.stdout + result.stderr, result.stderr[-3000:]
    assert "Waiting for workers" not in result.stdout and "Logging to" not in result.stdout
    assert sum(line.startswith("stopping: ") for line in lines) == 1
    # the end: a summary of the run, and its learning curve
    summary = lines[[line.startswith("summary: ") for line in lines].index(True) :]
    assert summary[1].lstrip().startswith("policy return:") and "->" in summary[1]
    assert summary[2].lstrip().startswith("prior alone return:") and "->" in summary[2]
    with open(os.path.join(workdir, "learning_curve.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def _raw_tags(logdir: str) -> dict[str, list]:
    """{tag as written: events} of one event-file directory (no name mapping)."""
    accumulator = event_accumulator.EventAccumulator(
        logdir, size_guidance={event_accumulator.TENSORS: 0}
    )
    accumulator.Reload()
    return {tag: accumulator.Tensors(tag) for tag in accumulator.Tags()["tensors"]}


def _assert_tensorboard_layout(workdir: str) -> None:
    """Tags grouped by prefix, one x-axis (actor steps) for every node, and the run's
    custom-scalars layout: policy and prior return on one chart, KL beside them."""
    expected = {
        "learner": ("loss/critic", "loss/policy", "loss/prior", "kl/policy_prior"),
        "actors/0": ("actor/episode_return", "actor/steps_per_second"),
        "evaluator_0": ("eval/policy_return", "eval/prior_return"),
    }
    for node, tags in expected.items():
        written = _raw_tags(os.path.join(workdir, node))
        for tag in (*tags, "counts/actor_steps", "counts/learner_steps", "system/"):
            assert any(name.startswith(tag) for name in written), (node, tag, sorted(written))
        assert all("/" in name for name in written), sorted(written)
        # x = the counter's actor steps, at every write of every node
        x_axis = [
            (e.step, float(tf.make_ndarray(e.tensor_proto))) for e in written["counts/actor_steps"]
        ]
        assert x_axis and all(step == int(value) for step, value in x_axis), (node, x_axis)
    learner = _raw_tags(os.path.join(workdir, "learner"))
    learner_steps = [
        float(tf.make_ndarray(e.tensor_proto)) for e in learner["counts/learner_steps"]
    ]
    actor_steps = [e.step for e in learner["counts/learner_steps"]]
    assert learner_steps != actor_steps  # the learner's own steps are a scalar, not the x-axis

    root = _raw_tags(workdir)
    (config,) = root[custom_scalar_metadata.CONFIG_SUMMARY_TAG]
    layout = layout_pb2.Layout.FromString(tf.make_ndarray(config.tensor_proto).item())
    for category in layout.category:
        titles = {chart.title: list(chart.multiline.tag) for chart in category.chart}
        returns = [t for t, regexes in titles.items() if _matches(regexes, "eval/policy_return")]
        if returns and _matches(titles[returns[0]], "eval/prior_return"):
            assert any(_matches(regexes, "kl/policy_prior") for regexes in titles.values())
            break
    else:
        raise AssertionError(f"no chart with policy and prior return: {layout}")


def _matches(regexes: list[str], tag: str) -> bool:
    return any(re.search(regex, tag) for regex in regexes)


def test_two_actor_program_runs_logs_and_leaves_nothing(tmp_path):
    """The tiny sequential-navigation config as a real 2-actor program, then a rollout of
    its checkpointed prior. (The tiny walker program runs in tests/test_sweep.py.)"""
    workdir = str(tmp_path / "run")
    result = bprl(
        "run",
        SEQNAV_TINY,
        "--config.actors.num_actors=2",
        "--config.task_kwargs.reach_radius=0.1",  # a task keyword the config does not set
        f"--workdir={workdir}",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["task_kwargs"]["reach_radius"] == 0.1
    _assert_quiet_console(result, workdir)
    _assert_tensorboard_layout(workdir)

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
        # an actor's environment seed (seed * 1000 + id) past 32 bits failed every actor
        ([f"{WALKER}:tiny", "--config.seed=5000000"], "seed must be in [0, 4294966]"),
        ([f"{WALKER}:tiny", "--config.seed=-1"], "seed must be in [0, 4294966]"),
        (
            [f"{WALKER}:tiny", "--config.stop.max_actor_steps=-5"],
            "stop.max_actor_steps must be >= 0, got -5",
        ),
        (
            [f"{WALKER}:tiny", "--config.resources.learner_kernels=bf16"],
            "resources.learner_kernels must be one of ('auto', 'xla_float32', 'onednn_bfloat16')",
        ),
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


def test_a_sweep_with_no_parallel_runs_is_one_error_line_and_launches_nothing(tmp_path):
    workdir = str(tmp_path / "sweep")
    result = bprl("sweep", f"{WALKER}:tiny", "--seeds=2", "--parallel=0", f"--workdir={workdir}")
    assert result.returncode == 1
    assert result.stderr.splitlines() == ["error: --parallel must be >= 1, got 0"]
    assert not os.path.exists(workdir)


def test_help_shows_the_commands():
    result = bprl("--help", timeout=120)
    for command in ("bprl run", "bprl sweep", "bprl report", "bprl export-prior", "bprl tasks"):
        assert command in result.stdout + result.stderr


def test_misspelt_command_is_one_error_line():
    result = bprl("rnu", timeout=120)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: unknown command 'rnu'; use one of run, tasks, sweep, rollout, export-prior, report"
    ]


def test_unwritable_workdir_fails_before_launch(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    (tmp_path / "a_file").write_text("")
    if os.access(locked, os.W_OK):  # root ignores permissions: use a path under a file
        target = str(tmp_path / "a_file" / "run")
    else:
        target = str(locked / "run")
    result = bprl("run", f"--config={CONFIG}:tiny", f"--workdir={target}", timeout=120)
    assert result.returncode == 1
    assert "is not writable" in result.stderr
    # a file where the run directory should be: said as such
    result = bprl("run", f"--config={CONFIG}:tiny", f"--workdir={tmp_path / 'a_file'}")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: workdir '{tmp_path / 'a_file'}' is a file, not a directory"
    ]


@pytest.mark.parametrize(
    "kind",
    # Both kinds' replay paths are also covered, through a real Reverb table, by
    # tests/test_priors.py, and the MLP prior's whole program and rollout by the test
    # above; these runs are in `make test-slow` (CI time budget).
    [
        pytest.param("lstm", marks=pytest.mark.slow),
        pytest.param("hierarchical", marks=pytest.mark.slow),
        pytest.param("mlp_latent_policy", marks=pytest.mark.slow),
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
