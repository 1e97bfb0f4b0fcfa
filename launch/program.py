"""One Launchpad program per seed: replay, counter, learner, actors, evaluators, stopper."""

from __future__ import annotations

import functools

import launchpad as lp
import ml_collections
import reverb

from launch import builders, checkpointing, nodes


def _replay_tables(config: ml_collections.ConfigDict):
    return [builders.replay_table(config, builders.environment_spec(config))]


def make_program(config: ml_collections.ConfigDict, workdir: str) -> lp.Program:
    """Builds (does not launch) the program for `config`, logging under `workdir`."""
    program = lp.Program(name=f"bprl_{config.task}_seed{config.seed}")
    # The learner checkpoints the replay together with its own state (so the two match);
    # the replay node loads the latest checkpoint when it starts and writes a last one
    # when the program stops.
    checkpoint_ctor = None
    if config.checkpoint.replay:
        checkpoint_ctor = functools.partial(
            reverb.checkpointers.DefaultCheckpointer,
            path=checkpointing.checkpoint_dir(workdir, "replay"),
        )
    with program.group("replay"):
        replay = program.add_node(
            nodes.CheckpointingReverbNode(
                functools.partial(_replay_tables, config),
                checkpoint_ctor=checkpoint_ctor,
                workdir=workdir,
            )
        )
    with program.group("counter"):
        counter = program.add_node(lp.CourierNode(checkpointing.RestoringCounter, workdir))
    with program.group("learner"):
        learner = program.add_node(
            lp.CourierNode(nodes.LearnerNode, config, replay, counter, workdir)
        )
    with program.group("actor"):
        for actor_id in range(config.actors.num_actors):
            program.add_node(
                lp.CourierNode(nodes.ActorNode, config, actor_id, replay, counter, learner, workdir)
            )
    with program.group("evaluator"):
        for evaluator_id in range(config.evaluators.num_evaluators):
            program.add_node(
                lp.CourierNode(nodes.EvaluatorNode, config, evaluator_id, counter, learner, workdir)
            )
    with program.group("stopper"):
        program.add_node(lp.CourierNode(nodes.StopConditionNode, config, counter))
    return program
