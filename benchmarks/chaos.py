"""Chaos soak (issue 31, part 3): a local run whose nodes are killed or stopped at random,
and what it cost. Run on purpose, not a test (a soak is 30 minutes or more).

Usage:
  python benchmarks/chaos.py [--config experiments/configs/point_mass_right.py:local_short]
      [--every-minutes 3] [--faults 0] [--targets learner,replay,counter,actor,evaluator,stopper]
      [--signals SIGKILL,SIGSTOP] [--seed 0] [--no-baseline] [--workdir DIR]
      [--override stop.max_actor_steps=150000 ...] [--out chaos.json] [--markdown chaos.md]

`local_short` ends at 20,000 actor steps (~5 minutes on 2 cores): for a 30-minute soak
raise its budget, e.g. `--override stop.max_actor_steps=150000`.

1. `bprl run` of the config starts (restart budget `--max-restarts`, back-off
   `--restart-backoff-secs`, checkpoints every `--checkpoint-secs`, the hang bound of the
   config unless `--hang-timeout-secs`), its console captured line by line with times.
2. Every `--every-minutes` (counted from the previous fault, and never before the
   program is back up: every node alive and the learner stepping again), one target is
   drawn (`--seed`): learner, replay, counter, an actor node's worker process
   (`actor`), an evaluator, the stopper; and a signal: SIGKILL or SIGSTOP. Nothing is
   ever continued: a stopped process is for the launcher's liveness watch to find.
3. Per fault: the time to detection (the launcher's first console line after it; for
   a killed actor worker, its replacement's start) and to recovery (the program's
   learner stepping again after the restart; for a worker, its streams stepping again),
   and to catching up (learner steps back where they were); the learner and actor steps
   lost (restarts.jsonl) and the replay items lost (the replay's size before the fault
   against its size when it first answers after it).
4. Every `--sample-secs`: the run's process count and summed RSS (launcher and every
   descendant), the counter's counts and the replay's size. With `--network=host` (the
   default) the counter and the replay are probed directly (their ports are on every
   interface of this machine while the soak runs); with `isolated` only the files are
   read (counts from the checkpoint records, no replay size).
5. Counts never going backwards: every checkpoint record's counts are at least the
   previous record's, and the live counts never fall below the newest record's.
6. Unless `--no-baseline`: the same command (same seed) with no fault, and its final
   evaluation return beside the soak's (runs are asynchronous: not bit-identical).
The JSON report (`--out`) holds all of it; `--markdown` a table of the faults, a summary
by kind, the memory and process count over time and the returns.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks import machine  # noqa: E402
from benchmarks.chaos_report import final_return, markdown, plot  # noqa: E402
from benchmarks.chaos_run import run_command  # noqa: E402
from benchmarks.chaos_soak import Soak  # noqa: E402

TARGETS = ("learner", "replay", "counter", "actor", "evaluator", "stopper")
SIGNALS = ("SIGKILL", "SIGSTOP")


def baseline(args: argparse.Namespace, workdir: str) -> dict:
    """The same run with no fault: its final return and wall time."""
    started = time.time()
    command = run_command(args, workdir, chaos=False)
    with open(f"{workdir}.console.log", "w") as log:
        code = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode
    return {
        "command": " ".join(command),
        "exit_code": code,
        "wall_s": round(time.time() - started, 1),
        "final": final_return(workdir),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="experiments/configs/point_mass_right.py:local_short")
    parser.add_argument("--workdir", default="", help="run directory (default: a temporary one)")
    parser.add_argument("--every-minutes", type=float, default=3.0)
    parser.add_argument("--faults", type=int, default=0, help="at most this many (0: no limit)")
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--signals", default=",".join(SIGNALS))
    parser.add_argument("--seed", type=int, default=0, help="of the draws (not the run's)")
    parser.add_argument("--network", choices=["host", "isolated"], default="host")
    parser.add_argument("--checkpoint-secs", type=float, default=60.0)
    parser.add_argument("--max-restarts", type=int, default=1000)
    parser.add_argument("--restart-backoff-secs", type=float, default=10.0)
    parser.add_argument("--hang-timeout-secs", type=float, default=0.0, help="0: the config's")
    parser.add_argument("--sample-secs", type=float, default=5.0)
    parser.add_argument("--recovery-timeout-secs", type=float, default=900.0)
    parser.add_argument("--override", action="append", default=[], help="key=value (config)")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--out", default="", help="JSON report")
    parser.add_argument("--markdown", default="", help="markdown table (default: OUT .md)")
    args = parser.parse_args(argv)
    args.targets = [t for t in args.targets.split(",") if t]
    args.signals = [s for s in args.signals.split(",") if s]
    for target in args.targets:
        if target not in TARGETS:
            parser.error(f"unknown target {target!r}; use some of {', '.join(TARGETS)}")
    for sig in args.signals:
        if sig not in SIGNALS:
            parser.error(f"unknown signal {sig!r}; use some of {', '.join(SIGNALS)}")
    return args


def _stop_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM ends the soak like Ctrl-C: the run under way is stopped, none is orphaned."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    root = args.workdir or tempfile.mkdtemp(prefix="bprl_chaos_")
    os.makedirs(root, exist_ok=True)
    workdir = os.path.join(os.path.abspath(root), "chaos")
    if os.path.exists(workdir):
        shutil.rmtree(workdir)
    report = machine.report_header(argv, args)
    report["chaos"] = Soak(args, workdir).run()
    if not args.no_baseline:
        report["baseline"] = baseline(args, os.path.join(os.path.abspath(root), "baseline"))
    report["uptime_end"] = machine.uptime()
    table = markdown(report)
    path = machine.write_outputs(report, table, args.out, args.markdown, root, "chaos")
    if report["chaos"]["samples"]:
        plot(report, os.path.splitext(path)[0] + ".png")
    print(table)
    return 0 if report["chaos"]["exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
