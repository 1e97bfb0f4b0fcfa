"""The worker behind each Launchpad node: learner, actor, evaluator and stop condition."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import launchpad as lp
import ml_collections
import numpy as np
import reverb
import tensorflow as tf
from absl import logging
from acme.utils import counting

from bprl.agents.actor import GaussianActor, VersionedVariableClient
from bprl.agents.learner import Learner
from bprl.agents.packed_actor import PackedActor, PackedLoop
from bprl.launch.config import packing
from bprl.launch.program import builders, supervision
from bprl.launch.program.quiet import quiet_warnings
from bprl.launch.program.tensorboard import TensorBoardLogger
from bprl.launch.rundir import checkpoint_record, checkpointing, layout, replay_mirror, storage

# Node processes import this module first (Launchpad unpickles the nodes): their logs
# (<workdir>/logs/) keep our warnings and lose the third-party deprecation noise.
quiet_warnings()


def run_until_stopped(work: Callable[[], None], name: str) -> None:
    """Runs `work` in a daemon thread until it returns or the program is asked to stop.

    Work can block inside Reverb (a rate-limited sample or insert) where no stop signal
    reaches it; returning from the node's `run` lets Launchpad end the process at once
    instead of killing it after its grace period. An exception in `work` is re-raised, so
    a failing node still fails the program.
    """
    errors: list[BaseException] = []

    def target() -> None:
        try:
            work()
        except BaseException as error:  # noqa: BLE001 - re-raised in the node's thread
            errors.append(error)

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    stop = lp.stop_event()
    while thread.is_alive() and not stop.is_set():
        stop.wait(0.5)
    if errors:
        raise errors[0]
    logging.info("%s: stopping", name)


class LearnerNode:
    """Serves the learner's variables, runs updates and checkpoints until the program stops."""

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        replay,
        counter,
        workdir: str,
        learner_kernels: str | None = None,
    ):
        """`learner_kernels`: as the launcher resolved them for this node's environment
        (None: resolved here, on this machine)."""
        builder = builders.RunBuilder(config, learner_kernels=learner_kernels)
        builders.set_tf_threads(builder.learner_threads)  # before TensorFlow's first op
        self._lock = threading.Lock()
        networks, jit_compile = builder.make_learner_networks()
        updates_per_call = builder.updates_per_call
        logging.info(
            "learner kernels: %s (update XLA-compiled: %s, %d update(s) per call, "
            "%s TensorFlow threads; TF_XLA_FLAGS=%r, oneDNN %s)",
            builder.learner_kernels,
            jit_compile,
            updates_per_call,
            tf.config.threading.get_intra_op_parallelism_threads() or "default",
            os.environ.get("TF_XLA_FLAGS", ""),
            os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
        )
        self._learner = Learner(
            networks=networks,
            dataset=iter(builder.make_dataset(replay.server_address)),
            hyper=builder.hyperparams,
            counter=counting.Counter(counter, prefix="learner"),
            # x: the actor steps the counter holds; learner steps are a scalar of their own
            logger=TensorBoardLogger(layout.learner_dir(workdir), "learner"),
            log_every_steps=config.logging.learner_every_steps,
            update_lock=self._lock,
            jit_compile=jit_compile,
            frozen_prior=config.prior.frozen,
            updates_per_call=updates_per_call,
            burn_in=builder.burn_in,
        )
        self._workdir = workdir
        self._checkpointer = checkpointing.RunCheckpointer(
            workdir,
            self._learner.checkpoint_state(),
            counter,
            replay_client=replay if config.checkpoint.replay else None,
            learner_steps=lambda: self._learner.num_steps,
        )
        self._checkpoint_every = config.checkpoint.every_seconds
        self._finished = threading.Event()  # the final checkpoint is written: no more updates
        self._finish_requested = threading.Event()  # finish() asked for it
        self._final_record: dict | None = None
        if self._checkpointer.restore():
            logging.info("learner resumed at step %d", self._learner.num_steps)

    def _train(self) -> None:
        while not self._finished.is_set():
            self._learner.step()
            if self._finish_requested.is_set():
                self._write_final()
            elif time.time() - self._checkpointer.last_save_time >= self._checkpoint_every:
                self.checkpoint()

    def finish(self, timeout: float = 300.0) -> dict | None:
        """Ends training at the budget: the training thread writes a last checkpoint of the
        learner with the replay (both still running, so the two match) after its current
        update, marks the run FINISHED and updates no more. Called by the stop node of a
        job that ends itself (Vertex AI); returns the checkpoint's record, or None if it is
        not written within `timeout` (the stop node asks again).

        The checkpoint is written by the training thread, between two updates, as the
        periodic ones are: written from this RPC thread, the next update failed (its
        compiled function's while loop "is not defined"; seen in the rehearsal)."""
        self._finish_requested.set()
        self._finished.wait(timeout)
        return self._final_record

    def _write_final(self) -> None:
        with self._lock:
            record = self._checkpointer.save(include_replay=True)
            if record is None:
                return  # not written (e.g. a full disk): the next update's turn tries again
            self._learner.flush_logs()
            storage.write_json(
                storage.join(self._workdir, layout.FINISHED),
                {"counts": record["counts"], "learner": record["learner"], "time": time.time()},
            )
            self._final_record = record
            self._finished.set()

    def checkpoint(self, include_replay: bool = True) -> dict:
        """Writes a checkpoint now, between two updates, and returns its record."""
        with self._lock:
            return self._checkpointer.save(include_replay=include_replay)

    def get_variables(self, names):
        return self._learner.get_variables(names)

    def run(self) -> None:
        logging.info("learner started at step %d", self._learner.num_steps)
        try:
            run_until_stopped(self._train, "learner")
            if self._finished.is_set():  # the run is complete: serve until the job ends
                lp.stop_event().wait()
        finally:
            # Final checkpoint at the budget, on SIGTERM and on errors. The replay server
            # is stopping too and writes its own final checkpoint (CheckpointingReverbNode).
            if not self._finished.is_set():
                checkpointing.final_checkpoint(self._checkpointer, self._lock)
            self._learner.flush_logs()  # the figures of the updates since the last write


class CheckpointingReverbNode(lp.ReverbNode):
    """Launchpad's Reverb node, plus a last replay checkpoint when the program stops."""

    def __init__(self, *args, workdir: str, **kwargs):
        super().__init__(*args, **kwargs)
        self._workdir = workdir

    def _finished(self) -> bool:
        """A run on object storage that ended at its budget: the learner's final record
        already names a replay checkpoint written with it, and is the records' one writer
        there, so a stop-time checkpoint would be uploaded (the replay's whole size) and
        never read."""
        return storage.is_remote(self._workdir) and storage.exists(
            storage.join(self._workdir, layout.FINISHED)
        )

    def run(self) -> None:
        mirror = None
        if self._checkpoint_ctor is not None and storage.is_remote(self._workdir):
            # The run directory is on object storage: Reverb checkpoints on this machine's
            # disk and its complete checkpoints are mirrored into the run directory.
            mirror = replay_mirror.ReplayMirror(self._workdir)
            mirror.restore()
            mirror.start()
        try:
            super().run()
            server = getattr(self, "_server", None)  # set by ReverbNode.run
            if server is not None and self._checkpoint_ctor is not None and not self._finished():
                started = time.time()
                client = server.localhost_client()
                items = {n: info.current_size for n, info in client.server_info(10).items()}
                path = client.checkpoint()
                logging.info("final replay checkpoint in %.2fs: %s", time.time() - started, path)
                if mirror is None:
                    # Reverb has deleted the checkpoint the newest record named: name this
                    # one. (On object storage the learner is the records' one writer.)
                    checkpoint_record.note_final_replay(self._workdir, path, items)
        finally:
            if mirror is not None:
                mirror.stop()


def run_actor_process(config, stream_ids, replay_address, counter, learner, workdir) -> None:
    """The actor worker process: runs streams `stream_ids` packed (one batched inference
    per step); rebuilds them all and continues after an exception (`actors.max_errors`)."""
    supervision.exit_with_parent()
    # A spawned process: absl's flags were never parsed; log as the nodes do (timestamps).
    logging.use_absl_handler()
    logging.set_verbosity(logging.INFO)
    builders.set_tf_threads(config.resources.actor_threads)
    replay = reverb.Client(replay_address.resolve())
    name = packing.process_name(stream_ids)

    def build_and_run() -> None:
        seeds = [config.seed * 1000 + stream for stream in stream_ids]  # as unpacked actors
        builder = builders.RunBuilder(config)
        envs = builder.make_environments(seeds)
        if config.actors.inject_fault_every_steps:
            every = config.actors.inject_fault_every_steps
            envs = [
                supervision.FaultInjector(env, every, seed)
                for env, seed in zip(envs, seeds, strict=True)
            ]
        networks = builder.make_networks()
        # A prior whose state is stored with every step (LSTM) runs in the actor too.
        recurrent_prior = networks.kind.actor_prior(networks)
        fetched = {"policy": networks.policy.variables}
        if recurrent_prior is not None:
            fetched["prior"] = networks.prior.variables
        client = VersionedVariableClient(
            learner, fetched, update_period=config.actors.variable_update_period
        )
        client.update_and_wait()
        actor = PackedActor(
            networks.policy,
            [builder.make_adder(replay) for _ in stream_ids],
            seeds,
            variable_client=client,
            recurrent_prior=recurrent_prior,
        )
        # One event directory per stream (actors/<id>/, as unpacked); the process's CPU
        # time is recorded in its first stream's only, so summing over streams is right.
        stream_loggers = [
            TensorBoardLogger(
                layout.actor_dir(workdir, stream), "actor", flush_secs=0, cpu_seconds=(k == 0)
            )
            for k, stream in enumerate(stream_ids)
        ]
        loop = PackedLoop(
            envs,
            actor,
            # every increment forwarded: the loop batches them itself (once a second)
            counting.Counter(counter, prefix="actor", time_delta=0.0),
            stream_loggers,
            stream_ids,
            first_insert_steps=builder.burn_in + config.replay.sequence_length,
        )
        logging.info("%s running %d streams %s", name, len(stream_ids), list(stream_ids))
        try:
            loop.run()
        finally:
            for stream_logger in stream_loggers:
                stream_logger.close()

    supervision.run_with_retries(build_and_run, config.actors.max_errors, name)


def run_episode(env, actor: GaussianActor) -> float:
    """Plays one episode without learning; returns the undiscounted return."""
    timestep = env.reset()
    actor.reset()
    total = 0.0
    while not timestep.last():
        timestep = env.step(actor.select_action(timestep.observation))
        total += float(timestep.reward)
    return total


class EvaluatorNode:
    """Evaluates the deterministic policy and the prior alone, every N actor steps."""

    def __init__(
        self, config: ml_collections.ConfigDict, evaluator_id: int, counter, learner, workdir: str
    ):
        self._config = config
        self._id = evaluator_id
        self._counter = counter
        self._learner = learner
        self._logdir = layout.evaluator_dir(workdir, evaluator_id)

    def run(self) -> None:
        run_until_stopped(self._run, f"evaluator_{self._id}")

    def _run(self) -> None:
        config = self._config
        builders.set_tf_threads(config.resources.actor_threads)
        seed = config.seed * 1000 + 500 + self._id
        builder = builders.RunBuilder(config)
        (env,) = builder.make_environments([seed])
        networks = builder.make_networks()
        client = VersionedVariableClient(
            self._learner,
            {"policy": networks.policy.variables, "prior": networks.prior.variables},
        )
        policy = GaussianActor(networks.policy, stochastic=False, variable_client=client)
        prior = GaussianActor(networks.prior, stochastic=True, variable_client=client, seed=seed)
        logger = TensorBoardLogger(self._logdir, "eval")
        next_eval = 0
        while True:
            counts = self._counter.get_counts()
            actor_steps = int(counts.get("actor_steps", 0))
            if actor_steps < next_eval:
                time.sleep(1.0)
                continue
            client.update_and_wait()
            policy.update()
            prior.update()
            episodes = config.evaluators.episodes
            policy_return = np.mean([run_episode(env, policy) for _ in range(episodes)])
            prior_return = np.mean([run_episode(env, prior) for _ in range(episodes)])
            logger.write(
                {
                    "policy_return": policy_return,
                    "prior_return": prior_return,
                    "actor_steps": actor_steps,
                    "learner_steps": int(counts.get("learner_steps", 0)),
                }
            )
            logger.flush()
            logging.info(
                "eval at %d actor steps: policy %.1f prior %.1f",
                actor_steps,
                policy_return,
                prior_return,
            )
            next_eval = actor_steps + config.evaluators.every_actor_steps
