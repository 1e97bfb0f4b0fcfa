"""The prior architectures: LSTM memory, the hierarchical KL bound, and where gradients go."""

import dm_env
import numpy as np
import pytest
import reverb
import tensorflow as tf
from acme import specs

from bprl.agents.actor import GaussianActor
from bprl.agents.config import LearnerHyperparams
from bprl.agents.fast_adder import FastSequenceAdder
from bprl.agents.latent_terms import flat_prior_kl_bound, hierarchical_kl_bound
from bprl.agents.learner import Learner, batch_from_replay
from bprl.agents.learning_rule import SequenceBatch, compute_losses, gaussian_log_prob
from bprl.agents.prior_kinds import make_networks
from bprl.environments import registry
from bprl.launch.program import builders
from bprl.networks.gaussian import GaussianHead
from bprl.networks.hierarchical import make_hierarchical_pair
from bprl.networks.recurrent import LSTMState, RecurrentGaussianHead

T, B = 10, 6
KINDS = ("mlp", "lstm", "hierarchical", "hierarchical_own_low", "mlp_latent_policy")
LATENT_POLICY = ("hierarchical", "hierarchical_own_low", "mlp_latent_policy")


def _networks(kind: str, spec, prior_keys, seed: int = 0):
    tf.random.set_seed(seed)
    return make_networks(
        spec,
        6,
        prior_keys,
        (32, 32),
        (32, 32),
        (32, 32),
        prior_kind=kind.replace("_own_low", ""),
        lstm_size=16,
        latent_size=3,
        low_hidden=(32,),
        share_low_level=not kind.endswith("own_low"),
    )


def _batch_and_networks(kind: str, seed: int = 0):
    env = registry.make_environment("walker_walk", 0)
    spec = env.observation_spec()
    prior_keys = registry.get_task("walker_walk").keys_for(["proprioception"])
    nets, targets = _networks(kind, spec, prior_keys), _networks(kind, spec, prior_keys, 1)
    rng = np.random.default_rng(seed)

    def normal(*shape):
        return tf.constant(rng.normal(size=shape).astype(np.float32))

    batch = SequenceBatch(
        observation={k: normal(T + 1, B, *s.shape) for k, s in spec.items()},
        action=tf.constant(rng.uniform(-1, 1, size=(T + 1, B, 6)).astype(np.float32)),
        reward=tf.constant(rng.uniform(size=(T + 1, B)).astype(np.float32)),
        discount=tf.ones((T + 1, B)),
        start_of_episode=tf.constant(rng.uniform(size=(T + 1, B)) < 0.1),
        behaviour_log_prob=normal(T + 1, B),
        prior_state=LSTMState(normal(B, 16), normal(B, 16)) if kind == "lstm" else None,
        latent=normal(T + 1, B, 3) if kind in LATENT_POLICY else None,
    )
    return nets, targets, batch


def _modules(nets, kind: str) -> dict:
    if kind == "mlp_latent_policy":
        return {
            "policy_high": nets.policy.high,
            "policy_low": nets.policy.low,
            "prior": nets.prior,
            "critic": nets.critic,
        }
    if kind.startswith("hierarchical"):
        modules = {
            "policy_high": nets.policy.high,
            "policy_low": nets.policy.low,
            "prior_high": nets.prior.high,
            "critic": nets.critic,
        }
        if kind.endswith("own_low"):
            modules["prior_low"] = nets.prior.low
        return modules
    return {"policy": nets.policy, "prior": nets.prior, "critic": nets.critic}


def _gradient_norms(kind: str, loss_name: str) -> dict[str, float]:
    nets, targets, batch = _batch_and_networks(kind)
    modules = _modules(nets, kind)
    variables = [v for m in modules.values() for v in m.trainable_variables]
    with tf.GradientTape() as tape:
        loss = getattr(
            compute_losses(nets, targets, batch, LearnerHyperparams(num_action_samples=3)),
            loss_name,
        )
    grads = dict(zip([v.ref() for v in variables], tape.gradient(loss, variables), strict=True))
    return {
        name: sum(
            0.0 if grads[v.ref()] is None else float(tf.norm(grads[v.ref()]))
            for v in module.trainable_variables
        )
        for name, module in modules.items()
    }


@pytest.mark.parametrize("kind", KINDS)
def test_prior_loss_updates_only_prior_parameters(kind):
    norms = _gradient_norms(kind, "prior")
    prior_names = {n for n in norms if n.startswith("prior")}
    assert all(norms[n] > 0.0 for n in prior_names), norms
    assert all(norms[n] == 0.0 for n in set(norms) - prior_names), norms


@pytest.mark.parametrize("kind", LATENT_POLICY)
def test_hierarchical_policy_loss_reaches_both_levels(kind):
    norms = _gradient_norms(kind, "policy")
    assert norms["policy_high"] > 0.0 and norms["policy_low"] > 0.0, norms
    assert all(norms[n] == 0.0 for n in norms if n.startswith("prior")), norms


@pytest.mark.parametrize("kind", KINDS)
def test_one_learner_update_per_architecture(kind, eager_tf):
    nets, _, batch = _batch_and_networks(kind)
    # Eager (conftest.eager_tf): tracing each kind costs CI time; the compiled update is
    # checked against a reference in tests/test_learner_reference.py.
    learner = Learner(nets, iter(()), LearnerHyperparams(num_action_samples=3), jit_compile=False)
    before = [v.numpy() for v in nets.prior.trainable_variables]
    assert learner.learn_from_batch(batch)["update_applied"]
    after = [v.numpy() for v in nets.prior.trainable_variables]
    assert any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))


@pytest.mark.parametrize("kind", KINDS)
def test_a_frozen_prior_is_never_updated(kind, eager_tf):
    """Frozen (a loaded prior, docs/transfer.md): the prior, and a hierarchical prior's
    shared low level, stay bit for bit; the rest of the policy and the critic train."""
    nets, _, batch = _batch_and_networks(kind)
    learner = Learner(
        nets,
        iter(()),
        LearnerHyperparams(num_action_samples=3, target_update_period=1),
        jit_compile=False,
        frozen_prior=True,
    )
    modules = _modules(nets, kind)
    fixed = {"prior", "prior_high", "prior_low"}
    if kind == "hierarchical":  # shares its low level with the policy
        fixed.add("policy_low")
    before = {n: [v.numpy() for v in m.trainable_variables] for n, m in modules.items()}
    for _ in range(2):
        assert learner.learn_from_batch(batch)["update_applied"]
    for name, module in modules.items():
        after = [v.numpy() for v in module.trainable_variables]
        same = [np.array_equal(a, b) for a, b in zip(before[name], after, strict=True)]
        assert all(same) if name in fixed else not any(same), name
    targets = learner.target_networks  # copied every step: the target prior is the prior
    for a, b in zip(nets.prior.variables, targets.prior.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


# --- the hierarchical KL bound -------------------------------------------------------------


def _randomise(module, rng, scale=0.6):
    for variable in module.trainable_variables:
        variable.assign(rng.normal(scale=scale, size=variable.shape).astype(np.float32))


def _log_marginal(head, obs_row, actions, rng, num_latents=4000):
    """log of the integral over z of pi^H(z|x) pi^L(a|z,x) by Monte Carlo over z (per action)."""
    z_mean, z_scale = (m.numpy()[0] for m in head.high_moments(obs_row))
    z = (z_mean + z_scale * rng.standard_normal((num_latents, z_mean.size))).astype(np.float32)
    tiled = {k: tf.repeat(v, num_latents, axis=0) for k, v in obs_row.items()}
    a_mean, a_scale = (m.numpy() for m in head.low_moments(tiled, z))
    # log pi^L(a_i | z_j) for every action i and latent j, then log-mean-exp over j.
    log_p = gaussian_log_prob(
        a_mean[None], a_scale[None], tf.constant(actions[:, None, :], tf.float32)
    ).numpy()
    peak = log_p.max(axis=1, keepdims=True)
    return peak[:, 0] + np.log(np.mean(np.exp(log_p - peak), axis=1))


@pytest.mark.parametrize("share_low", [True, False])
def test_hierarchical_kl_bound_is_never_below_the_marginal_kl(share_low):
    rng = np.random.default_rng(3)
    observation = {"x": tf.constant(rng.normal(size=(4, 5)).astype(np.float32))}
    policy, prior = make_hierarchical_pair(
        ("x",), ("x",), 2, 2, (16,), (16,), (16,), share_low, 1e-3, 0.7
    )
    policy.create_variables(observation)
    prior.create_variables(observation)
    for module in (policy, prior.high) + (() if share_low else (prior.low,)):
        _randomise(module, rng, scale=1.0)
    for low in {id(policy.low): policy.low, id(prior.low): prior.low}.values():
        # Narrow low levels: a then depends mostly on z, and the marginals are multi-modal.
        low._scale.b.assign(tf.fill(low._scale.b.shape, -3.0))
    latents = tf.constant(rng.standard_normal((2000, 4, 2)).astype(np.float32))
    z_mean, z_scale = policy.high_moments(observation)
    bound = hierarchical_kl_bound(policy, prior, observation, z_mean + z_scale * latents)
    kls = []
    for row in range(4):
        obs_row = {"x": observation["x"][row : row + 1]}
        # Actions from the policy's marginal: z ~ pi^H, a ~ pi^L(.|z).
        zm, zs = (m.numpy()[0] for m in policy.high_moments(obs_row))
        z = (zm + zs * rng.standard_normal((1500, zm.size))).astype(np.float32)
        tiled = {"x": tf.repeat(obs_row["x"], 1500, axis=0)}
        am, a_s = (m.numpy() for m in policy.low_moments(tiled, z))
        actions = am + a_s * rng.standard_normal(am.shape)
        marginal_kl = np.mean(
            _log_marginal(policy, obs_row, actions, rng)
            - _log_marginal(prior, obs_row, actions, rng)
        )
        # The bound's own Monte Carlo (2,000 latents) has a small error: allow 2% + 0.02.
        assert float(bound[row]) >= marginal_kl - 0.02 - 0.02 * abs(marginal_kl), (
            row,
            float(bound[row]),
            marginal_kl,
        )
        kls.append(marginal_kl)
    assert min(kls) > 0.05, kls  # random parameters give distributions that differ


def test_flat_prior_kl_bound_is_never_below_the_marginal_kl():
    """The MLP prior under a latent policy (`mlp_latent_policy`): E_z KL(pi^L(.|z) || pi0)
    bounds KL(pi || pi0), with pi's marginal by Monte Carlo and pi0's in closed form."""
    rng = np.random.default_rng(5)
    observation = {"x": tf.constant(rng.normal(size=(4, 5)).astype(np.float32))}
    policy, _ = make_hierarchical_pair(("x",), ("x",), 2, 2, (16,), (16,), (16,), True, 1e-3, 0.7)
    prior = GaussianHead(("x",), 2, (16,), 1e-3, 0.7, "prior")
    policy.create_variables(observation)
    prior.moments(observation)
    for module in (policy, prior):
        _randomise(module, rng, scale=1.0)
    policy.low._scale.b.assign(tf.fill(policy.low._scale.b.shape, -3.0))  # a multi-modal pi
    latents = tf.constant(rng.standard_normal((2000, 4, 2)).astype(np.float32))
    z_mean, z_scale = policy.high_moments(observation)
    bound = flat_prior_kl_bound(policy, prior, observation, z_mean + z_scale * latents)
    kls = []
    for row in range(4):
        obs_row = {"x": observation["x"][row : row + 1]}
        zm, zs = (m.numpy()[0] for m in policy.high_moments(obs_row))
        z = (zm + zs * rng.standard_normal((1500, zm.size))).astype(np.float32)
        am, a_s = (
            m.numpy() for m in policy.low_moments({"x": tf.repeat(obs_row["x"], 1500, 0)}, z)
        )
        actions = (am + a_s * rng.standard_normal(am.shape)).astype(np.float32)
        mean0, scale0 = prior.moments(obs_row)
        log_prior = gaussian_log_prob(mean0, scale0, tf.constant(actions)).numpy()
        marginal_kl = np.mean(_log_marginal(policy, obs_row, actions, rng) - log_prior)
        assert float(bound[row]) >= marginal_kl - 0.02 - 0.02 * abs(marginal_kl), (
            row,
            float(bound[row]),
            marginal_kl,
        )
        kls.append(marginal_kl)
    assert min(kls) > 0.05, kls
    # The bound is not loose by construction: a prior equal to one component's Gaussian is
    # still charged for the others, so a policy whose components differ pays more than 0.
    assert float(tf.reduce_min(bound)) > 0.05


# --- LSTM memory ---------------------------------------------------------------------------

EPISODE, SEQ = 30, 10  # the cue is shown at step 0 only; sequences are a third of that


def _cue_episodes(rng, count):
    cue = rng.choice([-0.8, 0.8], size=count).astype(np.float32)
    obs = np.zeros((EPISODE, count, 1), np.float32)
    obs[0, :, 0] = cue
    return obs, cue


def _train_memory(head, steps=250, seed=0):
    """Fits head's mean to the cue at every step, on sequences of SEQ steps that start from
    the state the head itself produced at that step (as actors store it), never from zeros."""
    rng = np.random.default_rng(seed)
    optimizer = tf.keras.optimizers.Adam(3e-3)
    batch = 32
    starts = np.zeros((SEQ, batch), bool)

    @tf.function(autograph=False)
    def update(obs, cue, state):
        with tf.GradientTape() as tape:
            if head.is_recurrent:
                mean, scale, _ = head.unroll({"cue": obs}, tf.constant(starts), state)
            else:
                mean, scale = head.moments({"cue": tf.reshape(obs, [-1, 1])})
            target = tf.reshape(tf.tile(cue[None, :, None], [SEQ, 1, 1]), [-1, 1])
            loss = -tf.reduce_mean(gaussian_log_prob(mean, scale, target))
        grads = tape.gradient(loss, head.trainable_variables)
        optimizer.apply_gradients(zip(grads, head.trainable_variables, strict=True))

    for _ in range(steps):
        obs, cue = _cue_episodes(rng, batch)
        state = head.initial_state(batch) if head.is_recurrent else None
        for begin in range(0, EPISODE, SEQ):
            piece = tf.constant(obs[begin : begin + SEQ])
            update(piece, tf.constant(cue), state)
            if head.is_recurrent:  # the stored state for the next sequence
                _, _, state = head.unroll({"cue": piece}, tf.constant(starts), state)


def _actor_means_late_in_episode(head, cue: float) -> np.ndarray:
    """Means the NumPy actor takes at steps 20-29 of an episode whose cue was `cue`."""
    actor = GaussianActor(head, stochastic=False)
    actor.reset()
    means = []
    for t in range(EPISODE):
        action = actor.select_action({"cue": np.array([cue if t == 0 else 0.0], np.float32)})
        means.append(float(action[0]))
    return np.array(means[2 * SEQ :])


@pytest.mark.slow  # a learning test (~1 min); the LSTM unroll is checked exactly below
def test_lstm_prior_remembers_its_input_across_steps_and_sequences():
    """Only memory can predict the cue 20 steps after it was shown (two sequences later):
    the LSTM head learns it, in the learner's unroll and in the actor; an MLP cannot."""
    lstm = RecurrentGaussianHead(("cue",), 1, (16,), 16, 1e-2, 0.7)
    lstm.create_variables({"cue": tf.zeros([1, 1])})
    _train_memory(lstm)
    for cue in (-0.8, 0.8):
        late = _actor_means_late_in_episode(lstm, cue)
        assert np.all(np.abs(late - cue) < 0.3), (cue, late)

    mlp = GaussianHead(("cue",), 1, (16,), 1e-2, 0.7)
    mlp.create_variables({"cue": tf.zeros([1, 1])})
    _train_memory(mlp)
    late_mlp = [_actor_means_late_in_episode(mlp, cue) for cue in (-0.8, 0.8)]
    np.testing.assert_allclose(late_mlp[0], late_mlp[1], atol=1e-6)  # cannot tell them apart


def test_numpy_step_equals_tensorflow_unroll_with_resets():
    rng = np.random.default_rng(0)
    head = RecurrentGaussianHead(("x",), 2, (8,), 8, 1e-3, 0.7)
    head.create_variables({"x": tf.zeros([1, 3])})
    _randomise(head, rng, 0.5)
    obs = rng.normal(size=(12, 1, 3)).astype(np.float32)
    starts = np.zeros((12, 1), bool)
    starts[5] = True
    state0 = LSTMState(*(rng.normal(size=(2, 1, 8)).astype(np.float32)))
    mean, scale, _ = head.unroll({"x": tf.constant(obs)}, tf.constant(starts), state0)
    params, state = head.numpy_params(), LSTMState(state0.hidden[0], state0.cell[0])
    for t in range(12):
        if starts[t, 0]:
            state = head.numpy_initial_state()
        m, s, state = head.numpy_step(params, {"x": obs[t, 0]}, state)
        np.testing.assert_allclose(m, mean.numpy()[t], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(s, scale.numpy()[t], rtol=1e-4, atol=1e-5)


def test_actor_stores_the_prior_state_the_learner_unrolls_from():
    """Through a real Reverb table: each item's first-step prior state equals the state the
    prior reaches by running over the episode so far from zeros (reset at the start)."""
    rng = np.random.default_rng(1)
    prior = RecurrentGaussianHead(("x",), 2, (8,), 8, 1e-3, 0.7)
    policy = GaussianHead(("x",), 2, (8,), 1e-3, 0.7)
    for head in (prior, policy):
        head.create_variables({"x": tf.zeros([1, 3])})
        _randomise(head, rng, 0.5)
    obs_spec = {"x": specs.Array((3,), np.float32, "x")}
    env_spec = specs.EnvironmentSpec(
        obs_spec,
        specs.BoundedArray((2,), np.float32, -1.0, 1.0),
        specs.Array((), np.float32),
        specs.BoundedArray((), np.float32, 0.0, 1.0),
    )
    extras = {
        "log_prob": specs.Array((), np.float32),
        "prior_hidden": specs.Array((8,), np.float32),
        "prior_cell": specs.Array((8,), np.float32),
    }
    table = builders.sequence_table(env_spec, extras, T, 1000, reverb.rate_limiters.MinSize(1))
    server = reverb.Server([table])
    client = reverb.Client(f"localhost:{server.port}")
    adder = FastSequenceAdder(client, sequence_length=T, table="replay")
    actor = GaussianActor(policy, stochastic=True, adder=adder, seed=0, recurrent_prior=prior)

    observations = rng.normal(size=(35, 3)).astype(np.float32)
    timestep = dm_env.restart({"x": observations[0]})
    actor.observe_first(timestep)
    for t in range(1, 35):
        action = actor.select_action(timestep.observation)
        timestep = dm_env.transition(np.float32(0.0), {"x": observations[t]}, np.float32(1.0))
        actor.observe(action, timestep)
    del actor, adder
    # Reference: the TF unroll over the whole episode from zeros.
    states = [prior.initial_state(1)]
    for t in range(35):
        _, _, state = prior.unroll(
            {"x": tf.constant(observations[t : t + 1, None])},
            tf.zeros([1, 1], tf.bool),
            states[-1],
        )
        states.append(state)
    # 64 uniform draws over the episode's 3 items (starts 0, 10, 20): all are checked but for a
    # chance of about 1e-11, and a draw of only the first (3**-64) cannot pass or fail by luck.
    items = list(
        client.sample(
            "replay", num_samples=64, emit_timesteps=False, unpack_as_table_signature=True
        )
    )
    checked = set()
    for sample in items:
        batch = batch_from_replay(
            reverb.ReplaySample(
                info=sample.info,
                data=tf.nest.map_structure(lambda x: tf.constant(x[None]), sample.data),
            )
        )
        first_obs = batch.observation["x"].numpy()[0, 0]
        step = int(np.argmin(np.abs(observations - first_obs).sum(axis=1)))
        np.testing.assert_allclose(
            batch.prior_state.hidden.numpy()[0], states[step].hidden.numpy()[0], atol=1e-5
        )
        checked.add(step)
    assert checked == {0, 10, 20}, checked  # the sequences that start mid-episode too
    server.stop()


def test_bounded_scale_transform_starts_at_init_and_stays_in_bounds():
    from bprl.networks.gaussian import ScaleTransform

    bounded = ScaleTransform(min_scale=0.1, init_scale=0.5, max_scale=0.6)
    z = np.linspace(-30.0, 30.0, 101).astype(np.float32)
    scale = bounded(tf.constant(z)).numpy()
    assert np.all((scale >= 0.1) & (scale <= 0.6)) and scale[0] < 0.11 and scale[-1] > 0.59
    np.testing.assert_allclose(bounded(tf.zeros([1])).numpy(), [0.5], rtol=1e-5)
    np.testing.assert_allclose(bounded.numpy(z), scale, rtol=1e-5)
    unbounded = ScaleTransform(min_scale=0.1, init_scale=0.5)
    np.testing.assert_allclose(unbounded(tf.zeros([1])).numpy(), [0.6], rtol=1e-5)
    assert unbounded(tf.constant([30.0])).numpy()[0] > 10.0
    with pytest.raises(ValueError, match="min_scale < init_scale < max_scale"):
        ScaleTransform(min_scale=0.1, init_scale=0.7, max_scale=0.6)


@pytest.mark.parametrize("same_weights", [True, False])
def test_burn_in_recomputes_the_state_of_running_the_prior_from_the_episode_start(same_weights):
    """Through a real Reverb table with a burn-in of N rows: the state the learner's LSTM
    kind starts each sequence from equals the state its prior reaches by running over the
    whole stream from zeros, reset at episode starts. With the actor's weights, always;
    with other (stale) weights in the actor, whenever the burn-in window saw the episode
    start, and not from the stored state alone."""
    from bprl.agents import prior_kinds

    burn_in, transitions, episode_steps, episodes = 4, 4, 15, 4
    rng = np.random.default_rng(3)
    learner_prior = RecurrentGaussianHead(("x",), 2, (8,), 8, 1e-3, 0.7)
    actor_prior = RecurrentGaussianHead(("x",), 2, (8,), 8, 1e-3, 0.7)
    policy = GaussianHead(("x",), 2, (8,), 1e-3, 0.7)
    for head in (learner_prior, actor_prior, policy):
        head.create_variables({"x": tf.zeros([1, 3])})
        _randomise(head, rng, 0.5)
    if same_weights:
        for src, dst in zip(learner_prior.variables, actor_prior.variables, strict=True):
            dst.assign(src)
    env_spec = specs.EnvironmentSpec(
        {"x": specs.Array((3,), np.float32, "x")},
        specs.BoundedArray((2,), np.float32, -1.0, 1.0),
        specs.Array((), np.float32),
        specs.BoundedArray((), np.float32, 0.0, 1.0),
    )
    extras = {"log_prob": specs.Array((), np.float32)}
    extras.update({k: specs.Array((8,), np.float32) for k in ("prior_hidden", "prior_cell")})
    table = builders.sequence_table(
        env_spec, extras, transitions, 1000, reverb.rate_limiters.MinSize(1), burn_in=burn_in
    )
    server = reverb.Server([table])
    client = reverb.Client(f"localhost:{server.port}")
    adder = FastSequenceAdder(client, transitions, "replay", burn_in=burn_in)
    actor = GaussianActor(policy, stochastic=True, adder=adder, seed=0, recurrent_prior=actor_prior)
    # The stream of replay rows: each episode's observations, its final one a row of its own.
    rows = rng.normal(size=(episodes * (episode_steps + 1), 3)).astype(np.float32)
    starts = np.arange(len(rows)) % (episode_steps + 1) == 0
    for episode in range(episodes):
        first = episode * (episode_steps + 1)
        timestep = dm_env.restart({"x": rows[first]})
        actor.observe_first(timestep)
        for t in range(1, episode_steps + 1):
            action = actor.select_action(timestep.observation)
            last = t == episode_steps
            timestep = dm_env.TimeStep(
                dm_env.StepType.LAST if last else dm_env.StepType.MID,
                np.float32(0.0),
                np.float32(0.0 if last else 1.0),
                {"x": rows[first + t]},
            )
            actor.observe(action, timestep)
    del actor, adder
    # Reference: the learner's prior over the whole stream from zeros, reset at starts.
    reference = [learner_prior.initial_state(1)]  # reference[r]: the state before row r
    for r in range(len(rows)):
        _, _, state = learner_prior.unroll(
            {"x": tf.constant(rows[r : r + 1, None])}, tf.constant([[starts[r]]]), reference[-1]
        )
        reference.append(state)
    count = client.server_info()["replay"].current_size
    samples = client.sample(
        "replay", num_samples=count, emit_timesteps=False, unpack_as_table_signature=True
    )
    seen_start, unseen_start = 0, 0
    for sample in samples:
        data = tf.nest.map_structure(lambda x: tf.constant(x[None]), sample.data)
        batch = batch_from_replay(reverb.ReplaySample(info=sample.info, data=data), burn_in)
        assert batch.observation["x"].shape[0] == transitions + 1
        assert batch.burn_in.observation["x"].shape[0] == burn_in
        row = int(np.argmin(np.abs(rows - batch.observation["x"].numpy()[0, 0]).sum(axis=1)))
        state = prior_kinds.get("lstm").sequence_state(learner_prior, batch)
        want = reference[row].hidden.numpy()[0]
        window_saw_start = bool(starts[row - burn_in : row].any())  # the burn-in rows
        if same_weights or window_saw_start:
            np.testing.assert_allclose(state.hidden.numpy()[0], want, atol=1e-5)
        if not same_weights:
            seen_start += window_saw_start
            if not window_saw_start:
                unseen_start += 1
                assert np.abs(state.hidden.numpy()[0] - want).max() > 1e-3  # stale stored
    if not same_weights:
        assert seen_start > 0 and unseen_start > 0, (seen_start, unseen_start)
    server.stop()


# --- experiments/lstm_state_staleness.py: the pieces, against TF's own unroll ----------------


def test_the_staleness_script_burns_in_with_the_new_weights_and_resets_at_the_start():
    """Burn-in N from the stored (old-weight) state at t0 - N equals TF's unroll of the new
    prior over those N steps; a burn-in that reaches the episode's start equals the fresh
    state; with equal weights every start but zeros is the fresh one; the KL formula equals
    TensorFlow Probability's."""
    import tensorflow_probability as tfp

    from bprl.experiments import lstm_state_staleness as staleness

    rng = np.random.default_rng(5)
    old = RecurrentGaussianHead(("x",), 2, (8,), 8, 1e-3, 0.7)
    new = RecurrentGaussianHead(("x",), 2, (8,), 8, 1e-3, 0.7)
    for head in (old, new):
        head.create_variables({"x": tf.zeros([1, 3])})
        _randomise(head, rng, 0.5)
    observations = [{"x": rng.normal(size=3).astype(np.float32)} for _ in range(30)]
    p_old, p_new = old.numpy_params(), new.numpy_params()
    stored = staleness.episode_states(old, p_old, observations, old.numpy_initial_state())
    fresh = staleness.episode_states(new, p_new, observations, new.numpy_initial_state())
    starts = staleness.item_starts(new, p_new, observations, 20, stored, fresh, [5, 20, 25])
    # burn-in 5: TF unroll of the new prior over steps 15-19 from the stored state at 15.
    x = tf.constant(np.stack([o["x"] for o in observations[15:20]])[:, None])
    state = LSTMState(*(tf.constant(s[None]) for s in stored[15]))
    _, _, expected = new.unroll({"x": x}, tf.zeros([5, 1], tf.bool), state)
    np.testing.assert_allclose(starts["burn-in 5"].hidden, expected.hidden.numpy()[0], atol=1e-5)
    assert np.abs(starts["burn-in 5"].hidden - stored[20].hidden).max() > 1e-3  # it moved
    for n in (20, 25):  # reaches the start: zeros there, then the new weights = fresh
        np.testing.assert_array_equal(starts[f"burn-in {n}"].hidden, fresh[20].hidden)
    same = staleness.item_starts(old, p_old, observations, 20, stored, stored, [5])
    np.testing.assert_allclose(same["burn-in 5"].hidden, same["fresh"].hidden, atol=1e-6)
    np.testing.assert_array_equal(same["zeros"].hidden, np.zeros(8, np.float32))
    m1, s1, m2, s2 = (rng.uniform(0.2, 1.5, size=2) for _ in range(4))
    reference = tfp.distributions.kl_divergence(
        tfp.distributions.MultivariateNormalDiag(m1, s1),
        tfp.distributions.MultivariateNormalDiag(m2, s2),
    )
    assert staleness.gaussian_kl(m1, s1, m2, s2) == pytest.approx(float(reference), rel=1e-6)
