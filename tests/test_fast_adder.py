"""The fast sequence adder writes exactly the items of Acme's SequenceAdder (CONTINUE).

Both adders see the same episode stream from a real environment and write into two tables
of one real Reverb server (FIFO sampling, so items come back in insertion order); every
item must match field by field, bit for bit.
"""

from __future__ import annotations

import acme
import numpy as np
import pytest
import reverb
import tree
from acme import wrappers
from acme.adders import reverb as reverb_adders

from bprl.agents.fast_adder import FastSequenceAdder
from bprl.environments import registry
from bprl.launch.program import builders


def _table(name: str, env_spec, length: int) -> reverb.Table:
    return builders.sequence_table(
        env_spec,
        builders.EXTRAS_SPEC,
        length,
        100_000,
        reverb.rate_limiters.MinSize(1),
        sampler=reverb.selectors.Fifo(),
        max_times_sampled=1,
        name=name,
    )


def _items(client: reverb.Client, table: str, count: int) -> list:
    """The table's items in insertion order, as nests shaped like its signature."""
    signature = client.server_info()[table].signature
    out = []
    for sample in client.sample(table, num_samples=count, emit_timesteps=False):
        out.append(tree.unflatten_as(signature, sample.data))
        assert sample.info.priority == 1.0
    return out


def _stream(env, steps: int, seed: int):
    """(kind, payload) events of a random-action stream: 'first' and 'step'."""
    rng = np.random.default_rng(seed)
    spec = env.action_spec()
    timestep = env.reset()
    yield "first", timestep
    for _ in range(steps):
        action = rng.uniform(-1, 1, spec.shape).astype(np.float32)
        extras = {"log_prob": np.float32(rng.normal())}
        timestep = env.step(action)
        yield "step", (action, timestep, extras)
        if timestep.last():
            timestep = env.reset()
            yield "first", timestep


@pytest.mark.parametrize(
    "task,kwargs,length,steps,burn_in",
    [
        # 0.9 s episodes of walker-walk: 36 steps, not a multiple of T.
        ("walker_walk", {"time_limit": 0.9}, 4, 200, 0),
        ("walker_walk", {"time_limit": 0.5}, 10, 150, 0),
        ("walker_walk", {"time_limit": 0.25}, 10, 120, 0),  # episodes shorter than T
        ("seqnav_pointmass", {}, 10, 300, 0),  # episodes cut at 47 steps by Acme's wrapper
        ("seqnav_pointmass", {}, 10, 300, 7),  # N + T + 1 rows every T: an LSTM's burn-in
        ("walker_walk", {"time_limit": 0.25}, 4, 120, 13),  # burn-in longer than episodes
    ],
)
def test_fast_adder_items_equal_acme_sequence_adder(task, kwargs, length, steps, burn_in):
    env = registry.make_environment(task, 0, **kwargs)
    if task == "seqnav_pointmass":
        env = wrappers.StepLimitWrapper(env, step_limit=47)
    env_spec = acme.make_environment_spec(env)
    stored = length + burn_in  # the tables' "transitions": N + T, items of N + T + 1 rows
    server = reverb.Server([_table("acme", env_spec, stored), _table("fast", env_spec, stored)])
    client = reverb.Client(f"localhost:{server.port}")
    theirs = reverb_adders.SequenceAdder(
        client,
        sequence_length=burn_in + length + 1,
        period=length,
        priority_fns={"acme": None},
        end_of_episode_behavior=reverb_adders.EndBehavior.CONTINUE,
    )
    ours = FastSequenceAdder(client, sequence_length=length, table="fast", burn_in=burn_in)
    for kind, payload in _stream(env, steps, seed=1):
        for adder in (theirs, ours):
            if kind == "first":
                adder.add_first(payload)
            else:
                adder.add(*payload)
    ours.flush()
    del theirs  # flushes Acme's writer
    info = client.server_info()
    count = info["acme"].current_size
    assert count > 3 and info["fast"].current_size == count
    expected, got = _items(client, "acme", count), _items(client, "fast", count)
    starts = 0
    for want, have in zip(expected, got, strict=True):
        tree.assert_same_structure(want, have)
        for a, b in zip(tree.flatten(want), tree.flatten(have), strict=True):
            a, b = np.asarray(a), np.asarray(b)
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b)
        starts += int(np.asarray(want.start_of_episode)[1:].sum())
    assert starts > 0  # the stream crossed episode boundaries inside items
    ours.close()
    server.stop()


def test_make_adder_selects_the_writer():
    from bprl.experiments.configs.base import base_config

    config = base_config()
    env = registry.make_environment("walker_walk", 0)
    env_spec = acme.make_environment_spec(env)
    server = reverb.Server([builders.RunBuilder(config, env_spec).make_replay_tables()[0]])
    client = reverb.Client(f"localhost:{server.port}")
    assert isinstance(builders.RunBuilder(config).make_adder(client), FastSequenceAdder)
    config.replay.adder = "acme"
    assert isinstance(builders.RunBuilder(config).make_adder(client), reverb_adders.SequenceAdder)
    config.replay.adder = "other"
    with pytest.raises(ValueError, match="replay.adder"):
        builders.RunBuilder(config).make_adder(client)
    server.stop()
