"""Steps to a threshold as survival data: seeds that never reach it are censored, not
counted as if they had reached it at their last step.

Each seed gives (actor steps, reached): the steps at which its curve first reached the
threshold (an event), or its last step (censored: it would have needed more). The
Kaplan-Meier estimate of P(not yet reached after t steps) gives a median steps-to-threshold
that uses the censored seeds correctly; two arms are compared with the log-rank test and
the ratio of their medians, with a bootstrap interval over seeds (resampled within each
arm). A median that the data cannot reach (fewer than half the seeds reached the threshold
by the last step any seed was followed) is infinite: the ratio is then open-ended, and
reported as such.
"""

from __future__ import annotations

import math

import numpy as np

BOOTSTRAP_SAMPLES = 4_000


def kaplan_meier(times, reached) -> tuple[np.ndarray, np.ndarray]:
    """(distinct event times, survival just after each): S(t) = prod_{t_j <= t} (1 - d_j / n_j),
    d_j seeds reaching the threshold at t_j, n_j seeds still followed at t_j (time >= t_j)."""
    times = np.asarray(times, np.float64)
    reached = np.asarray(reached, bool)
    event_times = np.unique(times[reached])
    survival, s = [], 1.0
    for t in event_times:
        at_risk = np.sum(times >= t)
        events = np.sum((times == t) & reached)
        s *= 1.0 - events / at_risk
        survival.append(s)
    return event_times, np.asarray(survival)


def km_median(times, reached) -> float:
    """The first event time at which the Kaplan-Meier survival is <= 1/2 (inf: never)."""
    event_times, survival = kaplan_meier(times, reached)
    below = np.nonzero(survival <= 0.5 + 1e-12)[0]
    return float(event_times[below[0]]) if len(below) else math.inf


def logrank_p(times_a, reached_a, times_b, reached_b) -> float:
    """Two-sided p-value of the log-rank test that two arms reach the threshold at the same
    rate (chi-squared, 1 degree of freedom); nan when no seed of either reached it."""
    from scipy import stats

    times = np.concatenate([np.asarray(times_a, np.float64), np.asarray(times_b, np.float64)])
    reached = np.concatenate([np.asarray(reached_a, bool), np.asarray(reached_b, bool)])
    in_a = np.arange(len(times)) < len(times_a)
    observed_minus_expected, variance = 0.0, 0.0
    for t in np.unique(times[reached]):
        at_risk = times >= t
        n, n_a = at_risk.sum(), (at_risk & in_a).sum()
        d = ((times == t) & reached).sum()
        d_a = ((times == t) & reached & in_a).sum()
        observed_minus_expected += d_a - d * n_a / n
        if n > 1:
            variance += d * (n_a / n) * (1 - n_a / n) * (n - d) / (n - 1)
    if variance <= 0:
        return math.nan
    return float(stats.chi2.sf(observed_minus_expected**2 / variance, 1))


def _ratio(base: float, variant: float) -> float:
    """base / variant for medians that may be infinite: inf/x = inf, x/inf = 0, inf/inf nan;
    a variant at the threshold from step 0 against a later baseline: inf."""
    if math.isinf(base) and math.isinf(variant):
        return math.nan
    if math.isinf(variant):
        return 0.0
    if variant <= 0:
        return math.inf if base > 0 else math.nan
    return base / variant


def median_ratio(
    base: tuple[list, list], variant: tuple[list, list], seed: int = 0
) -> tuple[float, float, float]:
    """(KM median of `base` / KM median of `variant`, 95% bootstrap interval low, high);
    each arm is (times, reached). Resamples with neither median defined (inf/inf) are left
    out of the interval; an infinite end means the data put no bound there."""
    point = _ratio(km_median(*base), km_median(*variant))
    rng = np.random.default_rng(seed)
    b_times, b_reached = np.asarray(base[0], np.float64), np.asarray(base[1], bool)
    v_times, v_reached = np.asarray(variant[0], np.float64), np.asarray(variant[1], bool)
    ratios = []
    for _ in range(BOOTSTRAP_SAMPLES):
        i = rng.integers(0, len(b_times), len(b_times))
        j = rng.integers(0, len(v_times), len(v_times))
        ratios.append(
            _ratio(km_median(b_times[i], b_reached[i]), km_median(v_times[j], v_reached[j]))
        )
    ratios = np.asarray(ratios)
    ratios = ratios[~np.isnan(ratios)]
    if not len(ratios):
        return point, math.nan, math.nan
    low = float(np.quantile(ratios, 0.025, method="lower"))
    high = float(np.quantile(ratios, 0.975, method="higher"))
    return point, low, high
