"""One Launchpad program per seed: replay, counter, learner, actors, evaluators, stopper."""

from __future__ import annotations

import functools

import launchpad as lp
import ml_collections
from acme.utils import counting

from launch import builders, nodes


def _replay_tables(config: ml_collections.ConfigDict):
    return [builders.replay_table(config, builders.environment_spec(config))]


def make_program(config: ml_collections.ConfigDict, workdir: str) -> lp.Program:
    """Builds (does not launch) the program for `config`, logging under `workdir`."""
    program = lp.Program(name=f"bprl_{config.task}_seed{config.seed}")
    with program.group("replay"):
        replay = program.add_node(lp.ReverbNode(functools.partial(_replay_tables, config)))
    with program.group("counter"):
        counter = program.add_node(lp.CourierNode(counting.Counter))
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
