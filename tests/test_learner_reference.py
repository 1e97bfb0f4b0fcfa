"""The fast learner's losses and gradients equal a straightforward reference's.

The learner runs its networks once on the flattened [(T+1) * B] rows, calls the critics on
tiled observations and is compiled with XLA. The reference below follows DESIGN.md
literally: a Python loop over time steps, TF-Probability distributions for the policy and
prior (`tfd.kl_divergence`, `log_prob`), and Retrace in its sum form. Both see the same batch
(real walker-walk data from a real Reverb table, with episode starts inside sequences) and
the same fixed standard-normal noise.
"""

from __future__ import annotations

import dataclasses

import acme
import numpy as np
import pytest
import reverb
import tensorflow as tf
import tensorflow_probability as tfp
from acme import datasets
from acme.utils import loggers

from bprl.agents.actor import GaussianActor
from bprl.agents.config import LearnerHyperparams
from bprl.agents.learner import Learner, batch_from_replay
from bprl.agents.learning_rule import compute_losses
from bprl.agents.prior_kinds import make_networks
from bprl.environments import registry
from bprl.launch.program import builders

# pytest-xdist (the default run): these tests stay on one worker, for
# its module fixtures (one compiled learner, one batch).
pytestmark = pytest.mark.xdist_group("test_learner_reference")

tfd = tfp.distributions
T, B, S = 5, 6, 3  # transitions per sequence, batch, action samples
HIDDEN = (32, 24)
HYPER = LearnerHyperparams(alpha=0.3, discount=0.95, retrace_lambda=0.9, num_action_samples=S)


def _networks(env, seed: int):
    tf.random.set_seed(seed)
    spec = acme.make_environment_spec(env)
    return make_networks(
        spec.observations,
        spec.actions.shape[0],
        ("orientations", "height"),
        policy_hidden=HIDDEN,
        prior_hidden=HIDDEN,
        critic_hidden=HIDDEN,
    )


@pytest.fixture(scope="module")
def batch():
    return make_batch()


@pytest.fixture(scope="module")
def learner():
    return make_learner()


def make_batch():
    """A real replay batch: walker-walk episodes of 12 steps, sampled from Reverb."""
    batch = batch_from_replay(make_sample(B))
    start = batch.start_of_episode.numpy()
    assert start[1:].any(), "the batch should hold episode starts inside sequences"
    # Make some final observations true terminations (discount 0 on the step into them).
    discount = batch.discount.numpy().copy()
    final = np.zeros_like(start)
    final[:-1] = start[1:]
    into_final = np.zeros_like(start)
    into_final[:-1] = final[1:]
    discount[into_final & (np.arange(B)[None, :] % 2 == 0)] = 0.0
    return batch._replace(discount=tf.constant(discount))


def make_sample(batch_size: int) -> reverb.ReplaySample:
    """`batch_size` real replay sequences ([batch, T+1, ...]) of walker-walk episodes of 12
    steps, sampled from Reverb."""
    from bprl.experiments.configs.base import base_config

    config = base_config()
    config.replay.sequence_length = T
    env = registry.make_environment("walker_walk", 0, time_limit=0.3)
    env_spec = acme.make_environment_spec(env)
    table = builders.RunBuilder(config, env_spec).make_unlimited_table(max_size=1000, in_order=True)
    server = reverb.Server([table])
    address = f"localhost:{server.port}"
    client = reverb.Client(address)
    actor = GaussianActor(
        _networks(env, 7).policy, True, builders.RunBuilder(config).make_adder(client), seed=3
    )
    episodes = 3 * -(-batch_size // B)  # enough sequences for the batch (3 per B)
    acme.EnvironmentLoop(env, actor, logger=loggers.NoOpLogger()).run(num_episodes=episodes)
    actor._adder.flush()
    # One sampler stream: items are sampled once each (in_order), and parallel streams can
    # hold the last ones in flight while the batch waits for them (seen hanging).
    dataset = datasets.make_reverb_dataset(
        server_address=address,
        batch_size=batch_size,
        table=builders.REPLAY_TABLE,
        num_parallel_calls=1,
    )
    sample = next(iter(dataset))
    server.stop()
    return sample


def make_learner(updates_per_call: int = 1, jit_compile: bool = True):
    env = registry.make_environment("walker_walk", 0)
    learner = Learner(
        _networks(env, 11),
        iter(()),
        HYPER,
        updates_per_call=updates_per_call,
        jit_compile=jit_compile,
    )
    # Targets differ from the online networks, as they do between target updates.
    rng = np.random.default_rng(5)
    for target in (learner.target_networks.policy, learner.target_networks.prior):
        for v in target.variables:
            v.assign(v + 0.1 * rng.standard_normal(v.shape).astype(np.float32))
    for v in learner.target_networks.critic.variables:
        v.assign(v + 0.05 * rng.standard_normal(v.shape).astype(np.float32))
    return learner


def _noise(batch):
    rows = batch.reward.shape[0] * batch.reward.shape[1]
    action_size = batch.action.shape[-1]
    rng = np.random.default_rng(9)
    return tuple(
        tf.constant(rng.standard_normal((S, rows, action_size)).astype(np.float32))
        for _ in range(2)
    )


def reference_losses(nets, targets, batch, noise, hyper):
    """DESIGN.md's learning rule, one time step at a time.

    The critics see actions as the environment executes them: clipped to the unit box, or
    squashed by tanh (`hyper.action_squash`).
    """

    def clip(a):
        if hyper.action_squash == "tanh":
            return tf.tanh(a)
        return tf.clip_by_value(a, -1.0, 1.0)

    time_steps, batch_size = batch.reward.shape
    eps_target, eps_policy = (tf.reshape(e, [S, time_steps, batch_size, -1]) for e in noise)
    gamma = hyper.discount
    start = batch.start_of_episode
    q_target_taken, values, traces, kls, prior_kls, q_policy = [], [], [], [], [], []
    q_online_taken = []
    for t in range(time_steps):
        obs = {k: v[t] for k, v in batch.observation.items()}
        action = batch.action[t]
        pi, pi0 = nets.policy(obs), nets.prior(obs)
        target_pi, target_pi0 = targets.policy(obs), targets.prior(obs)
        kl_to_target_prior = tfd.kl_divergence(pi, target_pi0)
        # Soft value with S samples of the target policy (reparameterised with fixed noise).
        samples = [target_pi.mean() + target_pi.stddev() * eps_target[s, t] for s in range(S)]
        sampled_q = tf.add_n([targets.critic(obs, clip(a)) for a in samples]) / S
        values.append(tf.stop_gradient(sampled_q - hyper.alpha * kl_to_target_prior))
        q_target_taken.append(targets.critic(obs, clip(action)))
        ratio = tf.exp(target_pi.log_prob(action) - batch.behaviour_log_prob[t])
        traces.append(hyper.retrace_lambda * tf.minimum(1.0, ratio))
        q_online_taken.append(nets.critic(obs, clip(action)))
        policy_samples = [pi.mean() + pi.stddev() * eps_policy[s, t] for s in range(S)]
        q_policy.append(tf.add_n([nets.critic(obs, clip(a)) for a in policy_samples]) / S)
        kls.append(kl_to_target_prior)
        frozen_pi = tfd.MultivariateNormalDiag(
            tf.stop_gradient(pi.mean()), tf.stop_gradient(pi.stddev())
        )
        prior_kls.append(tfd.kl_divergence(frozen_pi, pi0))

    # Retrace, sum form: Q_ret_t = Q'_t + sum_{s>=t} (prod_{i=t+1..s} gamma d_{i-1} c_i) delta_s,
    # where c_i = 0 when row i is an episode's final observation (row i+1 starts one).
    def transition(t):
        return 1.0 - tf.cast(start[t + 1], tf.float32)

    deltas = [
        batch.reward[s] + gamma * batch.discount[s] * values[s + 1] - q_target_taken[s]
        for s in range(time_steps - 1)
    ]
    critic_terms, masks, retrace = [], [], []
    for t in range(time_steps - 1):
        total, product = q_target_taken[t], tf.ones([batch_size])
        for s in range(t, time_steps - 1):
            if s > t:
                product = product * gamma * batch.discount[s - 1] * traces[s] * transition(s)
            total = total + product * deltas[s]
        target = tf.stop_gradient(total)
        retrace.append(target)
        masks.append(transition(t))
        critic_terms.append(transition(t) * 0.5 * tf.square(target - q_online_taken[t]))
    critic = tf.reduce_sum(tf.add_n(critic_terms)) / tf.maximum(tf.reduce_sum(tf.add_n(masks)), 1.0)
    # The policy and prior learn on every row but an episode's final observation (a row
    # whose next row starts an episode); the last row counts.
    learns = [transition(t) for t in range(time_steps - 1)] + [tf.ones([batch_size])]
    rows = tf.reduce_sum(tf.add_n(learns))
    policy = (
        tf.add_n(
            [
                tf.reduce_sum(w * (-q + hyper.alpha * k))
                for w, q, k in zip(learns, q_policy, kls, strict=True)
            ]
        )
        / rows
    )
    prior = tf.add_n([tf.reduce_sum(w * k) for w, k in zip(learns, prior_kls, strict=True)]) / rows
    return {
        "critic": critic,
        "policy": policy,
        "prior": prior,
        "retrace_target": tf.reduce_mean(tf.stack(retrace)),
        # The targets' size: their mean can be near zero (targets of both signs cancel),
        # so a tolerance on it is stated at this scale.
        "retrace_scale": tf.reduce_mean(tf.abs(tf.stack(retrace))),
    }


def _reference_gradients(learner, batch, noise):
    nets = learner.networks
    with tf.GradientTape(persistent=True) as tape:
        ref = reference_losses(nets, learner.target_networks, batch, noise, HYPER)
    grads = (
        tape.gradient(ref["policy"], nets.policy.trainable_variables),
        tape.gradient(ref["critic"], nets.critic.trainable_variables),
        tape.gradient(ref["prior"], nets.prior.trainable_variables),
    )
    return ref, grads


@pytest.mark.parametrize("jit_compile", [False, True])
def test_losses_and_gradients_equal_reference(learner, batch, jit_compile):
    noise = _noise(batch)
    ref, ref_grads = _reference_gradients(learner, batch, noise)
    fast = tf.function(learner._gradients, autograph=False, jit_compile=jit_compile)
    loss, grads = fast(batch, noise)
    for name in ("critic", "policy", "prior", "retrace_target"):
        np.testing.assert_allclose(
            getattr(loss, name).numpy(), ref[name].numpy(), rtol=2e-5, atol=1e-6, err_msg=name
        )
    for group, want_list, have_list in zip(
        ("policy", "critic", "prior"), ref_grads, grads, strict=True
    ):
        assert len(want_list) == len(have_list)
        for want, have in zip(want_list, have_list, strict=True):
            assert want is not None and have is not None, group
            scale = float(np.max(np.abs(want.numpy()))) + 1e-8
            np.testing.assert_allclose(
                have.numpy(), want.numpy(), rtol=1e-3, atol=1e-4 * scale, err_msg=group
            )
    # The batch exercises what the rule special-cases.
    assert 0.0 < loss.importance_weight.numpy() < 1.0
    assert float(tf.reduce_max(tf.abs(grads[1][0]))) > 0.0


def test_tanh_squash_equals_reference(learner, batch):
    """With tanh-squashed actions the losses and policy gradients still match the reference."""
    hyper = dataclasses.replace(HYPER, action_squash="tanh")
    noise = _noise(batch)
    nets, targets = learner.networks, learner.target_networks
    with tf.GradientTape(persistent=True) as tape:
        ref = reference_losses(nets, targets, batch, noise, hyper)
        fast = compute_losses(nets, targets, batch, hyper, noise)
        clipped = compute_losses(nets, targets, batch, HYPER, noise)
    for name in ("critic", "policy", "prior", "retrace_target"):
        np.testing.assert_allclose(
            getattr(fast, name).numpy(), ref[name].numpy(), rtol=2e-5, atol=1e-6, err_msg=name
        )
    # Not vacuous: the squash changes the losses, and the policy gradients still match.
    assert abs(float(fast.policy) - float(clipped.policy)) > 1e-4
    variables = nets.policy.trainable_variables
    for want, have in zip(
        tape.gradient(ref["policy"], variables), tape.gradient(fast.policy, variables), strict=True
    ):
        scale = float(np.max(np.abs(want.numpy()))) + 1e-8
        np.testing.assert_allclose(have.numpy(), want.numpy(), rtol=1e-3, atol=1e-4 * scale)


def test_final_observation_rows_teach_the_policy_and_prior_nothing(learner, batch):
    """An episode's final observation (a row followed by a start) has a placeholder action
    and no critic is trained on it: moving its observation changes neither the policy's nor
    the prior's loss, where moving a transition row's observation changes both."""
    nets, targets = learner.networks, learner.target_networks
    start = batch.start_of_episode.numpy()
    final = np.zeros_like(start)
    final[:-1] = start[1:]
    assert final.any() and not final[-1].any()
    rng = np.random.default_rng(3)

    def moved(rows: np.ndarray):
        observation = {}
        for key, value in batch.observation.items():
            value = value.numpy().copy()
            value[rows] += 3.0 * rng.standard_normal(value[rows].shape).astype(np.float32)
            observation[key] = tf.constant(value)
        return batch._replace(observation=observation)

    noise = _noise(batch)
    base = compute_losses(nets, targets, batch, HYPER, noise)
    finals = compute_losses(nets, targets, moved(final), HYPER, noise)
    others = compute_losses(nets, targets, moved(~final), HYPER, noise)  # every other row
    for name in ("policy", "prior", "kl"):
        np.testing.assert_allclose(
            getattr(finals, name).numpy(), getattr(base, name).numpy(), rtol=1e-6, err_msg=name
        )
        moved_value, base_value = float(getattr(others, name)), float(getattr(base, name))
        assert abs(moved_value - base_value) > 1e-2 * abs(base_value), name


def test_learner_update_uses_the_same_losses(learner, batch):
    """One compiled update reports the losses the reference gives for its parameters."""
    noise = _noise(batch)
    ref, _ = _reference_gradients(learner, batch, noise)
    loss, _ = tf.function(learner._gradients, jit_compile=True)(batch, noise)
    np.testing.assert_allclose(loss.critic.numpy(), ref["critic"].numpy(), rtol=2e-5)
    metrics = learner.learn_from_batch(batch)  # random noise: only finite and applied
    assert metrics["update_applied"] and np.isfinite(metrics["critic_loss"])


def test_bfloat16_products_stay_close_to_float32(batch):
    """The onednn_bfloat16 learner kernels (launch/config/xla.py) keep the rule: only the MLPs'
    matrix products are rounded to bfloat16 (8-bit mantissa; float32 accumulation, weights
    and everything else). Stated tolerance against the float32 reference: each loss within
    2% + 1% of its value; the mean Retrace target within 2% of its value + 2% of the
    targets' mean magnitude (the batch is sampled, and in some batches targets of both
    signs nearly cancel: 0.061 against 0.057 was seen); each gradient within
    5% of its largest entry and pointing the float32 one's way (cosine > 0.99). Measured
    here: losses and targets within 1.6%, gradients within 0.7%, cosines >= 0.9993."""
    learner = make_learner()
    noise = _noise(batch)
    ref, ref_grads = _reference_gradients(learner, batch, noise)
    for nets in (learner.networks, learner.target_networks):
        nets.set_product_dtype(tf.bfloat16)
    loss, grads = tf.function(learner._gradients, autograph=False)(batch, noise)
    differs = False
    for name in ("critic", "policy", "prior", "retrace_target"):
        have, want = getattr(loss, name).numpy(), ref[name].numpy()
        # 2% of the value, plus 1% of it (a loss) or 2% of the targets' mean magnitude
        atol = 2e-2 * float(ref["retrace_scale"]) if name == "retrace_target" else 1e-2 * abs(want)
        np.testing.assert_allclose(have, want, rtol=2e-2, atol=atol, err_msg=name)
        differs |= bool(np.any(have != want))
    assert differs, "the products did not run in bfloat16"
    for group, want_list, have_list in zip(
        ("policy", "critic", "prior"), ref_grads, grads, strict=True
    ):
        for want, have in zip(want_list, have_list, strict=True):
            want, have = want.numpy().ravel(), have.numpy().ravel()
            scale = float(np.max(np.abs(want))) + 1e-8
            np.testing.assert_allclose(have, want, rtol=0, atol=5e-2 * scale, err_msg=group)
            cosine = np.dot(have, want) / (np.linalg.norm(have) * np.linalg.norm(want) + 1e-12)
            assert cosine > 0.99, (group, cosine)


def test_split_updates_gives_each_update_its_own_sequences():
    """K * B sequences -> [K, ...]: update k gets the k-th B of them, in every field (the
    LSTM state's batch axis is its first, every other field's its second)."""
    from bprl.agents.learner import split_updates
    from bprl.agents.learning_rule import SequenceBatch
    from bprl.networks.recurrent import LSTMState

    k, b, steps = 3, 4, T + 1
    column = np.arange(k * b, dtype=np.float32)  # sequence i holds the value i

    def time_major(*tail):
        return tf.constant(
            np.broadcast_to(column.reshape(1, k * b, *[1] * len(tail)), (steps, k * b, *tail))
        )

    batch = SequenceBatch(
        observation={"a": time_major(5), "b": time_major(2, 3)},
        action=time_major(6),
        reward=time_major(),
        discount=time_major(),
        start_of_episode=time_major(),
        behaviour_log_prob=time_major(),
        prior_state=LSTMState(
            tf.constant(np.broadcast_to(column[:, None], (k * b, 7))),
            tf.constant(np.broadcast_to(column[:, None], (k * b, 7))),
        ),
        latent=time_major(2),
    )
    stacked = split_updates(batch, k)
    for i in range(k):
        mine = column[i * b : (i + 1) * b]
        for path, x in zip(
            ["obs a", "obs b", "action", "reward", "discount", "start", "log prob", "latent"],
            [
                stacked.observation["a"],
                stacked.observation["b"],
                stacked.action,
                stacked.reward,
                stacked.discount,
                stacked.start_of_episode,
                stacked.behaviour_log_prob,
                stacked.latent,
            ],
            strict=True,
        ):
            one = x[i].numpy()
            assert one.shape[:2] == (steps, b), path
            np.testing.assert_array_equal(one.reshape(steps, b, -1)[0, :, 0], mine, err_msg=path)
            assert (one == one[:1]).all(), path  # every time step of a sequence is its own
        for state in stacked.prior_state:
            assert state[i].shape == (b, 7)
            np.testing.assert_array_equal(state[i].numpy()[:, 0], mine)


def test_several_updates_per_call_equal_the_same_updates_one_by_one():
    """`updates_per_call` = 3 on one sample of 3 * B sequences: the same parameters, target
    networks, optimiser moments and step count as 3 single updates on its 3 batches in
    order (the same fixed noise for every update). In TensorFlow's graph without XLA: the
    loop and its bookkeeping are what is compared (compiling both programs with XLA took
    ~100 s of the default test run; the XLA update is compared with the reference above)."""
    k = 3
    sample = make_sample(k * B)
    looped = make_learner(updates_per_call=k, jit_compile=False)
    single = make_learner(jit_compile=False)
    for a, b in zip(_all_variables(looped), _all_variables(single), strict=True):
        b.assign(a)  # identical starts, targets included
    rows = (T + 1) * B
    rng = np.random.default_rng(4)
    noise = tuple(
        tf.constant(rng.standard_normal((S, rows, 6)).astype(np.float32)) for _ in range(2)
    )
    looped.fixed_noise = single.fixed_noise = noise
    start = [v.numpy() for v in looped.networks.critic.variables]
    metrics = looped.learn_from_sample(sample)
    batch = batch_from_replay(sample)  # [T+1, 3B, ...]
    losses = []
    for i in range(k):
        part = tf.nest.map_structure(
            lambda x, i=i: None if x is None else x[:, i * B : (i + 1) * B], batch
        )
        losses.append(single.learn_from_batch(part)["critic_loss"])
    assert looped.num_steps == single.num_steps == k
    assert metrics["critic_loss"] == pytest.approx(np.mean(losses), rel=1e-4)
    moved = 0
    for a, b in zip(_all_variables(looped), _all_variables(single), strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6)
    for a, before in zip(looped.networks.critic.variables, start, strict=True):
        moved += int(not np.allclose(a.numpy(), before))
    assert moved > 0, "the updates should have changed the critic"


def _all_variables(learner) -> list:
    state = learner.checkpoint_state()
    out = []
    for name in ("policy", "prior", "critic", "target_policy", "target_prior", "target_critic"):
        out += list(state[name].variables)
    for name in ("policy_optimizer", "critic_optimizer", "prior_optimizer"):
        out += list(state[name].variables)  # moments and step, once created
    return out


def test_updates_since_the_last_periodic_write_reach_tensorboard_when_flushed(tmp_path, eager_tf):
    """A run that stops between two periodic writes (a short run: before the first) still
    leaves its latest updates' figures in a real event file."""
    from bprl.launch.program.tensorboard import TensorBoardLogger
    from bprl.launch.rundir import events

    sample = make_sample(B)
    logdir = str(tmp_path / "learner")
    env = registry.make_environment("walker_walk", 0)
    learner = Learner(
        _networks(env, 11),
        iter([sample] * 3),
        HYPER,
        logger=TensorBoardLogger(logdir, "learner", flush_secs=3600.0),
        log_every_steps=100,
        jit_compile=False,
    )
    for _ in range(3):
        learner.step()
    assert "critic_loss" not in events.read_scalars(logdir)  # not due, and not flushed
    learner.flush_logs()
    scalars = events.read_scalars(logdir)
    assert [value for _, value in scalars["learner_steps"]] == [3.0]
    assert np.isfinite(scalars["critic_loss"][0][1])
    learner.flush_logs()  # nothing new since: no second record
    assert len(events.read_scalars(logdir)["learner_steps"]) == 1
