"""What a chaos soak (benchmarks/chaos.py) reads back from a run directory, and its
markdown table: the checkpoint records' counts, restarts.jsonl, the final evaluation
return, and the faults, their summary by kind, memory over time and the returns.

Apart from the soak's loop (benchmarks/chaos_soak.py): it only reads files and formats.
"""

from __future__ import annotations

import json
import statistics

from bprl.launch.rundir import checkpoint_record, layout


def read_json_lines(path: str) -> list[dict]:
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError):
        return []


def record_counts(workdir: str) -> dict | None:
    """The newest complete checkpoint record's counts and time, if any."""
    record = checkpoint_record.load_record(checkpoint_record.counts_path(workdir))
    return None if record is None else {**record.get("counts", {}), "time": record.get("time")}


def final_return(workdir: str) -> dict:
    """The last evaluation of the run (policy and prior alone), and the mean of the last 3."""
    from bprl.launch.rundir import events

    points = []
    for directory in layout.evaluator_dirs(workdir):
        curves = events.read_events(directory)
        for (_, step, policy), (_, _, prior) in zip(
            curves.get("policy_return", []), curves.get("prior_return", []), strict=False
        ):
            points.append((step, policy, prior))
    points.sort()
    if not points:
        return {"policy_return": None, "prior_return": None, "evaluations": 0}
    last = points[-3:]
    return {
        "policy_return": points[-1][1],
        "prior_return": points[-1][2],
        "policy_return_last3": statistics.mean(p for _, p, _ in last),
        "at_actor_steps": points[-1][0],
        "evaluations": len(points),
    }


def _median(values):
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 1) if values else None


def markdown(report: dict) -> str:
    chaos = report["chaos"]
    lines = [
        f"# Chaos soak: {report['settings']['config']}",
        "",
        f"{len(chaos['faults'])} faults in {chaos['wall_s'] / 60:.1f} min, exit code "
        f"{chaos['exit_code']}; counts never backwards: {chaos['counts_never_backwards']}; "
        f"processes left behind: {chaos['left_behind']}.",
        "",
        "| # | t (s) | target | signal | handled by | detected (s) | recovered (s) | "
        "caught up (s) | learner steps lost | actor steps lost | replay items lost |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for f in chaos["faults"]:
        cells = [
            f["n"],
            f["t"],
            f"{f['node']} ({f['process']})",
            f["signal"],
            f.get("how", "-") + (" (not recovered)" if f.get("not_recovered") else ""),
            f.get("detected_after_s"),
            f.get("recovered_after_s"),
            f.get("caught_up_after_s"),
            f.get("learner_steps_lost"),
            f.get("actor_steps_lost"),
            f.get("replay_items_lost"),
        ]
        lines.append("| " + " | ".join("-" if c is None else str(c) for c in cells) + " |")
    lines += [
        "",
        "| kind | faults | median detected (s) | median recovered (s) | learner steps lost | "
        "replay items lost |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    kinds: dict[str, list[dict]] = {}
    for f in chaos["faults"]:
        kinds.setdefault(f"{f['target']} {f['signal']}", []).append(f)
    for kind, faults in sorted(kinds.items()):
        lost = [
            f.get("learner_steps_lost") for f in faults if f.get("learner_steps_lost") is not None
        ]
        items = [
            f.get("replay_items_lost") for f in faults if f.get("replay_items_lost") is not None
        ]
        lines.append(
            f"| {kind} | {len(faults)} | {_median([f.get('detected_after_s') for f in faults])} | "
            f"{_median([f.get('recovered_after_s') for f in faults])} | "
            f"{sum(lost) if lost else '-'} | {sum(items) if items else '-'} |"
        )
    samples = chaos["samples"]
    if samples:
        lines += [
            "",
            "| t (min) | processes | RSS (GiB) | actor steps | learner steps | replay items |",
        ]
        lines.append("| --- | --- | --- | --- | --- | --- |")
        step = max(1, len(samples) // 20)
        for s in samples[::step]:
            cells = [
                f"{s['t'] / 60:.1f}",
                s["processes"],
                s["rss_gib"],
                s["actor_steps"],
                s["learner_steps"],
                s["replay_items"],
            ]
            lines.append("| " + " | ".join("-" if c is None else str(c) for c in cells) + " |")
    final, base = chaos["final"], report.get("baseline")
    lines += [
        "",
        f"Final policy return (soak): {final.get('policy_return')} "
        f"(mean of the last 3: {final.get('policy_return_last3')}).",
    ]
    if base:
        b = base["final"]
        lines.append(
            f"Undisturbed run, same seed: {b.get('policy_return')} (mean of the last 3: "
            f"{b.get('policy_return_last3')}), {base['wall_s'] / 60:.1f} min."
        )
    return "\n".join(lines) + "\n"


def plot(report: dict, path: str) -> str:
    """Summed RSS and process count of the run over the soak, a vertical line per fault."""
    from bprl.launch.rundir import plots

    samples = report["chaos"]["samples"]
    minutes = [s["t"] / 60 for s in samples]
    fig, ax = plots.new_figure()
    ax.plot(minutes, [s["rss_gib"] for s in samples], label="RSS of the run (GiB)")
    right = ax.twinx()
    right.plot(minutes, [s["processes"] for s in samples], color="gray", label="processes")
    right.set_ylabel("processes")
    right.set_ylim(bottom=0)
    ax.set_ylim(bottom=0)
    for f in report["chaos"]["faults"]:
        ax.axvline(f["t"] / 60, color="red", alpha=0.3, linewidth=1)
    ax.plot([], [], color="gray", label="processes (right axis)")
    ax.plot([], [], color="red", alpha=0.3, label="a fault")
    title = f"Chaos soak: memory and processes ({len(report['chaos']['faults'])} faults)"
    return plots.save_figure(fig, ax, path, title, "GiB", xlabel="minutes")


if __name__ == "__main__":  # python benchmarks/chaos_report.py CHAOS.json: the .md and .png
    import os
    import sys

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(sys.argv[1]) as f:
        loaded = json.load(f)
    stem = os.path.splitext(sys.argv[1])[0]
    with open(stem + ".md", "w") as f:
        f.write(markdown(loaded))
    print(plot(loaded, stem + ".png"))
