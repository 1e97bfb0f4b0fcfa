"""Learning: the evaluation return rises on a small MuJoCo task within a CI-sized budget.

Task `point_mass_right` with 5 physics steps (0.1 s) per action: 8 s episodes of 80
steps, reward in [0, 1] per step for being far right, so at most 80 per episode. Single
process, real Reverb server, Acme-compatible sequences; 4,000 actor steps and one learner
update per step once replay holds 100 items (about 3,000 updates), for each of 3 seeds
(about 5 minutes on 2 cores). The untrained policy's deterministic return is about 56;
pushing right to the wall earns about 75. Seen in
development: with 5,000 steps, seeds 0-6 rose +6, +19, +19, +19, +19, +18, +19; with
these 4,000 steps, seeds 0-2 rose +12, +19, +12.
The test asks for a mean rise, over the 3 seeds, of at least 8 (10% of the maximum, 40%
of the way to the wall) in the deterministic policy's mean return over 5 fixed episodes.

(With one physics step per action, 400-step episodes, the same budget is too short: the
effect of one action on the return is tiny next to the critic's error, and single seeds
drifted down as often as up.)
"""

from learning_harness import train

from experiments.configs.base import base_config

MARGIN = 8.0
SEEDS = (0, 1, 2)
ENV_STEPS = 4000


def _config():
    config = base_config()
    config.task = "point_mass_right"
    config.task_kwargs.n_sub_steps = 5
    config.prior_info = ("position",)
    config.network.policy_hidden = (64, 64)
    config.network.prior_hidden = (64, 64)
    config.network.critic_hidden = (64, 64)
    config.network.min_scale = 0.1
    config.replay.batch_size = 64
    config.replay.min_size = 100
    config.agent.num_action_samples = 4
    config.agent.policy_learning_rate = 3e-4
    config.agent.critic_learning_rate = 1e-3
    config.agent.prior_learning_rate = 3e-4
    config.agent.target_update_period = 100
    return config


def test_evaluation_return_rises_on_a_small_task():
    """Mean over 3 seeds: a single short run sometimes stalls (seen once in 7: +6)."""
    rises = []
    for seed in SEEDS:
        config = _config()
        config.seed = seed
        before, after, learner = train(
            config, env_steps=ENV_STEPS, updates_per_step=1.0, eval_episodes=5
        )
        assert learner.num_steps > 0.7 * ENV_STEPS  # the learner really trained (~3,000)
        print(f"seed {seed}: return {before:.1f} -> {after:.1f}")
        rises.append(after - before)
    assert sum(rises) / len(rises) >= MARGIN, f"rises per seed: {rises}"
