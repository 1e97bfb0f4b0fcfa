"""The learning rule's pieces against independent references (no processes involved)."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
import trfl

from bprl.agents import learning_rule as losses
from bprl.agents.config import LearnerHyperparams
from bprl.agents.learner import Learner
from bprl.agents.learning_rule import compute_losses
from bprl.agents.prior_kinds import make_networks
from bprl.environments import registry

T, B = 10, 7  # transitions per sequence, batch


def _random_sequences(seed: int):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(T + 1, B)).astype(np.float32)
    v = rng.normal(size=(T + 1, B)).astype(np.float32)
    r = rng.normal(size=(T + 1, B)).astype(np.float32)
    d = (rng.uniform(size=(T + 1, B)) > 0.1).astype(np.float32)  # some true terminations
    c = rng.uniform(0.05, 1.0, size=(T + 1, B)).astype(np.float32)
    start = rng.uniform(size=(T + 1, B)) < 0.2  # episode starts inside the sequence
    # The row before a start is an episode's final observation: no reward, no discount.
    final_observation = np.zeros_like(start)
    final_observation[:-1] = start[1:]
    r[final_observation] = 0.0
    d[final_observation] = 0.0
    return q, v, r, d, c, start


def _loop_reference(q, v, r, d, c, start, gamma):
    """DESIGN.md's sum form as a plain loop: Q' + sum_s gamma^(s-t) (prod c) delta_s."""
    targets = np.full((T, B), np.nan)
    for b in range(B):
        for t in range(T):
            if start[t + 1, b]:
                continue  # row t is an episode's final observation, not a transition
            total, discount, trace, s = float(q[t, b]), 1.0, 1.0, t
            while True:
                delta = r[s, b] + gamma * d[s, b] * v[s + 1, b] - q[s, b]
                total += discount * trace * delta
                if s + 1 >= T or start[s + 2, b]:
                    break  # the sequence ends, or row s+1 is not a transition
                discount *= gamma * d[s, b]
                trace *= c[s + 1, b]
                s += 1
            targets[t, b] = total
    return targets


def _ours(q, v, r, d, c, start, gamma):
    # Retrace reads Q', V and c of rows 1..T only; the reference reads row 0 of Q' too.
    targets, is_transition = losses.retrace_targets(
        *(tf.constant(x) for x in (q[1:], v[1:], r, d, c[1:], start)), gamma
    )
    return targets.numpy(), is_transition.numpy().astype(bool)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_retrace_matches_plain_loop(seed):
    q, v, r, d, c, start = _random_sequences(seed)
    targets, mask = _ours(q, v, r, d, c, start, gamma=0.97)
    expected = _loop_reference(q, v, r, d, c, start, gamma=0.97)
    assert mask.sum() > 0 and (~mask).sum() > 0  # both kinds of rows are exercised
    np.testing.assert_array_equal(mask, ~np.isnan(expected))
    np.testing.assert_allclose(targets[mask], expected[mask], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", [3, 4])
def test_retrace_matches_trfl(seed):
    """trfl's discrete-action retrace_core, fed a two-action embedding of the same inputs.

    Action 0 is the one taken: Q'(x, 0) = q and pi'(0|x) = p; action 1 gets the value that
    makes sum_a pi'(a|x) Q'(x, a) = V(x), and mu(0|x) = p / c gives trfl's trace
    coefficient min(1, p / mu) = c. Rows that are an episode's final observation get
    p = 0, so trfl also cuts the trace there.
    """
    q, v, r, d, c, start = _random_sequences(seed)
    gamma = 0.95
    is_transition = np.ones((T + 1, B), bool)
    is_transition[:-1] = ~start[1:]
    p = np.where(is_transition, 0.5, 0.0).astype(np.float32)
    other_q = ((v - p * q) / (1.0 - p)).astype(np.float32)
    qs = np.stack([q, other_q], axis=-1)
    target_probs = np.stack([p, 1.0 - p], axis=-1)
    behaviour_probs = np.where(p > 0, p / c, 1.0).astype(np.float32)
    actions = np.zeros((T + 1, B), np.int32)
    extra = trfl.retrace_core(
        lambda_=1.0,
        q_tm1=tf.constant(qs[:-1]),
        a_tm1=tf.constant(actions[:-1]),
        r_t=tf.constant(r[:-1]),
        pcont_t=tf.constant(gamma * d[:-1]),
        target_policy_t=tf.constant(target_probs[1:]),
        behaviour_policy_t=tf.constant(behaviour_probs[1:]),
        targnet_q_t=tf.constant(qs[1:]),
        a_t=tf.constant(actions[1:]),
    ).extra
    targets, mask = _ours(q, v, r, d, c, start, gamma)
    np.testing.assert_allclose(targets[mask], extra.target.numpy()[mask], rtol=1e-4, atol=1e-4)


def test_gaussian_kl_matches_monte_carlo():
    rng = np.random.default_rng(0)
    mean_p, mean_q = rng.normal(size=(2, 5, 3)).astype(np.float32)
    scale_p, scale_q = rng.uniform(0.3, 1.5, size=(2, 5, 3)).astype(np.float32)
    analytic = losses.gaussian_kl(mean_p, scale_p, mean_q, scale_q).numpy()
    p = tfp.distributions.MultivariateNormalDiag(mean_p, scale_p)
    q = tfp.distributions.MultivariateNormalDiag(mean_q, scale_q)
    x = p.sample(200_000, seed=1)
    monte_carlo = tf.reduce_mean(p.log_prob(x) - q.log_prob(x), axis=0).numpy()
    np.testing.assert_allclose(analytic, monte_carlo, rtol=0.03, atol=0.02)
    # Our log-density equals TF-Probability's.
    np.testing.assert_allclose(
        losses.gaussian_log_prob(mean_p, scale_p, x[:10]).numpy(),
        p.log_prob(x[:10]).numpy(),
        rtol=1e-5,
    )


def _batch_and_networks(seed=0):
    env = registry.make_environment("walker_walk", 0)
    spec = env.observation_spec()
    prior_keys = registry.get_task("walker_walk").keys_for(["proprioception"])
    tf.random.set_seed(seed)
    nets = make_networks(spec, 6, prior_keys, (32, 32), (32, 32), (32, 32))
    targets = make_networks(spec, 6, prior_keys, (32, 32), (32, 32), (32, 32))
    rng = np.random.default_rng(seed)
    batch = losses.SequenceBatch(
        observation={
            k: tf.constant(rng.normal(size=(T + 1, B) + s.shape).astype(np.float32))
            for k, s in spec.items()
        },
        action=tf.constant(rng.uniform(-1, 1, size=(T + 1, B, 6)).astype(np.float32)),
        reward=tf.constant(rng.uniform(size=(T + 1, B)).astype(np.float32)),
        discount=tf.ones((T + 1, B)),
        start_of_episode=tf.constant(rng.uniform(size=(T + 1, B)) < 0.1),
        behaviour_log_prob=tf.constant(rng.normal(size=(T + 1, B)).astype(np.float32)),
    )
    return nets, targets, batch


# Which networks each loss may differentiate into. The policy loss is -Q(x, a_theta) + ...,
# so it has a gradient for the critic too; the learner applies it to the policy only
# (checked in test_learner_applies_each_loss_to_its_own_network).
_REACHES = {
    "prior": {"prior"},
    "policy": {"policy", "critic"},
    "critic": {"critic"},
}


@pytest.mark.parametrize("loss_name", sorted(_REACHES))
def test_each_loss_reaches_only_its_networks(loss_name):
    nets, targets, batch = _batch_and_networks()
    hyper = LearnerHyperparams(alpha=0.5, num_action_samples=3)
    modules = {"policy": nets.policy, "prior": nets.prior, "critic": nets.critic}
    variables = [v for m in modules.values() for v in m.trainable_variables]
    with tf.GradientTape() as tape:
        loss = getattr(compute_losses(nets, targets, batch, hyper), loss_name)
    grads = dict(zip([v.ref() for v in variables], tape.gradient(loss, variables), strict=True))
    for name, module in modules.items():
        norm = sum(
            0.0 if grads[v.ref()] is None else float(tf.norm(grads[v.ref()]))
            for v in module.trainable_variables
        )
        if name in _REACHES[loss_name]:
            assert norm > 0.0, f"{loss_name} loss does not reach the {name}"
        else:
            assert norm == 0.0, f"{loss_name} loss leaks into the {name}"


@pytest.mark.parametrize("trained", ["policy", "prior", "critic"])
def test_learner_applies_each_loss_to_its_own_network(trained, eager_tf):
    """With two of the three learning rates at zero, one update changes only one network."""
    nets, _, batch = _batch_and_networks()
    rates = {f"{name}_learning_rate": 0.0 for name in ("policy", "prior", "critic")}
    rates[f"{trained}_learning_rate"] = 1e-2
    learner = Learner(
        nets, iter(()), LearnerHyperparams(num_action_samples=3, **rates), jit_compile=False
    )
    before = {n: [v.numpy() for v in getattr(nets, n).variables] for n in rates_names()}
    metrics = learner.learn_from_batch(batch)
    assert metrics["update_applied"]
    for name in rates_names():
        changed = any(
            not np.array_equal(old, new.numpy())
            for old, new in zip(before[name], getattr(nets, name).variables, strict=True)
        )
        assert changed == (name == trained), name


def rates_names():
    return ("policy", "prior", "critic")


def test_xla_fast_math_is_added_once_and_never_overrides_the_user(monkeypatch):
    from bprl.launch.config.xla import learner_environment
    from bprl.launch.config.xla import request_fast_math as request_xla_fast_math

    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x")
    assert request_xla_fast_math()
    assert os.environ["XLA_FLAGS"] == "--xla_dump_to=/tmp/x --xla_cpu_enable_fast_math=true"
    assert not request_xla_fast_math()
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
    assert not request_xla_fast_math()
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_enable_fast_math=false"
    monkeypatch.delenv("XLA_FLAGS")
    assert request_xla_fast_math()
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_enable_fast_math=true"
    # the learner node's environment follows the same rule, from the launcher's
    assert learner_environment("xla_float32", {"XLA_FLAGS": "--a"}) == {
        "XLA_FLAGS": "--a --xla_cpu_enable_fast_math=true",
        "TF_ENABLE_ONEDNN_OPTS": "1",
    }
    assert learner_environment("xla_float32", {}) == {
        "XLA_FLAGS": "--xla_cpu_enable_fast_math=true",
        "TF_ENABLE_ONEDNN_OPTS": "1",
    }


def test_learner_kernels_resolve_and_set_the_learner_environment():
    from bprl.launch.config import xla

    # auto follows the CPU's bfloat16 instructions for a big update; an explicit choice stays
    big, small = 2 * xla.BFLOAT16_MIN_UPDATE_FLOPS, 0.5 * xla.BFLOAT16_MIN_UPDATE_FLOPS
    assert xla.resolve_kernels("auto", big, has_bfloat16=True) == "onednn_bfloat16"
    assert xla.resolve_kernels("auto", big, has_bfloat16=False) == "xla_float32"
    assert xla.resolve_kernels("auto", small, has_bfloat16=True) == "xla_float32"
    assert xla.resolve_kernels("xla_float32", big, has_bfloat16=True) == "xla_float32"
    assert xla.resolve_kernels("onednn_bfloat16", small, has_bfloat16=False) == "onednn_bfloat16"
    with pytest.raises(ValueError, match="one of auto, xla_float32, onednn_bfloat16"):
        xla.resolve_kernels("bf16", big)
    assert xla.cpu_has_bfloat16("flags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile\n")
    assert not xla.cpu_has_bfloat16("flags\t\t: fpu avx512f avx2\n", product_speedup=9.0)
    # AVX512-BF16 without AMX: as fast as its products measure (another machine's text
    # without a measurement counts as slow)
    avx512_bf16 = "flags\t\t: fpu avx512f avx512_bf16\n"
    assert not xla.cpu_has_bfloat16(avx512_bf16)
    assert not xla.cpu_has_bfloat16(avx512_bf16, product_speedup=0.77)  # an Intel VM's
    assert xla.cpu_has_bfloat16(avx512_bf16, product_speedup=2.0)  # the AMD EPYC's
    # the bfloat16 kernels add fusible-only auto-clustering; the user's settings are kept
    env = xla.learner_environment("onednn_bfloat16", {"TF_ENABLE_ONEDNN_OPTS": "0"})
    assert env["TF_ENABLE_ONEDNN_OPTS"] == "0"
    assert "--tf_xla_ops_to_cluster=FUSIBLE" in env["TF_XLA_FLAGS"]
    mine = xla.learner_environment("onednn_bfloat16", {"TF_XLA_FLAGS": "--tf_xla_auto_jit=-1"})
    assert mine["TF_XLA_FLAGS"] == "--tf_xla_auto_jit=-1"
    assert "TF_XLA_FLAGS" not in xla.learner_environment("xla_float32", {})


def test_the_bfloat16_probe_measures_this_machine_once(tmp_path):
    """The probe runs for real in a child process and gives a positive time ratio, which is
    kept per CPU: a kept answer is used as it is (every run of a sweep picks the same)."""
    import json

    from bprl.launch.config import xla

    probe = xla.bfloat16_product_speedup.__wrapped__  # without the in-process memo
    cache = str(tmp_path / "bprl" / "probe.json")
    speedup = probe(cache)
    assert speedup > 0.0
    with open(cache) as f:
        assert json.load(f) == {xla._cpu_key(): speedup}
    with open(cache, "w") as f:
        json.dump({xla._cpu_key(): 123.0, "another cpu": 0.5}, f)
    assert probe(cache) == 123.0  # read, not measured again
    with open("/proc/cpuinfo") as f:
        flags = f.read()
    if "amx_bf16" not in flags and "avx512_bf16" in flags:  # this machine's answer follows it
        assert xla.cpu_has_bfloat16() == (
            xla.bfloat16_product_speedup() >= xla.BFLOAT16_MIN_PRODUCT_SPEEDUP
        )


def test_auto_kernels_follow_the_size_of_the_update():
    """A config's update size decides auto (on a CPU with fast bfloat16 products): the tiny
    configs' few-kFLOP updates run as one XLA program, the default sizes' (16.4 GFLOP) and
    Acme's (24.9) in bfloat16; a small update never probes the CPU."""
    from bprl.experiments.configs import walker_walk
    from bprl.launch.config import xla
    from bprl.launch.program import builders

    tiny, default = walker_walk.get_config("tiny"), walker_walk.get_config()
    acme = walker_walk.get_config()  # Acme's svg0_prior widths, batch 256, T = 10, S = 10
    acme.network.policy_hidden = acme.network.prior_hidden = (200, 100)
    acme.network.critic_hidden = (400, 300)
    spec = builders.RunBuilder(tiny).env_spec
    assert builders.RunBuilder(tiny, spec).update_flops < 1e7
    assert builders.RunBuilder(default, spec).update_flops >= xla.BFLOAT16_MIN_UPDATE_FLOPS
    assert builders.RunBuilder(acme, spec).update_flops == pytest.approx(24.9e9, rel=0.01)
    assert (
        builders.RunBuilder(tiny, spec).resolve_learner_kernels(has_bfloat16=True) == "xla_float32"
    )
    for config in (default, acme):
        assert (
            builders.RunBuilder(config, spec).resolve_learner_kernels(has_bfloat16=True)
            == "onednn_bfloat16"
        )
    assert (
        builders.RunBuilder(acme, spec).resolve_learner_kernels(has_bfloat16=False) == "xla_float32"
    )
    acme.resources.learner_kernels = "xla_float32"  # an explicit choice stays
    assert (
        builders.RunBuilder(acme, spec).resolve_learner_kernels(has_bfloat16=True) == "xla_float32"
    )
    # by size (0): small updates run several per call, big ones one; a count stays
    assert tiny.resources.learner_updates_per_call == 0  # the default: by size
    assert builders.RunBuilder(tiny, spec).updates_per_call == builders.AUTO_UPDATES_PER_CALL > 1
    assert builders.RunBuilder(default, spec).updates_per_call == 1
    default.resources.learner_updates_per_call = 3
    assert builders.RunBuilder(default, spec).updates_per_call == 3


def test_critic_on_action_samples_gives_the_same_values_in_one_pass_or_set_by_set():
    """`Critic.sampled` picks one pass or one action set at a time by size; the values are
    those of calling the critic on each set, and its gradients too."""
    from bprl.networks.critic import Critic

    rng = np.random.default_rng(0)
    critic = Critic(("a", "b"), (16, 8))
    obs = {"a": tf.constant(rng.normal(size=(7, 3)), tf.float32), "b": tf.ones([7, 2])}
    actions = tf.constant(rng.normal(size=(4, 7, 2)), tf.float32)  # [K, N, A]
    critic(obs, actions[0])
    want = tf.stack([critic(obs, actions[k]) for k in range(4)])  # [K, N]
    results = {}
    for one_pass_bytes in (0, 1 << 20):  # one set at a time; one pass (4 * 7 * 16 * 4 B)
        critic.one_pass_bytes = one_pass_bytes
        with tf.GradientTape() as tape:
            tape.watch(actions)
            q = critic.sampled(obs, actions)
            total = tf.reduce_sum(q * q)
        results[one_pass_bytes] = (q, tape.gradient(total, [actions, *critic.variables]))
        np.testing.assert_allclose(q.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
    for a, b in zip(results[0][1], results[1 << 20][1], strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6)


def test_the_learner_runs_a_small_update_on_one_thread_unless_told():
    from bprl.experiments.configs import seqnav_pointmass, walker_walk
    from bprl.launch.program import builders

    small = seqnav_pointmass.get_config("local_short")
    assert builders.RunBuilder(small).learner_threads == 1  # auto, a small update
    small.resources.learner_threads = -1
    assert builders.RunBuilder(small).learner_threads == 0  # TensorFlow's default
    small.resources.learner_threads = 3
    assert builders.RunBuilder(small).learner_threads == 3
    big = walker_walk.get_config()  # Acme's sizes: 256-unit networks, batch 256
    assert builders.RunBuilder(big).update_flops >= builders.SMALL_UPDATE_FLOPS
    assert builders.RunBuilder(big).learner_threads == 0
