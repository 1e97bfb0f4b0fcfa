"""One run's throughput under settings that change no result, side by side (issue 30, part 3).

Usage:
  python benchmarks/single_run.py [--config experiments/configs/seqnav_pointmass.py:local_short]
      [--variant NAME=key=value[,key=value] ...] [--rounds 2] [--system-steps 150000]

Each round runs `bprl run` once per variant (Launchpad local_mp, the config's actors),
alternating variants, and reads actor steps/s, learner updates/s, the achieved samples per
insert and the cores each role used from the learner's and actors' TensorBoard events
(`benchmarks/system_bench.py`). The run is learner-bound when the achieved samples per insert
sits at the config's: actor steps/s then follow the learner's updates/s. Only settings that
leave the learning rule and the data unchanged belong here (threads, kernels, calls).
The default variants: the settings before issue 30 part 3 (the learner on all cores, the
critic one sample set at a time) against today's defaults.
"""

from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks import machine, system_bench  # noqa: E402

DEFAULT_VARIANTS = (  # the defaults before issue 30 part 3, then today's
    "before=resources.learner_threads=-1,resources.critic_one_pass_bytes=0",
    "defaults=",
)


def parse_variant(text: str) -> tuple[str, tuple[str, ...]]:
    """ "NAME=key=value,key=value" -> (NAME, ("key=value", ...)); "NAME=" has none."""
    name, _, overrides = text.partition("=")
    if not name:
        raise ValueError(f"a variant needs a name: {text!r}")
    return name, tuple(item for item in overrides.split(",") if item)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/configs/seqnav_pointmass.py:local_short")
    parser.add_argument("--variant", action="append", default=[], help="NAME=key=value,...")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--system-steps", type=int, default=150_000, help="max_actor_steps")
    parser.add_argument("--system-log-every", type=int, default=100, help="learner log period")
    parser.add_argument("--system-timeout", type=int, default=1200, help="seconds per run")
    parser.add_argument("--adder", default="fast", choices=("fast", "acme"))
    parser.add_argument("--keep-workdirs", action="store_true")
    parser.add_argument("--out", default=None)
    parser.add_argument("--markdown", default=None)
    return parser.parse_args(argv)


KEYS = (
    "actor_steps_per_s",
    "learner_updates_per_s",
    "samples_per_insert",
    "learner_cores",
    "actor_cores",
)


def table(report: dict) -> str:
    lines = [
        "| variant | round | " + " | ".join(KEYS) + " |",
        "|---|---|" + "---|" * len(KEYS),
    ]
    for name, runs in report["variants"].items():
        for i, run in enumerate(runs):
            cells = [f"{run[k]:.2f}" if isinstance(run.get(k), float) else "-" for k in KEYS]
            lines.append(f"| {name} | {i} | " + " | ".join(cells) + " |")
    first = next(iter(report["ratios"]), None)
    for name, ratio in report["ratios"].items():
        lines.append(f"\n{name} / {first}: actor steps/s x{ratio:.2f} (mean over rounds)")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    args = parse_args(argv)
    variants = dict(parse_variant(v) for v in (args.variant or DEFAULT_VARIANTS))
    report = machine.report_header(argv, args)
    report["variants"] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, overrides in variants.items():
            result = system_bench.bench_system(None, args, args.config, overrides)
            report["variants"][name].append(result)
            rate = result.get("actor_steps_per_s", float("nan"))
            print(f"{name}: {rate:.0f} actor steps/s", result.get("error", ""), flush=True)

    def mean_rate(runs):
        rates = [r["actor_steps_per_s"] for r in runs if "actor_steps_per_s" in r]
        return sum(rates) / len(rates) if rates else float("nan")

    base = mean_rate(next(iter(report["variants"].values())))
    report["ratios"] = {
        n: mean_rate(runs) / base if base > 0 else float("nan")
        for n, runs in report["variants"].items()
    }
    text = table(report)
    print(text)
    path = machine.write_outputs(report, text, args.out, args.markdown, ROOT, "single_run")
    print("wrote", path)


if __name__ == "__main__":
    main()
