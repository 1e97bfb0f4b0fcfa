"""Packed actors (issue 18): N streams in one process write what N separate actors write;
real Reverb, real MuJoCo, real Launchpad programs."""

from __future__ import annotations

import os

import acme
import numpy as np
import pytest
import reverb
from acme.utils import counting, loggers
from tests_support import REPO

from agents.actor import GaussianActor
from agents.fast_adder import FastSequenceAdder
from agents.packed_actor import PackedActor, PackedLoop
from launch import builders, validate
from launch.validate import load_config

POINT_MASS = os.path.join(REPO, "experiments", "configs", "point_mass_right.py")
SEEDS = (0, 1, 2)  # stream ids 0..2 of seed 0: actor seeds 0, 1, 2
EPISODES = 2


class _Recorder(loggers.Logger):
    def __init__(self):
        self.rows = []

    def write(self, data) -> None:
        self.rows.append(dict(data))

    def close(self) -> None:
        pass


def _config(kind: str):
    config = load_config(f"{POINT_MASS}:tiny")
    config.prior.kind = kind
    config.prior.lstm_size = 8
    config.task_kwargs.time_limit = 3.0  # 30-step episodes (0.1 s per action)
    config.replay.sequence_length = 4
    return config


def _table(config, env_spec, name: str) -> reverb.Table:
    return builders.sequence_table(
        env_spec,
        builders.extras_spec(config),
        config.replay.sequence_length,
        max_size=10_000,
        rate_limiter=reverb.rate_limiters.MinSize(1),
        sampler=reverb.selectors.Fifo(),
        max_times_sampled=1,  # each sample takes the oldest item out: insertion order
        name=name,
    )


def _items(client: reverb.Client, table: str) -> list[tuple[float, list[np.ndarray]]]:
    """(priority, columns) of every item of `table`, in insertion order (empties it)."""
    size = client.server_info()[table].current_size
    samples = client.sample(table, num_samples=size)
    items = []
    for sample in samples:
        # one ReplaySample per stored step: stack each column over the item's steps
        columns = [np.stack([step.data[k] for step in sample]) for k in range(len(sample[0].data))]
        items.append((float(sample[0].info.priority), columns))
    return items


@pytest.mark.parametrize("kind", ["mlp", "lstm", "hierarchical"])
def test_packed_streams_write_what_separate_actors_write(kind):
    config = _config(kind)
    envs = [builders.make_environment(config, seed) for seed in SEEDS]
    env_spec = acme.make_environment_spec(envs[0])
    networks = builders.build_networks(config, env_spec)
    prior = networks.kind.actor_prior(networks)
    assert (prior is not None) == (kind == "lstm")
    names = [f"{mode}_{i}" for mode in ("single", "packed") for i in range(len(SEEDS))]
    server = reverb.Server([_table(config, env_spec, name) for name in names])
    client = reverb.Client(f"localhost:{server.port}")
    T = config.replay.sequence_length

    # N separate actors, as today's worker runs each: GaussianActor in Acme's loop.
    single_logs = []
    single_counter = counting.Counter()
    for i, (seed, env) in enumerate(zip(SEEDS, envs, strict=True)):
        adder = FastSequenceAdder(client, T, table=f"single_{i}")
        actor = GaussianActor(
            networks.policy, stochastic=True, adder=adder, seed=seed, recurrent_prior=prior
        )
        log = _Recorder()
        acme.EnvironmentLoop(env, actor, counter=single_counter, logger=log).run(
            num_episodes=EPISODES
        )
        adder.close()
        single_logs.append(log.rows)

    # The same streams packed into one actor: fresh environments with the same seeds.
    envs = [builders.make_environment(config, seed) for seed in SEEDS]
    adders = [FastSequenceAdder(client, T, table=f"packed_{i}") for i in range(len(SEEDS))]
    packed = PackedActor(networks.policy, adders, SEEDS, recurrent_prior=prior)
    logs = [_Recorder() for _ in SEEDS]
    packed_counter = counting.Counter()
    episode_steps = single_logs[0][0]["episode_length"]
    loop = PackedLoop(envs, packed, packed_counter, logs, stream_ids=SEEDS)
    loop.run(num_steps=EPISODES * episode_steps)
    for adder in adders:
        adder.close()

    assert packed_counter.get_counts() == single_counter.get_counts()
    written = {name: _items(client, name) for name in names}
    # The streams differ from each other (own seeds): the equality below is per stream.
    assert not np.allclose(written["packed_0"][0][1][0], written["packed_1"][0][1][0])
    for i in range(len(SEEDS)):
        single, ours = written[f"single_{i}"], written[f"packed_{i}"]
        # Two 30-step episodes with T = 4: 62 rows -> 15 items.
        assert len(single) == len(ours) == (EPISODES * (episode_steps + 1) - 1) // T
        for (p_single, a), (p_ours, b) in zip(single, ours, strict=True):
            assert p_single == p_ours == 1.0
            assert len(a) == len(b)
            for x, y in zip(a, b, strict=True):
                assert x.dtype == y.dtype and x.shape == y.shape
                if x.dtype == bool:
                    np.testing.assert_array_equal(x, y)  # start_of_episode
                else:
                    # Not bit for bit: BLAS sums a batched [3, D] @ [D, H] product in
                    # another order than a [D] @ [D, H] one (~1e-7 relative in float32);
                    # observations and rewards inherit it through the environment.
                    np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)
        assert [r["episode_length"] for r in logs[i].rows] == [
            r["episode_length"] for r in single_logs[i]
        ]
        np.testing.assert_allclose(
            [r["episode_return"] for r in logs[i].rows],
            [r["episode_return"] for r in single_logs[i]],
            rtol=1e-4,
        )
    server.stop()


def test_envs_per_process_validated_and_auto_packing():
    config = _config("mlp")
    config.actors.envs_per_process = -1
    with pytest.raises(validate.ConfigError, match="actors.envs_per_process must be >= 0"):
        validate.validate_config(config)
