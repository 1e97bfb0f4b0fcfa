"""Tanh-squashed actions: what the environment executes, and why the gradient survives.

With `agent.action_squash = "tanh"` replay stores the Gaussian sample u, the actors'
environments execute tanh(u) (`environments.wrappers.TanhActions`) and the critic sees
tanh(u). With "clip" a sample outside the unit box gives the SVG(0) gradient nothing.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from bprl.agents.config import LearnerHyperparams
from bprl.agents.learning_rule import squash_action
from bprl.environments import registry
from bprl.experiments.configs import seqnav_pointmass, walker_walk
from bprl.launch.config.errors import ConfigError
from bprl.launch.config.validate import validate_config
from bprl.launch.program import builders
from bprl.networks.gaussian import GaussianHead


def test_tanh_wrapper_executes_tanh_of_the_stored_action():
    """Real MuJoCo: tanh(u) through the wrapper == the squashed action given directly."""
    config = seqnav_pointmass.get_config("tiny")
    assert config.agent.action_squash == "tanh"
    squashed_env = builders.RunBuilder(config).make_environment(3)
    plain_env = registry.make_environment(config.task, 3, **config.task_kwargs.to_dict())
    assert squashed_env.action_spec().shape == plain_env.action_spec().shape
    a, b = squashed_env.reset(), plain_env.reset()
    np.testing.assert_array_equal(
        a.observation["point_mass/position"], b.observation["point_mass/position"]
    )
    rng = np.random.default_rng(0)
    for _ in range(20):
        u = 3.0 * rng.standard_normal(2)  # mostly outside the unit box
        a, b = squashed_env.step(u), plain_env.step(np.tanh(u))
        for key in a.observation:
            np.testing.assert_allclose(a.observation[key], b.observation[key], err_msg=key)
    # Not vacuous: the same u executed by clipping moves the body differently.
    c, d = squashed_env.step(np.array([0.9, -0.9])), plain_env.step(np.array([0.9, -0.9]))
    assert not np.allclose(
        c.observation["point_mass/velocity"], d.observation["point_mass/velocity"]
    )


@pytest.mark.parametrize("squash, expect_gradient", [("clip", False), ("tanh", True)])
def test_gradient_through_samples_outside_the_box(squash, expect_gradient):
    """Samples all past +1 and Q(a) = a: only tanh passes a gradient to the mean.

    The clip's derivative is zero outside the box, so SVG(0) learns nothing from them.
    """
    head = GaussianHead(("x",), 1, (8,), min_scale=0.01, init_scale=0.05, mean_bound=3.0)
    obs = {"x": tf.ones([16, 3])}
    head.create_variables(obs)
    head._mean.b.assign([2.0])  # mean 3 * tanh(2) ~ 2.9: every sample is past the box
    eps = tf.constant(np.random.default_rng(1).standard_normal((16, 1)), tf.float32)
    with tf.GradientTape() as tape:
        mean, scale = head.moments(obs)
        q = tf.reduce_mean(squash_action(mean + scale * eps, squash))  # Q(a) = a
    grad = tape.gradient(q, head._mean.b)
    assert float(tf.reduce_min(mean + scale * eps)) > 1.0
    if expect_gradient:
        assert float(grad[0]) > 1e-4
    else:
        assert float(grad[0]) == 0.0


def test_mean_bound_limits_the_mean_and_numpy_twin_agrees():
    head = GaussianHead(("x",), 2, (8,), mean_bound=3.0)
    obs = {"x": tf.constant(np.random.default_rng(2).standard_normal((5, 4)), tf.float32)}
    head.create_variables(obs)
    head._mean.b.assign([10.0, -10.0])
    mean, scale = head.moments(obs)
    np.testing.assert_allclose(mean.numpy(), [[3.0, -3.0]] * 5, rtol=1e-5)
    params = head.numpy_params()
    for row in range(5):
        m, s = head.numpy_moments(params, {"x": obs["x"][row].numpy()})
        np.testing.assert_allclose(m, mean[row].numpy(), rtol=1e-5)
        np.testing.assert_allclose(s, scale[row].numpy(), rtol=1e-5)


@pytest.mark.parametrize(
    "field, value", [("agent.action_squash", "sigmoid"), ("network.mean_bound", 0.0)]
)
def test_bad_squash_settings_are_rejected_before_launch(field, value):
    config = seqnav_pointmass.get_config("tiny")
    group, name = field.split(".")
    config[group][name] = value
    with pytest.raises(ConfigError, match=name):
        validate_config(config)


def test_seqnav_config_carries_the_squash_to_the_learner():
    config = seqnav_pointmass.get_config("local_short")
    hyper = builders.RunBuilder(config).hyperparams
    assert hyper.action_squash == "tanh"
    # Other experiments keep Acme's clip (the throughput comparison holds it fixed).
    assert builders.RunBuilder(walker_walk.get_config("tiny")).hyperparams.action_squash == "clip"
    assert LearnerHyperparams().action_squash == "clip"
