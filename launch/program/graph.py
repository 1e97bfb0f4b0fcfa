"""One Launchpad program per seed: replay, counter, learner, actor processes (each running
one or more environment streams), evaluators, stopper."""

from __future__ import annotations

import functools

import launchpad as lp
import ml_collections
import reverb

from bprl.launch.config import shape
from bprl.launch.program import builders, light_nodes, nodes
from bprl.launch.rundir import replay_mirror, resume


def _replay_tables(config: ml_collections.ConfigDict):
    return builders.RunBuilder(config).make_replay_tables()


def make_program(
    config: ml_collections.ConfigDict,
    workdir: str,
    cores: int | None = None,
    ends_job: bool = False,
    learner_kernels: str | None = None,
) -> lp.Program:
    """Builds (does not launch) the program for `config`, logging under `workdir`.

    `cores`: what auto packing (`actors.envs_per_process = 0`) spreads the actor streams
    over; None: this machine's cores. `ends_job`: at the budget the stop node has the
    learner write its last checkpoint, marks the run complete and returns (its replica
    exits 0, which ends a Vertex AI job SUCCEEDED) instead of calling `lp.stop()`.
    `learner_kernels`: as the launcher resolved them for the learner's machine (None:
    the learner resolves them on its own)."""
    program = lp.Program(name=f"bprl_{config.task}_seed{config.seed}")
    sizes = shape.group_sizes(config, cores)  # the shape the pools and fit check read
    # The learner checkpoints the replay together with its own state (so the two match);
    # the replay node loads the latest checkpoint when it starts and writes a last one
    # when the program stops.
    checkpoint_ctor = None
    if config.checkpoint.replay:
        checkpoint_ctor = functools.partial(
            reverb.checkpointers.DefaultCheckpointer,
            path=replay_mirror.replay_staging_dir(workdir),
        )
    replay_node = nodes.CheckpointingReverbNode(
        functools.partial(_replay_tables, config),
        checkpoint_ctor=checkpoint_ctor,
        workdir=workdir,
    )
    with program.group("replay"):
        replay = program.add_node(replay_node)
    with program.group("counter"):
        counter = program.add_node(lp.CourierNode(resume.RestoringCounter, workdir))
    with program.group("learner"):
        learner = program.add_node(
            lp.CourierNode(nodes.LearnerNode, config, replay, counter, workdir, learner_kernels)
        )
    with program.group("actor"):
        # Each actor node runs a group of streams (launch/config/packing.py). It gets the replay's
        # address, not its handle: the node stays free of Reverb and TensorFlow
        # (launch/program/light_nodes.py); its worker process connects.
        for streams in shape.actor_streams(config, cores):
            program.add_node(
                lp.CourierNode(
                    light_nodes.ActorNode,
                    config,
                    streams,
                    replay_node.reverb_address,
                    counter,
                    learner,
                    workdir,
                )
            )
    with program.group("evaluator"):
        for evaluator_id in range(sizes["evaluator"]):
            program.add_node(
                lp.CourierNode(nodes.EvaluatorNode, config, evaluator_id, counter, learner, workdir)
            )
    with program.group("stopper"):
        program.add_node(
            lp.CourierNode(
                light_nodes.StopConditionNode,
                config,
                counter,
                learner=learner if ends_job else None,
                workdir=workdir if ends_job else None,
            )
        )
    built = {group: len(nodes) for group, nodes in program.groups.items()}
    if built != {group: n for group, n in sizes.items() if n}:  # (a programming error)
        raise AssertionError(f"program groups {built} differ from launch/config/shape.py")
    return program
