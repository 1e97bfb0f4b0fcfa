"""Learning: the evaluation return rises on a small MuJoCo task within a CI-sized budget.

Task `point_mass_right` (8 s episodes, reward in [0, 1] per step for being far right, at
most 400 per episode). Single process, real Reverb server, Acme-compatible sequences;
3,000 actor steps and one learner update per step (about two minutes on 2 cores).
Measured once in development (same sizes, Acme's adder): 265 -> 324. The test asks for a
rise of at least 20 (5% of the maximum) in the deterministic policy's mean return over
3 fixed episodes.
"""

from learning_harness import train

from experiments.configs.base import base_config

MARGIN = 20.0


def _config():
    config = base_config()
    config.task = "point_mass_right"
    config.prior_info = ("position",)
    config.network.policy_hidden = (64, 64)
    config.network.prior_hidden = (64, 64)
    config.network.critic_hidden = (64, 64)
    config.network.min_scale = 0.1
    config.replay.batch_size = 64
    config.replay.min_size = 100
    config.agent.num_action_samples = 4
    config.agent.policy_learning_rate = 1e-3
    config.agent.critic_learning_rate = 1e-3
    config.agent.prior_learning_rate = 3e-4
    config.agent.target_update_period = 50
    return config


def test_evaluation_return_rises_on_a_small_task():
    before, after, learner = train(_config(), env_steps=3000, updates_per_step=1.0, eval_episodes=3)
    assert learner.num_steps > 2000  # the learner really trained
    assert after >= before + MARGIN, f"return {before:.1f} -> {after:.1f}"
