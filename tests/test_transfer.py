"""Prior transfer: artifacts round-trip for every prior kind, mismatches are refused before
launch, and a real run trains against a loaded prior (frozen: bit for bit unchanged;
fine-tuned: trained on)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import acme
import numpy as np
import pytest
import tensorflow as tf

from bprl.agents import prior_artifact
from bprl.agents.actor import GaussianActor
from bprl.launch.config import errors, validate
from bprl.launch.program import builders
from bprl.launch.reuse import rollout, transfer
from bprl.launch.rundir.events import read_scalars, run_dirs
from tests_support import BPRL, REPO, run_processes

# pytest-xdist (the default run): these tests stay on one worker, for
# its module fixture.
pytestmark = pytest.mark.xdist_group("test_transfer")

CONFIG = os.path.join(REPO, "experiments", "configs", "transfer_pointmass.py")
KINDS = [
    ("mlp", True),
    ("lstm", True),
    ("hierarchical", True),
    ("hierarchical", False),
    ("mlp_latent_policy", True),
]


def _config_module(path: str):
    """An experiment config file as a module (the configs are files, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _config(variant: str, kind: str = "mlp", share_low: bool = True, seed: int = 0):
    config = _config_module(CONFIG).get_config(variant)
    config.prior.kind = kind
    config.prior.share_low_level = share_low
    config.prior.lstm_size = 8
    config.prior.latent_size = 2
    config.prior.low_hidden = (16,)
    config.seed = seed
    return config


def _make_artifact(path: str, config, seed: int = 0):
    """An artifact of `config`'s networks with every weight moved off its initial value."""
    env = builders.RunBuilder(config).make_environment(config.seed)
    env_spec = acme.make_environment_spec(env)
    networks = builders.RunBuilder(config, env_spec).make_networks()
    rng = np.random.default_rng(seed)
    for module in networks.kind.transfer_modules(networks).values():
        for variable in module.variables:
            variable.assign(variable + 0.3 * rng.standard_normal(variable.shape).astype(np.float32))
    prior_artifact.save(
        path,
        networks,
        builders.RunBuilder(config).head_sizes,
        tuple(config.prior_info),
        builders.RunBuilder(config).prior_keys,
        env_spec.observations,
        env_spec.actions,
        config.agent.action_squash,
        {"run": "test", "learner_step": 0},
    )
    return networks, env


def _prior_actions(head, config, steps: int = 60) -> np.ndarray:
    """The head's sampled actions along a fixed trajectory (seeded: comparable exactly)."""
    env = builders.RunBuilder(config).make_environment(123)
    actor = GaussianActor(head, stochastic=True, seed=7)
    drive = np.random.default_rng(1)
    timestep = env.reset()
    actor.reset()
    actions = []
    for _ in range(steps):
        actions.append(actor.select_action(timestep.observation))
        timestep = env.step(drive.uniform(-1, 1, env.action_spec().shape))
        if timestep.last():
            timestep = env.reset()
            actor.reset()
    return np.stack(actions)


@pytest.mark.parametrize("kind,share_low", KINDS, ids=[f"{k}-{s}" for k, s in KINDS])
def test_artifact_round_trips(tmp_path, kind, share_low):
    config = _config("tiny_source", kind, share_low)
    art = str(tmp_path / "prior")
    networks, env = _make_artifact(art, config)
    expected = _prior_actions(networks.prior, config)

    loaded, metadata = prior_artifact.load(art)  # from the artifact alone
    assert metadata["kind"] == kind
    np.testing.assert_array_equal(_prior_actions(loaded.prior, config), expected)

    # Into a run's networks built from another seed: the same weights, the same actions.
    other = builders.RunBuilder(
        _config("tiny_source", kind, share_low, seed=5), acme.make_environment_spec(env)
    ).make_networks()
    assert not np.array_equal(_prior_actions(other.prior, config), expected)
    prior_artifact.load_into(art, other)
    np.testing.assert_array_equal(_prior_actions(other.prior, config), expected)
    if kind == "hierarchical" and share_low:  # the shared low level travels with the prior
        for a, b in zip(networks.policy.low.variables, other.policy.low.variables, strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.fixture(scope="module")
def mlp_artifact(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("artifacts") / "mlp")
    _make_artifact(path, _config("tiny_source"))
    return path


def _target(artifact: str, **fields):
    config = _config("tiny")
    config.prior.artifact = artifact
    for dotted, value in fields.items():
        node = config
        *parents, leaf = dotted.split("__")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return config


def test_matching_artifact_validates(mlp_artifact):
    validate.validate_config(_target(mlp_artifact))


@pytest.mark.parametrize(
    "variant,kind",
    [
        ("source_goals", "mlp"),
        ("source_layout", "mlp"),
        ("source_random", "mlp"),
        ("source_random_offset", "mlp"),
        ("source_goals", "hierarchical"),
    ],
)
def test_each_science_ii_source_fits_the_new_task_as_configured(tmp_path, variant, kind):
    """The new task of issue 28's pairs is seqnav_pointmass:local_short as it is: a prior
    exported from each source variant loads there with no other override than the prior's
    kind (the hierarchical pair: the goals room's skills, its low level shared with the
    policy, reused frozen under a new high level)."""
    module = _config_module(os.path.join(REPO, "experiments", "configs", "seqnav_pointmass.py"))
    source = _config(variant, kind)
    # _config shrinks the prior's sizes for speed; a pair's source keeps its config's own
    as_configured = _config_module(CONFIG).get_config(variant).prior
    for field in ("latent_size", "low_hidden", "lstm_size"):
        source.prior[field] = as_configured[field]
    assert source.task == (
        "multitask_pointmass" if variant == "source_goals" else "seqnav_pointmass"
    )
    assert source.report.threshold is not None and source.report.threshold_reason
    art = str(tmp_path / "art")
    _make_artifact(art, source)
    target = module.get_config("local_short")
    target.prior.artifact, target.prior.frozen, target.prior.kind = art, True, kind
    validate.validate_config(target)


@pytest.mark.parametrize(
    "fields,message",
    [
        ({"prior_info": ("proprioception", "location")}, "'target_positions'"),
        ({"task_kwargs__num_targets": 3}, "'target_positions' has shape (6,)"),
        ({"prior__kind": "lstm"}, "prior.kind is 'mlp' in the artifact"),
        ({"agent__action_squash": "clip"}, "agent.action_squash"),
        ({"network__prior_hidden": (64,)}, "network.prior_hidden"),
    ],
)
def test_mismatch_is_one_error_naming_it(mlp_artifact, fields, message):
    with pytest.raises(errors.ConfigError) as error:
        validate.validate_config(_target(mlp_artifact, **fields))
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_action_size_mismatch_is_refused(mlp_artifact, tmp_path):
    art = str(tmp_path / "three_actions")
    shutil.copytree(mlp_artifact, art)
    with open(os.path.join(art, "prior.json")) as f:
        metadata = json.load(f)
    metadata["action"]["shape"] = [3]
    with open(os.path.join(art, "prior.json"), "w") as f:
        json.dump(metadata, f)
    with pytest.raises(errors.ConfigError, match=r"action shape is \(2,\) here, \(3,\)"):
        validate.validate_config(_target(art))


def test_damaged_artifacts_are_clear_errors(mlp_artifact, tmp_path):
    truncated = str(tmp_path / "truncated")
    shutil.copytree(mlp_artifact, truncated)
    data = [n for n in os.listdir(truncated) if n.startswith("weights.data")][0]
    with open(os.path.join(truncated, data), "r+b") as f:
        f.truncate(os.path.getsize(os.path.join(truncated, data)) // 2)
    partial = str(tmp_path / "partial")
    shutil.copytree(mlp_artifact, partial)
    os.remove(os.path.join(partial, "prior.json"))
    missing = str(tmp_path / "missing_weights")
    shutil.copytree(mlp_artifact, missing)
    os.remove(os.path.join(missing, "weights.index"))
    for path, message in (
        (truncated, "is corrupt"),
        (partial, "prior.json is missing"),
        (missing, "weights.index is missing"),
        (str(tmp_path / "nowhere"), "does not exist"),
    ):
        with pytest.raises(errors.ConfigError, match=message):
            validate.validate_config(_target(path))
        with pytest.raises(prior_artifact.ArtifactError, match=message):
            prior_artifact.load(path)


def test_cli_refuses_a_mismatch_before_launching(mlp_artifact, tmp_path):
    workdir = str(tmp_path / "run")
    result = subprocess.run(
        [
            BPRL,
            "run",
            f"--config={CONFIG}:tiny",
            f"--config.prior.artifact={mlp_artifact}",
            "--config.prior.kind=lstm",
            f"--workdir={workdir}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "prior.kind" in errors[0], result.stderr
    assert not os.path.exists(workdir)
    assert not run_processes(workdir)


def _start(workdir: str, *overrides: str, variant: str = "tiny") -> subprocess.Popen:
    return subprocess.Popen(
        [BPRL, "run", f"--config={CONFIG}:{variant}", f"--workdir={workdir}", *overrides],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen) -> None:
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]


def _variables(module) -> list[np.ndarray]:
    return [v.numpy() for v in module.variables]


@pytest.mark.slow  # three real programs (~2-3 min); the learner's frozen path is also
# checked in-process for every kind (tests/test_priors.py), the artifact round trip here
def test_train_against_a_frozen_and_a_fine_tuned_prior(tmp_path):
    """Export from a real run of the source task, start two runs of the new task from it."""
    source, art = str(tmp_path / "source"), str(tmp_path / "prior")
    _finish(_start(source, variant="tiny_source"))
    result = subprocess.run(
        [BPRL, "export-prior", f"--workdir={source}", f"--out={art}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded, metadata = prior_artifact.load(art)
    assert metadata["source"]["run"] == source
    assert metadata["source"]["task"] == "multitask_pointmass"
    assert metadata["source"]["learner_step"] == transfer.learner_checkpoints(source)[-1][0] > 0
    artifact_prior = _variables(loaded.prior)

    frozen, finetuned = str(tmp_path / "frozen"), str(tmp_path / "finetuned")
    runs = [  # side by side: two small programs
        _start(frozen, f"--config.prior.artifact={art}", "--config.prior.frozen=True"),
        _start(finetuned, f"--config.prior.artifact={art}"),
    ]
    for proc in runs:
        _finish(proc)

    config, networks, record = rollout.load_run(frozen)
    assert record["counts"]["learner_steps"] > 0
    for trained, saved in zip(_variables(networks.prior), artifact_prior, strict=True):
        np.testing.assert_array_equal(trained, saved)  # bit for bit
    initial = builders.RunBuilder(config).make_networks()
    moved = [
        not np.array_equal(a, b)
        for a, b in zip(_variables(networks.policy), _variables(initial.policy), strict=True)
    ]
    assert all(moved)
    # the evaluator still reports the (transferred) prior's own return on the new task
    scalars = [read_scalars(d) for d in run_dirs(os.path.join(frozen, "evaluator_0"))]
    assert any("prior_return" in s for s in scalars)

    _, tuned, _ = rollout.load_run(finetuned)
    changed = [
        not np.array_equal(a, b)
        for a, b in zip(_variables(tuned.prior), artifact_prior, strict=True)
    ]
    assert all(changed)
    tf.keras.backend.clear_session()
