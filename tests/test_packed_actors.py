"""Packed actors (issue 18): N streams in one process write what N separate actors write;
real Reverb, real MuJoCo, real Launchpad programs."""

from __future__ import annotations

import os
import signal

import acme
import numpy as np
import psutil
import pytest
import reverb
from acme.utils import counting, loggers

from bprl.agents.actor import GaussianActor
from bprl.agents.fast_adder import FastSequenceAdder
from bprl.agents.packed_actor import PackedActor, PackedLoop
from bprl.launch.config import errors, packing, validate
from bprl.launch.config.loading import load_config
from bprl.launch.program import builders
from bprl.launch.rundir import events
from tests_support import (
    REPO,
    actor_workers,
    read_checkpoint_record,
    run_processes,
    start_run,
    wait_for,
)

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
        builders.RunBuilder(config).extras_spec,
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
    envs = [builders.RunBuilder(config).make_environment(seed) for seed in SEEDS]
    env_spec = acme.make_environment_spec(envs[0])
    networks = builders.RunBuilder(config, env_spec).make_networks()
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
    envs = [builders.RunBuilder(config).make_environment(seed) for seed in SEEDS]
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
    with pytest.raises(errors.ConfigError, match="actors.envs_per_process must be >= 0"):
        validate.validate_config(config)
    config.actors.num_actors = 32
    config.actors.envs_per_process = 8
    groups = packing.stream_groups(config)
    assert groups == [tuple(range(k, k + 8)) for k in (0, 8, 16, 24)]
    config.actors.envs_per_process = 5  # the last process takes the rest
    assert [len(g) for g in packing.stream_groups(config)] == [5, 5, 5, 5, 5, 5, 2]
    config.actors.envs_per_process = 0  # auto: about one process per core, capped
    assert len(packing.stream_groups(config, cores=2)) == 2
    assert len(packing.stream_groups(config, cores=64)) == 32
    assert packing.envs_per_process(config, cores=1) == packing.MAX_AUTO_ENVS_PER_PROCESS
    config.actors.num_actors = 3
    assert packing.stream_groups(config, cores=2) == [(0, 1), (2,)]
    # Every stream keeps its id (and so its seed and event directory) whatever the packing.
    for size in (1, 2, 3):
        config.actors.envs_per_process = size
        assert sum(packing.stream_groups(config), ()) == (0, 1, 2)


def _node_processes(workdir: str, group: str) -> list[psutil.Process]:
    found = []
    for proc in run_processes(workdir):
        try:
            if proc.environ().get("BPRL_NODE_GROUP") == group and "--lp_task_id" in " ".join(
                proc.cmdline()
            ):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _inserted_streams(workdir: str) -> set[int]:
    from bprl.launch.rundir import layout

    return layout.inserted_streams(workdir)


def test_packed_program_inserts_from_every_stream_and_survives_a_killed_worker(tmp_path):
    """4 streams, 2 per process: 2 light actor nodes (no TensorFlow) and 2 workers; a
    SIGKILLed worker is replaced and its streams insert again; the run reaches its budget."""
    workdir = str(tmp_path / "run")
    proc = start_run(
        workdir,
        "--config.actors.num_actors=4",
        "--config.actors.envs_per_process=2",
        "--config.stop.max_actor_steps=5000",
    )
    try:
        wait_for(lambda: len(actor_workers(workdir)) == 2, 180, "two packed actor workers")
        nodes = _node_processes(workdir, "actor")
        assert len(nodes) == 2
        for node in nodes:  # the supervising node never loads TensorFlow's Python library
            with open(f"/proc/{node.pid}/maps") as f:
                assert "_pywrap_tensorflow_internal" not in f.read()
        wait_for(lambda: _inserted_streams(workdir) == {0, 1, 2, 3}, 180, "every stream")
        victim = next(w for w in actor_workers(workdir) if w.ppid() == nodes[0].pid)
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        wait_for(
            lambda: [w for w in actor_workers(workdir) if w.pid != victim.pid][1:],
            120,
            "the killed worker to be replaced",
        )
        out, err = proc.communicate(timeout=300)
        code = proc.returncode
    finally:
        if proc.poll() is None:
            for leftover in run_processes(workdir):
                leftover.kill()
            proc.communicate()
    assert code == 0, err[-3000:]
    assert read_checkpoint_record(workdir)["counts"]["actor_steps"] >= 5000
    logs = {i: open(os.path.join(workdir, "logs", "actor", str(i))).read() for i in (0, 1)}
    killed = 0 if f"worker process {victim.pid} died" in logs[0] else 1
    assert f"worker process {victim.pid} died" in logs[killed]
    # The replacement worker ran the same two streams again from new episodes.
    streams = {0: (0, 1), 1: (2, 3)}[killed]
    for stream in streams:
        assert logs[killed].count(f"actor stream {stream}: first sequence inserted") == 2
    for stream in range(4):  # per-stream event files, as unpacked actors write them
        curves = events.read_scalars(os.path.join(workdir, "actors", str(stream)))
        assert curves.get("actor_steps"), f"stream {stream} logged no episode"
        assert curves.get("episode_return")
    # The process's CPU time is written once per process (its first stream), not per stream.
    cpu = [
        bool(
            events.read_scalars(os.path.join(workdir, "actors", str(s))).get("process_cpu_seconds")
        )
        for s in range(4)
    ]
    assert cpu == [True, False, True, False]
    assert run_processes(workdir) == []


@pytest.mark.slow  # two small programs started and stopped (~3 min on 2 cores)
def test_memory_benchmark_runs_at_a_tiny_size(tmp_path):
    from benchmarks import memory

    out = str(tmp_path / "memory.json")
    report = memory.main(["--streams", "2", "--packing", "2,1", "--window", "4", "--out", out])
    assert os.path.exists(out)
    packed, unpacked = report["runs"]
    for run, processes in ((packed, 1), (unpacked, 2)):
        assert "error" not in run and "skipped" not in run, run
        assert run["actor_processes"] == processes
        assert run["total_gib"] > run["actor_gib"] > 0
        # Each actor process: its node, its worker and multiprocessing's resource tracker.
        assert run["actor_pids"] == 3 * processes
        assert run["learner_pids"] == run["replay_pids"] == 1
        assert run["left_behind"] == 0
        assert run["all_inserted_s"] > 0
