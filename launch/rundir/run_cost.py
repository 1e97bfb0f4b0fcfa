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


def wall_hours(run_dir: str) -> float:
    """Hours between the learner's first and last events, stopped spans left out (nan:
    fewer than two events)."""
    times = sorted(
        wall
        for logdir in events.run_dirs(layout.learner_dir(run_dir))
        for points in events.read_events(logdir).values()
        for wall, _, _ in points
    )
    if len(times) < 2:
        return math.nan
    gaps = np.diff(times)
    return float(np.sum(gaps[gaps <= ACTIVE_GAP_SECONDS]) / 3600.0)
