"""`bprl report` on a sweep directory of real TensorBoard event files with known values."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from bprl.launch.rundir import events, progress, report

# pytest-xdist (the default run): these tests stay on one worker, for
# its module fixture.
pytestmark = pytest.mark.xdist_group("test_report")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# variant -> seed -> evaluator curve [(actor steps, policy_return)]; prior = policy / 2
CURVES = {
    "prior_info=proprioception": {
        0: [(0, 1.0), (1000, 3.0), (2000, 5.0)],
        1: [(0, 2.0), (1100, 4.0), (2100, 9.0)],
        2: [(0, 0.0), (900, 2.0), (1900, 7.0)],
    },
    "prior_info=velocity": {
        0: [(0, 10.0), (1000, 20.0)],
        1: [(0, 30.0), (1000, 50.0)],
    },
}


def _write(logdir: str, points, tag: str, scale: float = 1.0) -> None:
    writer = tf.summary.create_file_writer(logdir)
    with writer.as_default():
        for step, value in points:
            tf.summary.scalar(tag, value * scale, step=step)
    writer.close()


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    for variant, seeds in CURVES.items():
        for seed, points in seeds.items():
            run = root / variant / f"seed_{seed}"
            _write(str(run / "evaluator_0"), points, "policy_return")
            _write(str(run / "evaluator_0"), points, "prior_return", scale=0.5)
            _write(str(run / "actors" / "0"), points, "episode_return", scale=2.0)
            (run / "DONE").write_text("{}")
    # an unfinished seed (no DONE marker) is left out of the report
    _write(
        str(root / "prior_info=velocity" / "seed_2" / "evaluator_0"), [(0, 1e6)], "policy_return"
    )
    return str(root)


def test_report_writes_figures_and_tables(sweep_dir):
    result = subprocess.run(
        [sys.executable, "-m", "bprl.launch.cli", "report", sweep_dir],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    # the unfinished seed is left out, and the console and both tables say which it is
    left = "left out, not finished (no DONE marker): prior_info=velocity/seed_2"
    assert left in result.stdout
    out = os.path.join(sweep_dir, "report")
    for name in ("summary.md", "seeds.md"):
        with open(os.path.join(out, name)) as f:
            assert "L" + left[1:] in f.read()
    for name in ("policy_return.png", "prior_return.png", "episode_return.png"):
        with open(os.path.join(out, name), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(os.path.join(out, "summary.csv")) as f:
        rows = {(r["variant"], r["metric"]): r for r in csv.DictReader(f)}
    assert len(rows) == 6
    for variant, seeds in CURVES.items():
        for metric, scale in (("policy_return", 1.0), ("prior_return", 0.5)):
            row = rows[(variant, metric)]
            finals = [points[-1][1] * scale for points in seeds.values()]
            aucs = [
                np.trapz([v * scale for _, v in p], [s for s, _ in p]) / (p[-1][0] - p[0][0])
                for p in seeds.values()
            ]
            assert int(row["seeds"]) == len(seeds)
            assert float(row["final_mean"]) == pytest.approx(np.mean(finals))
            assert float(row["auc_mean"]) == pytest.approx(np.mean(aucs))
            if variant.endswith("velocity"):  # two seeds: t(0.975, 1) * std / sqrt(2)
                assert float(row["final_ci95"]) == pytest.approx(12.706 * 30 * scale / 2, 1e-3)
    with open(os.path.join(out, "summary.md")) as f:
        markdown = f.read()
    assert "| prior_info=velocity | policy_return | 2 | 35.00 |" in markdown


def test_mean_curve_runs_to_the_last_step_with_the_seeds_left_and_a_band_in_range():
    from bprl.launch.rundir import curves as grid_curves

    curves = [
        (np.array([0.0, 1000.0, 2000.0]), np.array([0.0, 10.0, 20.0])),
        (np.array([0.0, 1500.0]), np.array([0.0, 30.0])),
        (np.array([0.0, 1500.0]), np.array([0.0, 0.0])),
    ]
    steps, mean, low, high, count = grid_curves.mean_curve(curves)
    # one grid to the last step any seed reached; past a seed's end, the seeds left
    assert list(steps) == [0.0, 1000.0, 1500.0, 2000.0]
    assert list(count) == [3, 3, 3, 1]
    assert mean == pytest.approx([0.0, (10.0 + 20.0 + 0.0) / 3, (15.0 + 30.0 + 0.0) / 3, 20.0])
    # the band of a non-negative metric stays within the seeds' values (a t-interval
    # at step 1000, mean 10 and sd 10 over 3 seeds, would reach -14.8)
    stacked = np.array([[0, 10, 15, 20], [0, 20, 30, np.nan], [0, 0, 0, np.nan]], float)
    for i in range(len(steps)):
        column = stacked[:, i][~np.isnan(stacked[:, i])]
        assert column.min() - 1e-9 <= low[i] <= mean[i] <= high[i] <= column.max() + 1e-9
    assert low[1] < mean[1] < high[1]
    assert low[3] == high[3] == 20.0  # one seed: no band


def test_report_of_an_empty_directory_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no runs"):
        report.write_report(str(tmp_path))


def test_progress_line_reads_the_event_files(sweep_dir):
    run = os.path.join(sweep_dir, "prior_info=proprioception", "seed_1")
    _write(os.path.join(run, "learner"), [(50, 0.1), (70, 0.2)], "critic_loss")
    state = progress.RunProgress(run, max_actor_steps=4200).poll()
    assert (state.actor_steps, state.learner_steps) == (2100, 70)
    assert state.policy_return == 9.0 and state.prior_return == 4.5
    line = state.line()
    assert "actor 2,100/4,200 (50%)" in line and "learner 70" in line
    assert "eval policy 9.0 prior 4.5" in line


# arm -> seed -> evaluator policy_return curve; threshold 5 is crossed at a known step, or
# never (seed 2 of scratch: counts with its last step)
TRANSFER = {
    "scratch": {
        0: [(0, 0.0), (1000, 2.0), (2000, 4.0), (3000, 6.0), (4000, 7.0)],
        1: [(0, 0.0), (1000, 1.0), (2000, 5.0), (3000, 3.0), (4000, 8.0)],
        2: [(0, 0.0), (1000, 1.0), (2000, 2.0), (3000, 3.0), (4000, 4.0)],
    },
    "frozen": {
        0: [(0, 1.0), (1000, 5.5), (2000, 6.0), (3000, 7.0), (4000, 7.0)],
        1: [(0, 0.0), (1000, 4.0), (2000, 6.0), (3000, 8.0), (4000, 9.0)],
        2: [(0, 6.0), (1000, 7.0), (2000, 7.0), (3000, 8.0), (4000, 9.0)],
    },
}


def _first_crossing(points, threshold):
    """Independent of the report: the step of the first value >= threshold, else the last."""
    for step, value in points:
        if value >= threshold:
            return step, True
    return points[-1][0], False


def test_report_gives_steps_to_threshold_and_speedup(tmp_path):
    root = tmp_path / "transfer"
    for arm, seeds in TRANSFER.items():
        for seed, points in seeds.items():
            run = root / arm / f"seed_{seed}"
            _write(str(run / "evaluator_0"), points, "policy_return")
            (run / "DONE").write_text("{}")
            # the threshold comes from the runs' config when not given on the command line
            (run / "config.json").write_text(
                '{"report": {"threshold": 5.0, "threshold_reason": "half the asymptote"}}'
            )
    result = subprocess.run(
        [sys.executable, "-m", "bprl.launch.cli", "report", str(root)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    with open(root / "report" / "summary.csv") as f:
        rows = {r["variant"]: r for r in csv.DictReader(f) if r["metric"] == "policy_return"}
    steps = {}
    for arm, seeds in TRANSFER.items():
        crossings = [_first_crossing(points, 5.0) for points in seeds.values()]
        steps[arm] = [s for s, _ in crossings]
        row = rows[arm]
        assert float(row["threshold"]) == 5.0
        assert float(row["steps_to_threshold_mean"]) == pytest.approx(np.mean(steps[arm]))
        assert row["reached"] == f"{sum(ok for _, ok in crossings)}/3"
        assert row["baseline"] == "scratch"
    assert rows["scratch"]["reached"] == "2/3"
    expected = np.mean(steps["scratch"]) / np.mean(steps["frozen"])  # (3000+2000+4000)/3 / 1000/3
    assert float(rows["frozen"]["speedup"]) == pytest.approx(expected)
    assert float(rows["scratch"]["speedup"]) == pytest.approx(1.0)
    low, high = float(rows["frozen"]["speedup_ci_low"]), float(rows["frozen"]["speedup_ci_high"])
    assert low <= expected <= high and low > 1.0
    summary = (root / "report" / "summary.md").read_text()
    assert "Threshold 5, declared in the runs' config before they ran: half the asymptote" in (
        summary
    )
    # the arms x seeds table: each seed's final value and its crossing, or censored
    with open(root / "report" / "seeds.csv") as f:
        seed_rows = {(r["variant"], r["seed"]): r for r in csv.DictReader(f)}
    assert len(seed_rows) == 6
    seeds_md = (root / "report" / "seeds.md").read_text()
    for arm, seeds in TRANSFER.items():
        for seed, points in seeds.items():
            row = seed_rows[(arm, f"seed_{seed}")]
            assert float(row["policy_return_final"]) == points[-1][1]
            step, ok = _first_crossing(points, 5.0)
            assert row["policy_return_reached_at"] == (str(float(step)) if ok else "")
            cell = f"{step:,}" if ok else f"censored ({step:,})"
            assert f"| {arm} | seed_{seed} | {points[-1][1]:.1f} | {cell} |" in seeds_md
    report.write_report(str(root), threshold=8.0)
    summary = (root / "report" / "summary.md").read_text()
    assert "Threshold 8: given on the command line" in summary and "asymptote" not in summary
    with open(root / "report" / "policy_return.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    # a threshold on the command line wins over the configs'
    rows, _ = report.summarize(str(root), threshold=8.0)
    frozen = next(r for r in rows if r["variant"] == "frozen" and r["metric"] == "policy_return")
    assert frozen["steps_to_threshold_mean"] == pytest.approx((4000 + 3000 + 3000) / 3)


def test_steps_to_threshold_with_a_moving_average():
    steps = np.array([0.0, 1.0, 2.0, 3.0])
    values = np.array([0.0, 10.0, 0.0, 10.0])
    assert report.steps_to_threshold(steps, values, 10.0) == (1.0, True)
    # averaged over full windows of 2 points the curve is 5, 5, 5 at steps 1, 2, 3
    assert report.steps_to_threshold(steps, values, 10.0, window=2) == (3.0, False)
    assert report.steps_to_threshold(steps, values, 5.0, window=2) == (1.0, True)


def test_one_lucky_early_episode_does_not_reach_the_threshold():
    """A partial window at the start would average the first episode alone."""
    steps = np.arange(30, dtype=float) * 100
    values = np.array([50.0] + [1.0] * 29)
    assert report.steps_to_threshold(steps, values, 10.0, window=20) == (2900.0, False)
    # an independent trailing mean over the full windows, first crossing
    values = np.array([50.0] + [1.0] * 9 + [20.0] * 20)
    means = [np.mean(values[i - 19 : i + 1]) for i in range(19, 30)]
    first = next(i for i, m in zip(range(19, 30), means, strict=True) if m >= 10.0)
    assert report.steps_to_threshold(steps, values, 10.0, window=20) == (steps[first], True)


def _km_by_hand(times, reached):
    """Independent of launch/rundir/survival.py: the product-limit estimate walked seed by
    seed in time order (ties: events before censorings), and its median."""
    order = sorted(zip(times, reached, strict=True), key=lambda p: (p[0], not p[1]))
    at_risk, s = len(order), 1.0
    for t, hit in order:
        if hit:
            s *= (at_risk - 1) / at_risk
            if s <= 0.5 + 1e-12:
                return t
        at_risk -= 1
    return float("inf")


def test_censored_seeds_give_a_kaplan_meier_median_and_a_log_rank_test(tmp_path):
    from scipy import stats

    from bprl.launch.rundir import survival

    root = tmp_path / "transfer"
    for arm, seeds in TRANSFER.items():
        for seed, points in seeds.items():
            _write(str(root / arm / f"seed_{seed}" / "evaluator_0"), points, "policy_return")
    rows, _ = report.summarize(str(root), threshold=5.0)
    rows = {r["variant"]: r for r in rows if r["metric"] == "policy_return"}
    data = {}
    for arm, seeds in TRANSFER.items():
        crossings = [_first_crossing(points, 5.0) for points in seeds.values()]
        data[arm] = ([s for s, _ in crossings], [ok for _, ok in crossings])
        assert rows[arm]["km_median_steps"] == _km_by_hand(*data[arm])
    # scratch: 2000, 3000 and one censored at 4000 -> median 3000; frozen: 0, 1000, 2000
    assert rows["scratch"]["km_median_steps"] == 3000 and rows["frozen"]["km_median_steps"] == 1000
    assert rows["frozen"]["km_speedup"] == pytest.approx(3.0)
    low, high = rows["frozen"]["km_speedup_ci_low"], rows["frozen"]["km_speedup_ci_high"]
    assert low <= 3.0 <= high
    # the log-rank statistic by hand: at each event time, observed minus expected for
    # frozen and the hypergeometric variance
    (ts, es), (tf_, ef) = data["scratch"], data["frozen"]
    everyone = [(t, e, 0) for t, e in zip(ts, es, strict=True)] + [
        (t, e, 1) for t, e in zip(tf_, ef, strict=True)
    ]
    o_minus_e = var = 0.0
    for t in sorted({t for t, e, _ in everyone if e}):
        risk = [g for u, _, g in everyone if u >= t]
        deaths = [g for u, e, g in everyone if u == t and e]
        n, n1, d = len(risk), sum(risk), len(deaths)
        o_minus_e += sum(deaths) - d * n1 / n
        var += d * (n1 / n) * (1 - n1 / n) * (n - d) / (n - 1)
    expected_p = stats.chi2.sf(o_minus_e**2 / var, 1)
    assert rows["frozen"]["logrank_p"] == pytest.approx(expected_p)
    assert survival.logrank_p(*data["scratch"], *data["scratch"]) == pytest.approx(1.0)
    # an arm where fewer than half reach it: an infinite median, an open-ended ratio
    never = ([4000, 4000, 4000], [False, False, True])
    assert survival.km_median(*never) == float("inf")
    point, low, high = survival.median_ratio(never, data["frozen"])
    assert point == float("inf") and high == float("inf")


def test_grouped_and_flat_tag_names_read_alike(tmp_path):
    """A run written with grouped tags (every node on the actor-step axis) and one written
    before (flat names, the learner on its own steps) give the same curves, progress and
    report (launch/rundir/events.py maps the names)."""
    for kind in ("flat", "grouped"):
        run = tmp_path / kind
        learner, evaluator = str(run / "learner"), str(run / "evaluator_0")
        if kind == "flat":  # learner step = learner steps
            _write(learner, [(50, 50.0), (70, 70.0)], "learner_steps")
            _write(learner, [(50, 900.0), (70, 1000.0)], "actor_steps")
            _write(evaluator, [(0, 1.0), (1000, 3.0)], "policy_return")
            _write(str(run / "actors" / "0"), [(1000, 2.0)], "episode_return")
        else:  # step = actor steps everywhere
            _write(learner, [(900, 50.0), (1000, 70.0)], "counts/learner_steps")
            _write(learner, [(900, 900.0), (1000, 1000.0)], "counts/actor_steps")
            _write(evaluator, [(0, 1.0), (1000, 3.0)], "eval/policy_return")
            _write(str(run / "actors" / "0"), [(1000, 2.0)], "actor/episode_return")
        (run / "config.json").write_text("{}")

        assert events.read_scalars(evaluator)["policy_return"] == [(0, 1.0), (1000, 3.0)]
        assert events.read_scalars(learner)["learner_steps"][-1] == (
            70 if kind == "flat" else 1000,
            70.0,
        )
        state = progress.RunProgress(str(run)).poll()
        assert (state.actor_steps, state.learner_steps, state.policy_return) == (1000, 70, 3.0)
        rows, _ = report.summarize(str(run))
        finals = {row["metric"]: row["final_mean"] for row in rows}
        assert finals == {"policy_return": 3.0, "episode_return": 2.0}


def _learner_events(logdir: str, wall_times: list[float], kl: list[float] = ()) -> None:
    """A learner event file whose events carry the given wall-clock times (and, where
    given, the learner's KL(pi || pi0) of each event)."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(logdir)
    for step, wall in enumerate(wall_times):
        values = [summary_pb2.Summary.Value(tag="learner/critic_loss", simple_value=1.0)]
        if kl:
            values.append(
                summary_pb2.Summary.Value(
                    tag=events.tag_for("kl_policy_prior", "learner"), simple_value=kl[step]
                )
            )
        writer.add_event(
            event_pb2.Event(wall_time=wall, step=step, summary=summary_pb2.Summary(value=values))
        )
    writer.close()


def test_each_arm_says_the_updates_wall_time_and_kl_of_its_runs(tmp_path):
    """Learner updates from the checkpoint record; wall hours from the learner's events,
    a silence longer than run_cost.ACTIVE_GAP_SECONDS (a stopped run resumed later) left
    out; the mean KL(pi || pi0) the learner logged, per seed then over seeds."""
    import json

    from bprl.launch.rundir import checkpoint_record, run_cost

    root = tmp_path / "arm"
    walls = {
        0: [1000.0, 1010.0, 1020.0, 9000.0, 9030.0],  # 10 + 10 + 30 s up; 7,980 s stopped
        1: [50.0, 150.0],  # 100 s
    }
    kls = {0: [0.1, 0.2, 0.3, 0.4, 0.5], 1: [0.6, 1.0]}  # means 0.3 and 0.8
    for seed, times in walls.items():
        run = root / f"seed_{seed}"
        _write(str(run / "evaluator_0"), [(0, 1.0), (100, 2.0)], "policy_return")
        kl = kls[seed]
        _learner_events(str(run / "learner"), times[:2], kl[:2])
        _learner_events(str(run / "learner"), times[2:], kl[2:])  # a second file: resumed
        path = checkpoint_record.counts_path(str(run))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump({"learner": "x", "counts": {"learner_steps": 1000 * (seed + 1)}}, f)
        (run / "DONE").write_text("{}")
    learner = {k: run_cost.learner_events(str(root / f"seed_{k}")) for k in (0, 1)}
    assert run_cost.hours_up(learner[0]) == pytest.approx(50 / 3600)
    assert run_cost.hours_up(learner[1]) == pytest.approx(100 / 3600)
    rows, _ = report.summarize(str(root))
    row = next(r for r in rows if r["metric"] == "policy_return")
    assert row["learner_updates_mean"] == pytest.approx(1500.0)
    assert row["wall_hours_mean"] == pytest.approx(75 / 3600)
    # The KL of each seed over both its files, then the mean over seeds (not over values,
    # which would give 3.1 / 7).
    assert report.learner_mean(learner[0], "kl_policy_prior") == pytest.approx(0.3)
    assert report.learner_mean(learner[1], "kl_policy_prior") == pytest.approx(0.8)
    assert row["kl_mean"] == pytest.approx(0.55)
    assert np.isnan(report.learner_mean(learner[0], "no_such_scalar"))
    assert np.isnan(run_cost.learner_updates(str(tmp_path)))  # no checkpoint: unknown


def test_an_arm_of_links_to_other_sweeps_seeds(tmp_path):
    """An arm made of `seed_<k>` links to runs of other sweeps (two source priors' frozen
    sweeps as one arm) reads as those seeds; a dangling link (a seed not started yet) and a
    file of that name are not seeds."""
    elsewhere = tmp_path / "elsewhere"
    for seed, points in TRANSFER["frozen"].items():
        _write(
            str(elsewhere / f"sweep_{seed}" / f"seed_{seed}" / "evaluator_0"),
            points,
            "policy_return",
        )
    arm = tmp_path / "pair" / "frozen"
    arm.mkdir(parents=True)
    for seed in TRANSFER["frozen"]:
        os.symlink(elsewhere / f"sweep_{seed}" / f"seed_{seed}", arm / f"seed_{seed}")
    os.symlink(elsewhere / "missing" / "seed_7", arm / "seed_7")
    (arm / "seed_8").write_text("not a run")
    rows, _ = report.summarize(str(tmp_path / "pair"), threshold=5.0)
    (row,) = [r for r in rows if r["metric"] == "policy_return"]
    assert row["variant"] == "frozen" and row["seeds"] == 3 and row["reached"] == "3/3"
    finals = [points[-1][1] for points in TRANSFER["frozen"].values()]
    assert row["final_mean"] == pytest.approx(np.mean(finals))
    report.write_report(str(tmp_path / "pair"), threshold=5.0)
    with open(tmp_path / "pair" / "report" / "seeds.csv") as f:
        assert [r["seed"] for r in csv.DictReader(f)] == ["seed_0", "seed_1", "seed_2"]
