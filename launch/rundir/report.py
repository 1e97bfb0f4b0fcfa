"""`bprl report DIR`: learning curves and a results table from a sweep's event files.

Reads the TensorBoard event files of every run of a sweep (`DIR/seed_<k>` or
`DIR/<field>=<value>/seed_<k>`; a single `bprl run` directory counts as one seed) with
TensorBoard's reader (launch/rundir/events.py) and writes into DIR/report/:
  <metric>.png   mean across seeds and a 95% confidence band, one line per variant,
                 against actor steps: policy_return and prior_return (evaluators),
                 episode_return (actors, training episodes)
  summary.csv    per variant and metric: seeds, final return (mean, 95% CI half-width,
  summary.md     min, max), area under the curve (mean, CI), and with a return threshold
                 the actor steps to reach it and the speed-up over a baseline variant
  seeds.csv      one row per seed of every variant: final values, steps to threshold
  seeds.md       (or censored), learner updates, wall hours and the mean KL(pi || pi0)
The final return of a seed is its last evaluation (mean over its evaluators at that step).
Its area under the curve is the trapezoid integral of the curve over actor steps divided
by the steps it spans: the average return over training, in return units.
Only seeds with the sweep's DONE marker are used when the directory has any; otherwise
every seed found is (e.g. a sweep still going).

Curves are averaged on one grid to the last step any seed reached, with a bootstrap
band that stays within the seeds' range (launch/rundir/curves.py).

Transfer (docs/transfer.md): with a return threshold (`--threshold`, else the runs'
`report.threshold`), a seed's steps to threshold are the actor steps of the first point
of its curve at or above it (evaluator curves as logged; the actors' training returns as
a moving average over full windows of `ACTOR_WINDOW` points, so one lucky early episode
does not count). A seed that never gets there is censored at its last step
(launch/rundir/survival.py): the table gives the Kaplan-Meier median steps (inf: fewer
than half reached it), the log-rank p-value against the baseline variant (`--baseline`,
else the one whose name has "scratch" in it) and the ratio of the medians with a
bootstrap interval over seeds. The older columns stay: mean steps counting a censored
seed at its last step (a lower bound) and its ratio, resampled the same way.
"""

from __future__ import annotations

import csv
import math
import os

import numpy as np

from bprl.launch.rundir import curves as grid_curves
from bprl.launch.rundir import events, layout, run_cost, survival

EVALUATOR_METRICS = ("policy_return", "prior_return")
ACTOR_METRICS = ("episode_return",)
REPORT_DIR = layout.REPORT_DIR
ACTOR_WINDOW = 20  # actor training returns: moving average over this many points
# The learner's KL(pi || pi0) per step, in nats: how far the policy strays from its prior
# (the regulariser's size), which differs between arms with different priors.
KL_SCALAR = "kl_policy_prior"
BOOTSTRAP_SAMPLES = 10_000
_seed_dirs = layout.seed_dirs


def find_variants(root: str) -> dict[str, list[str]]:
    """{variant: [seed run dirs]}: 'default' for DIR/seed_<k>, the sub-directory's name
    ('<field>=<value>' of a swept field, or an arm's own sweep) for DIR/<name>/seed_<k>.
    Once any run is finished, only finished runs count (`left_out` names the others)."""
    return _finished(_every_run(root))


def left_out(root: str) -> list[str]:
    """'<variant>/<seed dir>' of each run `find_variants` leaves out: not finished yet
    (still running, stopped, or failed) while others are."""
    every = _every_run(root)
    kept = {d for dirs in _finished(every).values() for d in dirs}
    return [
        f"{name}/{os.path.basename(d)}"
        for name, dirs in every.items()
        for d in dirs
        if d not in kept
    ]


def _finished(variants: dict[str, list[str]]) -> dict[str, list[str]]:
    """`variants` with only finished runs once any run is finished; empty variants dropped."""
    if any(layout.is_done(d) for dirs in variants.values() for d in dirs):
        variants = {name: [d for d in dirs if layout.is_done(d)] for name, dirs in variants.items()}
    return {name: dirs for name, dirs in variants.items() if dirs}


def _every_run(root: str) -> dict[str, list[str]]:
    """find_variants() before finished runs are picked."""
    root = os.path.abspath(root)
    variants: dict[str, list[str]] = {}
    if _seed_dirs(root):
        variants["default"] = _seed_dirs(root)
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if name != REPORT_DIR and os.path.isdir(path) and _seed_dirs(path):
            variants[name] = _seed_dirs(path)
    if not variants and os.path.exists(os.path.join(root, layout.CONFIG_FILE)):
        variants["default"] = [root]  # a single run
    return variants


def _merge(curves: list[list[tuple[int, float]]]) -> tuple[np.ndarray, np.ndarray]:
    """Points of several nodes of one run as one curve: mean value at each step, by step."""
    by_step: dict[int, list[float]] = {}
    for curve in curves:
        for step, value in curve:
            by_step.setdefault(step, []).append(value)
    steps = np.array(sorted(by_step), dtype=np.float64)
    values = np.array([np.mean(by_step[int(s)]) for s in steps], dtype=np.float64)
    return steps, values


def seed_curve(run_dir: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(actor steps, values) of `metric` for one run; empty arrays when it has none."""
    if metric in EVALUATOR_METRICS:
        dirs = layout.evaluator_dirs(run_dir)
    else:
        dirs = layout.actor_dirs(run_dir)
    curves = []
    for path in dirs:
        for logdir in events.run_dirs(path):
            scalars = events.read_scalars(logdir)
            if metric in scalars:
                curves.append(scalars[metric])
    if not curves:
        return np.zeros(0), np.zeros(0)
    return _merge(curves)


def learner_mean(learner: list[dict], name: str) -> float:
    """The mean of the learner's scalar `name` over every value it logged in the run (nan:
    none), from `run_cost.learner_events` (each resumed run's event file included)."""
    values = [value for scalars in learner for _, _, value in scalars.get(name, [])]
    return float(np.mean(values)) if values else math.nan


def steps_to_threshold(
    steps: np.ndarray, values: np.ndarray, threshold: float, window: int = 1
) -> tuple[float, bool]:
    """(actor steps of the first point at or above `threshold`, True) or, never reached,
    (the last step, False). With `window` > 1 the curve is a trailing moving average over
    full windows only: point i >= window - 1 averages points i - window + 1 .. i (a curve
    shorter than one window is one average, at its last step)."""
    if window > 1 and len(values) > 1:
        if len(values) < window:
            steps, values = steps[-1:], np.array([np.mean(values)])
        else:
            cumulative = np.cumsum(np.insert(values, 0, 0.0))
            values = (cumulative[window:] - cumulative[:-window]) / window
            steps = steps[window - 1 :]
    above = np.nonzero(values >= threshold)[0]
    if len(above):
        return float(steps[above[0]]), True
    return float(steps[-1]), False


def speedup(
    baseline: list[float], variant: list[float], seed: int = 0
) -> tuple[float, float, float]:
    """(mean(baseline) / mean(variant), 95% bootstrap interval low, high): how many times
    fewer actor steps the variant needs. Seeds are resampled within each variant."""
    base, var = np.asarray(baseline, np.float64), np.asarray(variant, np.float64)

    def ratio(numerator, denominator):  # a variant at the threshold from step 0: infinite
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(denominator > 0, numerator / np.maximum(denominator, 1e-300), np.inf)

    point = float(ratio(base.mean(), var.mean()))
    rng = np.random.default_rng(seed)
    base_means = rng.choice(base, (BOOTSTRAP_SAMPLES, len(base))).mean(axis=1)
    var_means = rng.choice(var, (BOOTSTRAP_SAMPLES, len(var))).mean(axis=1)
    ratios = ratio(base_means, var_means)
    # No interpolation between order statistics: an infinite ratio stays an open end.
    low = np.quantile(ratios, 0.025, method="lower")
    high = np.quantile(ratios, 0.975, method="higher")
    return point, float(low), float(high)


def area_under_curve(steps: np.ndarray, values: np.ndarray) -> float:
    """Average return over the steps the curve spans (trapezoid rule)."""
    if len(steps) == 1:
        return float(values[0])
    return float(np.trapz(values, steps) / (steps[-1] - steps[0]))


def _mean(values: list[float]) -> float:
    """Mean over the finite values (nan when none is)."""
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def ci95(values: list[float]) -> float:
    """Half-width of the 95% Student-t confidence interval of the mean (nan for n < 2)."""
    n = len(values)
    if n < 2:
        return float("nan")
    from scipy import stats

    return float(stats.t.ppf(0.975, n - 1) * np.std(values, ddof=1) / math.sqrt(n))


def configured_threshold(variants: dict[str, list[str]]) -> tuple[float, str] | None:
    """(`report.threshold`, `report.threshold_reason`) from the runs' config.json: the
    first run that sets one."""
    import json

    for dirs in variants.values():
        for run_dir in dirs:
            try:
                with open(os.path.join(run_dir, layout.CONFIG_FILE)) as f:
                    report = json.load(f).get("report", {})
            except (OSError, ValueError):
                continue
            if report.get("threshold") is not None:
                return float(report["threshold"]), str(report.get("threshold_reason") or "")
    return None


def threshold_note(root: str, threshold: float | None) -> str:
    """Where the report's threshold comes from, and the reason its config declares."""
    if threshold is None:
        return ""
    declared = configured_threshold(find_variants(root))
    if declared is None or declared[0] != threshold:
        return f"Threshold {threshold:g}: given on the command line (--threshold).\n\n"
    reason = declared[1] or "no reason declared (report.threshold_reason)"
    return f"Threshold {threshold:g}, declared in the runs' config before they ran: {reason}\n\n"


def pick_baseline(variants: list[str], baseline: str | None) -> str | None:
    if baseline:
        if baseline not in variants:
            raise FileNotFoundError(
                f"baseline variant {baseline!r} not found; variants: {', '.join(variants)}"
            )
        return baseline
    scratch = [name for name in variants if "scratch" in name]
    return scratch[0] if len(scratch) == 1 else None


def summarize(
    root: str, threshold: float | None = None, baseline: str | None = None
) -> tuple[list[dict], dict]:
    """Rows of the table and the curves: ({...}, {metric: {variant: [(steps, values)]}})."""
    rows, curves, _ = _summarize(root, threshold, baseline)
    return rows, curves


def _seed_row(variant: str, run_dir: str) -> dict:
    """A seed's row of the per-seed table before its metrics: what the run cost and its
    mean KL, from one read of the learner's events."""
    learner = run_cost.learner_events(run_dir)
    return {
        "variant": variant,
        "seed": os.path.basename(run_dir.rstrip(os.sep)),
        "learner_updates": run_cost.learner_updates(run_dir),
        "wall_hours": run_cost.hours_up(learner),
        "kl_mean": learner_mean(learner, KL_SCALAR),
    }


def _summarize(
    root: str, threshold: float | None, baseline: str | None
) -> tuple[list[dict], dict, list[dict]]:
    """summarize()'s rows and curves, and one row per seed (seed_table)."""
    variants = find_variants(root)
    if not variants:
        raise FileNotFoundError(f"no runs (seed_<k> directories or config.json) under {root}")
    if threshold is None:
        threshold = (configured_threshold(variants) or (None,))[0]
    baseline = pick_baseline(list(variants), baseline)
    rows, curves = [], {}
    per_seed = {  # (variant, run dir) -> that seed's row of the per-seed table
        (variant, d): _seed_row(variant, d) for variant, dirs in variants.items() for d in dirs
    }
    costs = {  # per variant: the mean over its seeds of what a run cost
        variant: {
            "learner_updates_mean": _mean([per_seed[variant, d]["learner_updates"] for d in dirs]),
            "wall_hours_mean": _mean([per_seed[variant, d]["wall_hours"] for d in dirs]),
            "kl_mean": _mean([per_seed[variant, d]["kl_mean"] for d in dirs]),
        }
        for variant, dirs in variants.items()
    }
    for metric in (*EVALUATOR_METRICS, *ACTOR_METRICS):
        for variant, dirs in variants.items():
            window = 1 if metric in EVALUATOR_METRICS else ACTOR_WINDOW
            seeds, reached = [], []  # curves, and (steps, reached?) with a threshold
            for d in dirs:
                s, v = seed_curve(d, metric)
                if not len(s):
                    continue
                seeds.append((s, v))
                seed_row = per_seed[variant, d]
                seed_row[f"{metric}_final"] = float(v[-1])
                seed_row[f"{metric}_last_step"] = float(s[-1])
                if threshold is not None:
                    reached.append(steps_to_threshold(s, v, threshold, window))
                    at, ok = reached[-1]
                    seed_row[f"{metric}_reached_at"] = at if ok else math.nan
            if not seeds:
                continue
            curves.setdefault(metric, {})[variant] = seeds
            finals = [float(v[-1]) for _, v in seeds]
            aucs = [area_under_curve(s, v) for s, v in seeds]
            rows.append(
                {
                    "variant": variant,
                    "metric": metric,
                    "seeds": len(seeds),
                    "final_mean": float(np.mean(finals)),
                    "final_ci95": ci95(finals),
                    "final_min": float(np.min(finals)),
                    "final_max": float(np.max(finals)),
                    "auc_mean": float(np.mean(aucs)),
                    "auc_ci95": ci95(aucs),
                    "final_step_mean": float(np.mean([s[-1] for s, _ in seeds])),
                    **costs[variant],
                }
            )
            if threshold is not None:
                times, hit = [t for t, _ in reached], [ok for _, ok in reached]
                rows[-1].update(
                    threshold=threshold,
                    reached=f"{sum(hit)}/{len(reached)}",
                    km_median_steps=survival.km_median(times, hit),
                    steps_to_threshold_mean=float(np.mean(times)),
                    steps_to_threshold_ci95=ci95(times),
                    _survival=(times, hit),
                )
    if threshold is not None and baseline is not None:
        base_rows = {r["metric"]: r for r in rows if r["variant"] == baseline}
        for row in rows:
            base = base_rows.get(row["metric"])
            if base is None:
                continue
            point, low, high = survival.median_ratio(base["_survival"], row["_survival"])
            row.update(
                baseline=baseline,
                logrank_p=survival.logrank_p(*base["_survival"], *row["_survival"]),
                km_speedup=point,
                km_speedup_ci_low=low,
                km_speedup_ci_high=high,
            )
            point, low, high = speedup(base["_survival"][0], row["_survival"][0])
            row.update(speedup=point, speedup_ci_low=low, speedup_ci_high=high)
    for row in rows:
        row.pop("_survival", None)
    return rows, curves, list(per_seed.values())


COLUMNS = [
    "variant",
    "metric",
    "seeds",
    "final_mean",
    "final_ci95",
    "final_min",
    "final_max",
    "auc_mean",
    "auc_ci95",
    "final_step_mean",
    "learner_updates_mean",
    "wall_hours_mean",
    "kl_mean",
]
THRESHOLD_COLUMNS = [
    "threshold",
    "reached",
    "km_median_steps",
    "baseline",
    "logrank_p",
    "km_speedup",
    "km_speedup_ci_low",
    "km_speedup_ci_high",
    "steps_to_threshold_mean",
    "steps_to_threshold_ci95",
    "speedup",
    "speedup_ci_low",
    "speedup_ci_high",
]


def _fmt(value) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.2f}"
    return str(value)


def _write_csv(path: str, columns: list[str], rows: list[dict], value) -> str:
    """`rows` as csv under `columns` (a missing key: empty), each value through `value`."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: value(v) for k, v in row.items()})
    return path


def _write_markdown_rows(f, columns: list[str], rows: list[dict], cell) -> None:
    """A markdown table of `rows` under `columns`, each cell written by cell(row, column)."""
    f.write("| " + " | ".join(columns) + " |\n")
    f.write("|" + "---|" * len(columns) + "\n")
    for row in rows:
        f.write("| " + " | ".join(cell(row, c) for c in columns) + " |\n")


def write_table(rows: list[dict], out_dir: str, note: str = "") -> tuple[str, str]:
    columns = list(COLUMNS)
    columns += [c for c in THRESHOLD_COLUMNS if any(c in row for row in rows)]
    csv_path = _write_csv(
        os.path.join(out_dir, "summary.csv"),
        columns,
        rows,
        lambda v: repr(v) if isinstance(v, float) else v,
    )
    md_path = os.path.join(out_dir, "summary.md")
    with open(md_path, "w") as f:
        f.write("# Sweep summary\n\n")
        f.write(
            "final: last evaluation of each seed; auc: average return over training "
            "(area under the curve / actor steps); ci95: half-width of the 95% t-interval "
            "across seeds; learner_updates_mean: updates at each seed's last checkpoint; "
            "wall_hours_mean: hours each seed's learner was up (stopped spans of a resumed "
            "run left out); kl_mean: the learner's KL(pi || pi0) per step in nats, averaged "
            "over each seed's run, then over seeds.\n\n"
        )
        if "threshold" in columns:
            f.write(note)
            f.write(
                "Steps to threshold: actor steps until the curve first reaches the threshold "
                "(reached: how many seeds did; the others are censored at their last step). "
                "km_median_steps: Kaplan-Meier median (inf: fewer than half reached it); "
                "logrank_p: log-rank test against the baseline; km_speedup: baseline's "
                "median / this variant's, with a 95% bootstrap interval over seeds (inf or "
                "0 at an end: the data bound it no further). steps_to_threshold_mean and "
                "speedup count a censored seed at its last step: lower bounds when any "
                "seed is censored.\n\n"
            )
        _write_markdown_rows(f, columns, rows, lambda row, c: _fmt(row.get(c, "")))
    return csv_path, md_path


SEED_METRICS = (*EVALUATOR_METRICS, *ACTOR_METRICS)


def _seed_cell(row: dict, column: str) -> str:
    """A per-seed table cell: returns to 1 decimal, steps as integers, a censored seed's
    steps to threshold as 'censored (<its last step>)'."""
    value = row.get(column, math.nan)
    if column.endswith("_reached_at"):
        metric = column[: -len("_reached_at")]
        if column not in row:
            return "-"
        if math.isnan(value):
            return f"censored ({row.get(metric + '_last_step', math.nan):,.0f})"
        return f"{value:,.0f}"
    if isinstance(value, float) and math.isnan(value):
        return "-"
    if column == "learner_updates":
        return f"{value:,.0f}"
    if isinstance(value, float):
        return f"{value:.2f}" if column in ("wall_hours", "kl_mean") else f"{value:.1f}"
    return str(value)


def write_seed_table(seed_rows: list[dict], out_dir: str) -> tuple[str, str]:
    """report/seeds.csv and seeds.md: one row per seed of every arm (the arms x seeds
    table): each metric's final value and, with a threshold, the actor steps at which it
    was reached (censored: empty in the csv, 'censored (last step)' in the markdown), the
    learner updates and wall hours of the run."""
    columns = ["variant", "seed"]
    for metric in SEED_METRICS:
        columns += [
            c
            for c in (f"{metric}_final", f"{metric}_reached_at", f"{metric}_last_step")
            if any(c in row for row in seed_rows)
        ]
    columns += ["learner_updates", "wall_hours", "kl_mean"]
    csv_path = _write_csv(
        os.path.join(out_dir, "seeds.csv"),
        columns,
        seed_rows,
        lambda v: "" if isinstance(v, float) and math.isnan(v) else v,
    )
    shown = [c for c in columns if not c.endswith("_last_step")]
    md_path = os.path.join(out_dir, "seeds.md")
    with open(md_path, "w") as f:
        f.write("# Every seed\n\n")
        f.write(
            "<metric>_final: the seed's last value; <metric>_reached_at: actor steps at which "
            "it reached the threshold (as in summary.md; censored: never, with its last "
            "step); learner_updates at the last checkpoint; wall_hours the learner was up; "
            "kl_mean the learner's mean KL(pi || pi0) per step, in nats.\n\n"
        )
        _write_markdown_rows(f, shown, seed_rows, _seed_cell)
    return csv_path, md_path


def write_report(
    root: str, threshold: float | None = None, baseline: str | None = None
) -> list[str]:
    """Writes the figures and tables into `root`/report; returns their paths."""
    root = os.path.abspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"no such directory: {root}")
    rows, curves, seed_rows = _summarize(root, threshold, baseline)
    threshold = next((row["threshold"] for row in rows if "threshold" in row), None)
    out_dir = os.path.join(root, REPORT_DIR)
    os.makedirs(out_dir, exist_ok=True)
    written = [
        grid_curves.plot_metric(
            metric, by_variant, os.path.join(out_dir, f"{metric}.png"), threshold
        )
        for metric, by_variant in curves.items()
    ]
    written += list(write_table(rows, out_dir, threshold_note(root, threshold)))
    written += list(write_seed_table(seed_rows, out_dir))
    missing = left_out(root)
    if missing:  # said in both tables, so a reader of either knows the seeds are not all
        line = (
            f"\nLeft out, not finished (no DONE marker): {', '.join(missing)}. Rerun "
            "`bprl report` when they are.\n"
        )
        for name in ("summary.md", "seeds.md"):
            with open(os.path.join(out_dir, name), "a") as f:
                f.write(line)
    return written
