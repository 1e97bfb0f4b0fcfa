"""Reads scalar curves back from TensorBoard event files (TensorBoard's own reader).

The one name mapping between what code calls a scalar and what TensorBoard shows (`TAGS`):
every scalar has a short name (`policy_return`, `critic_loss`, `actor_steps`: what nodes
log, and what reports, analyses, benchmarks and tests ask for) and a tag grouped by
prefix (`eval/policy_return`, `loss/critic`, `counts/actor_steps`: what the event files
hold, so TensorBoard shows one section per group). Runs written before the tags were
grouped hold the short names as tags; the readers return short names for both.
"""

from __future__ import annotations

import os

import numpy as np

# short name -> TensorBoard tag. The x-axis of every tag is actor steps (all nodes).
TAGS = {
    # evaluators: the deterministic policy and the prior alone, mean return per episode
    "policy_return": "eval/policy_return",
    "prior_return": "eval/prior_return",
    # learner: the three losses, the KL the policy pays and the prior minimises
    "critic_loss": "loss/critic",
    "policy_loss": "loss/policy",
    "prior_loss": "loss/prior",
    "kl_policy_prior": "kl/policy_prior",
    "q_mean": "critic/q_mean",
    "retrace_target_mean": "critic/retrace_target_mean",
    "importance_weight_mean": "critic/importance_weight_mean",
    "learner_steps_per_second": "learner/steps_per_second",
    "bad_updates": "learner/bad_updates",
    # actors: training episodes of the stochastic policy
    "episode_return": "actor/episode_return",
    "episode_length": "actor/episode_length",
    "steps_per_second": "actor/steps_per_second",
    # the shared counter, as each node last saw it
    "actor_steps": "counts/actor_steps",
    "actor_episodes": "counts/actor_episodes",
    "learner_steps": "counts/learner_steps",
    # the writing process
    "process_cpu_seconds": "system/process_cpu_seconds",
    # the launcher (RUN/launcher/): each whole-program restart after a node died
    "program_restarts": "reliability/program_restarts",
    "learner_steps_lost": "reliability/learner_steps_lost",
    "restart": "reliability/restart",  # text: which node died, why, what was lost
}
_NAMES = {tag: name for name, tag in TAGS.items()}


def tag_for(name: str, group: str) -> str:
    """The TensorBoard tag of scalar `name`; one not in TAGS goes under `group/`."""
    return TAGS.get(name, f"{group}/{name}")


def name_for(tag: str) -> str:
    """The short name of a tag (new runs) or the tag itself (old runs, unmapped tags)."""
    return _NAMES.get(tag, tag)


def read_events(logdir: str) -> dict[str, list[tuple[float, int, float]]]:
    """{short name: [(wall_time, step, value), ...]} for every scalar under `logdir`."""
    from tensorboard.backend.event_processing import event_accumulator

    accumulator = event_accumulator.EventAccumulator(
        logdir, size_guidance={event_accumulator.TENSORS: 0, event_accumulator.SCALARS: 0}
    )
    accumulator.Reload()
    curves: dict[str, list[tuple[float, int, float]]] = {}
    tags = accumulator.Tags()
    for tag in tags.get(event_accumulator.TENSORS, []):
        points = [
            (e.wall_time, int(e.step), _tensor_value(e.tensor_proto))
            for e in accumulator.Tensors(tag)
        ]
        if all(value is not None for _, _, value in points):  # scalars only
            curves[name_for(tag)] = points
    for tag in tags.get(event_accumulator.SCALARS, []):
        curves[name_for(tag)] = [
            (e.wall_time, int(e.step), float(e.value)) for e in accumulator.Scalars(tag)
        ]
    return curves


def read_scalars(logdir: str) -> dict[str, list[tuple[int, float]]]:
    """{short name: [(step, value), ...]} for every scalar written under `logdir`."""
    return {
        name: [(step, value) for _, step, value in points]
        for name, points in read_events(logdir).items()
    }


def _tensor_value(proto) -> float | None:
    import tensorflow as tf

    value = np.asarray(tf.make_ndarray(proto))
    if value.ndim != 0 or not np.issubdtype(value.dtype, np.number):
        return None
    return float(value)


def run_dirs(root: str) -> list[str]:
    """Every directory under `root` that directly holds event files."""
    found = []
    for dirpath, _, filenames in os.walk(root):
        if any(name.startswith("events.out.tfevents") for name in filenames):
            found.append(dirpath)
    return sorted(found)


def append_events(logdir: str, step: int, scalars: dict[str, float], text: str = "") -> None:
    """Appends scalars (short names, tagged through TAGS) and an optional text note at
    `step` to a new event file under `logdir`, with TensorBoard's own writer and protos.

    For processes that do not import TensorFlow (the launcher logging a restart).
    """
    import time

    from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    values = [
        summary_pb2.Summary.Value(tag=tag_for(name, "launcher"), simple_value=float(value))
        for name, value in scalars.items()
    ]
    if text:
        values.append(
            summary_pb2.Summary.Value(
                tag=TAGS["restart"],
                metadata=summary_pb2.SummaryMetadata(
                    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="text")
                ),
                tensor=tensor_pb2.TensorProto(dtype=7, string_val=[text.encode()]),  # DT_STRING
            )
        )
    os.makedirs(logdir, exist_ok=True)
    writer = EventFileWriter(logdir)
    writer.add_event(
        event_pb2.Event(
            wall_time=time.time(), step=int(step), summary=summary_pb2.Summary(value=values)
        )
    )
    writer.close()
