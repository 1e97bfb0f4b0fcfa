"""What a run cost: the learner updates it did and the wall time it was up.

`bprl report` puts both beside each arm's returns (issue 28: arms are compared at equal
actor steps, and these say what that budget took). Updates come from the run's last
complete checkpoint record (the counts a resume starts from); the wall time from the wall
clock of the learner's TensorBoard events, summed over the gaps between consecutive
events that are at most `ACTIVE_GAP_SECONDS`: a longer silence is a run that was stopped
and resumed later (a sweep resumed in another session), which cost no time.
"""

from __future__ import annotations

import math

import numpy as np

from bprl.launch.rundir import checkpoint_record, events, layout

ACTIVE_GAP_SECONDS = 600.0  # the learner logs every few seconds while it runs


def learner_updates(run_dir: str) -> float:
    """Learner updates of the last complete checkpoint (nan: none yet)."""
    return float(checkpoint_record.load_counts(run_dir).get("learner_steps", math.nan))


def learner_events(run_dir: str) -> list[dict[str, list[tuple[float, int, float]]]]:
    """The learner's scalars, one `events.read_events` dict per event directory (a resumed
    run may add one): read once, for every figure taken from them."""
    return [events.read_events(d) for d in events.run_dirs(layout.learner_dir(run_dir))]


def hours_up(learner: list[dict[str, list[tuple[float, int, float]]]]) -> float:
    """Hours between the learner's first and last events (`learner_events`), stopped spans
    left out (nan: fewer than two events)."""
    times = sorted(
        wall for scalars in learner for points in scalars.values() for wall, _, _ in points
    )
    if len(times) < 2:
        return math.nan
    gaps = np.diff(times)
    return float(np.sum(gaps[gaps <= ACTIVE_GAP_SECONDS]) / 3600.0)
