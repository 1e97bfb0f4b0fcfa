"""The whole system beside Acme's own distributed agent: 1, 4 and 32 actors (issue 18).

Usage:
  python benchmarks/system_vs_acme.py [--actors 1,4,32] [--window 90] [--out FILE.json]

For each number of actors, ours and then Acme's `DistributedSVG0` (the installed package,
started by benchmarks/acme_program.py), one after the other in this process, on the same
task (walker_walk), network sizes (Acme's `make_network_with_prior` widths), batch (256),
sequence length (T = 10), samples per insert (32), minimum replay size (1,000 items) and
number of actor streams. Ours is `bprl run` with its default packing for this machine
(`actors.envs_per_process = 0`). For each program:
  1. launch; the time until every actor has inserted its first sequence (ours: each
     stream's "first sequence inserted" log line, `launch.layout.inserted_streams`;
     Acme's: each actor's mark at its (T+1)-th environment step, by which its
     SequenceAdder has created its first item);
  2. the time until the learner's first update;
  3. from then, a `--window` of seconds: aggregate actor steps/s and learner updates/s
     (ours: the learner's TensorBoard events; Acme's: its counter's learner steps and
     Reverb's inserted items x T, polled once a second; see `counts`) and the samples per
     insert achieved (batch x updates over actor steps / T; Acme's also from Reverb's own
     sample and insert counts);
  4. all along, the PSS of every process of the program (the launcher and all its
     descendants, /proc/<pid>/smaps_rollup), the largest total, split by role;
  5. SIGTERM to the launcher; the time until every process is gone.
Acme's program is run as Acme builds it, evaluator included (its evaluator runs episodes
without pause; ours evaluates every `evaluators.every_actor_steps`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
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

from benchmarks import machine, memory  # noqa: E402
from benchmarks.common import CRITIC_HIDDEN, POLICY_HIDDEN, PRIOR_HIDDEN  # noqa: E402

SIDES = ("ours", "acme")


def _widths(sizes) -> str:
    return ",".join(str(s) for s in sizes)


def command(side: str, actors: int, workdir: str, args: argparse.Namespace) -> list[str]:
    """The command line that starts one side's program."""
    if side == "ours":
        return [
            os.path.join(os.path.dirname(sys.executable), "bprl"),
            "run",
            f"--config={os.path.join(ROOT, 'experiments/configs/walker_walk.py')}",
            f"--config.actors.num_actors={actors}",
            f"--config.actors.envs_per_process={args.envs_per_process}",
            f"--config.network.policy_hidden=({_widths(POLICY_HIDDEN)})",
            f"--config.network.prior_hidden=({_widths(PRIOR_HIDDEN)})",
            f"--config.network.critic_hidden=({_widths(CRITIC_HIDDEN)})",
            f"--config.replay.batch_size={args.batch_size}",
            f"--config.replay.sequence_length={args.sequence_length}",
            f"--config.replay.samples_per_insert={args.samples_per_insert}",
            f"--config.replay.min_size={args.min_replay_size}",
            "--config.stop.max_actor_steps=1000000000",
            "--config.logging.learner_every_steps=10",
            f"--config.resources.learner_kernels={args.learner_kernels}",
            f"--workdir={workdir}",
        ]
    return [
        sys.executable,
        os.path.join(ROOT, "benchmarks", "acme_program.py"),
        "--task=walker_walk",
        f"--num_actors={actors}",
        f"--batch_size={args.batch_size}",
        f"--sequence_length={args.sequence_length}",
        f"--samples_per_insert={args.samples_per_insert}",
        f"--min_replay_size={args.min_replay_size}",
        f"--policy_hidden={_widths(POLICY_HIDDEN)}",
        f"--prior_hidden={_widths(PRIOR_HIDDEN)}",
        f"--critic_hidden={_widths(CRITIC_HIDDEN)}",
        "--prior_info=proprioception",
        f"--workdir={workdir}",
    ]


def inserted(side: str, workdir: str) -> int:
    """How many actor streams have inserted their first sequence so far."""
    if side == "ours":
        from bprl.launch.rundir import layout

        return len(layout.inserted_streams(workdir))
    marks = os.path.join(workdir, "first_insert")
    return len(os.listdir(marks)) if os.path.isdir(marks) else 0


def counts(side: str, workdir: str, sequence_length: int) -> list[tuple[float, int, int]]:
    """(wall time, actor steps, learner steps) points, oldest first.

    Ours: the learner's TensorBoard events (both counts, from the shared counter). Acme's:
    its learner's count from the counter node, and actor steps as Reverb's inserted items
    x T (its adder writes an item every T steps, across episode ends): Acme's environment
    loop adds an actor's steps to the counter only when an episode ends (1,000 steps on
    walker), too coarse for a rate over a minute or two."""
    if side == "ours":
        from benchmarks.system_bench import learner_events

        return [(wall, actor, learner) for wall, learner, actor in learner_events(workdir)]
    return [
        (r["time"], r["inserted"] * sequence_length, int(r["counts"].get("learner_steps", 0)))
        for r in probe_records(workdir)
        if "counts" in r
    ]


def probe_records(workdir: str) -> list[dict]:
    """Acme's side: the probe's lines that hold Reverb's counts (benchmarks/acme_program.py),
    oldest first; a line still being written is skipped."""
    path = os.path.join(workdir, "probe.jsonl")
    records = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    if "inserted" in record:
                        records.append(record)
    return records


def reverb_ratio(workdir: str, start: float, end: float) -> float | None:
    """Acme's side: sampled over inserted items in [start, end], Reverb's own counts."""
    rows = [r for r in probe_records(workdir) if start <= r["time"] <= end]
    if len(rows) < 2 or rows[-1]["inserted"] == rows[0]["inserted"]:
        return None
    return (rows[-1]["sampled"] - rows[0]["sampled"]) / (rows[-1]["inserted"] - rows[0]["inserted"])


def rates(points, start: float, end: float, args) -> dict:
    """Aggregate rates between the first and last points in [start, end]."""
    window = [p for p in points if start <= p[0] <= end]
    if len(window) < 2 or window[-1][0] - window[0][0] < 1.0:
        return {"rates_error": f"{len(window)} count points in the window"}
    (t0, a0, l0), (t1, a1, l1) = window[0], window[-1]
    span = t1 - t0
    items = (a1 - a0) / args.sequence_length
    return {
        "measured_span_s": round(span, 1),
        "actor_steps_per_s": round((a1 - a0) / span, 1),
        "learner_updates_per_s": round((l1 - l0) / span, 3),
        "samples_per_insert": round((l1 - l0) * args.batch_size / items, 2) if items else None,
    }


def run_side(side: str, actors: int, args: argparse.Namespace) -> dict:
    """One program: launch, first inserts, first update, a measured window, SIGTERM."""
    import psutil

    result: dict = {
        "side": side,
        "actors": actors,
        "load_before": machine.loadavg(),
        "available_gib_before": round(psutil.virtual_memory().available / 2**30, 2),
    }
    needed = args.gib_per_process * (actors + 4)  # a process per actor stream at worst
    if side == "acme" and needed > 0.9 * psutil.virtual_memory().available / 2**30:
        result["skipped"] = f"needs ~{needed:.1f} GiB; {result['available_gib_before']} free"
        return result
    workdir = tempfile.mkdtemp(prefix=f"bprl_vs_acme_{side}_{actors}_")
    cmd = command(side, actors, workdir, args)
    result["command"] = " ".join(cmd)
    env = dict(os.environ, PYTHONPATH=ROOT)
    log = open(os.path.join(workdir, "launcher.log"), "w")
    started = time.time()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    peak: dict = {}

    def sample_memory():
        nonlocal peak
        sample = memory.program_pss(proc.pid)
        if sample.get("total_gib", 0.0) > peak.get("total_gib", 0.0):
            peak = sample

    def wait_until(condition, deadline: float) -> float | None:
        last_sample = 0.0
        while time.time() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{side} exited early with code {proc.returncode}")
            if condition():
                return time.time()
            if time.time() - last_sample >= 2.0:
                sample_memory()
                last_sample = time.time()
            time.sleep(0.25)
        return None

    try:
        deadline = started + args.timeout
        all_in = wait_until(lambda: inserted(side, workdir) >= actors, deadline)
        result["streams_inserted"] = inserted(side, workdir)
        result["all_inserted_s"] = None if all_in is None else round(all_in - started, 1)
        first_update = wait_until(
            lambda: any(p[2] > 0 for p in counts(side, workdir, args.sequence_length)), deadline
        )
        result["first_update_s"] = (
            None if first_update is None else round(first_update - started, 1)
        )
        if first_update is not None:
            window_start = max(first_update, all_in or first_update)
            wait_until(lambda: time.time() >= window_start + args.window, deadline + args.window)
            window_end = time.time()
            result.update(
                rates(counts(side, workdir, args.sequence_length), window_start, window_end, args)
            )
            if side == "acme":
                ratio = reverb_ratio(workdir, window_start, window_end)
                result["reverb_samples_per_insert"] = None if ratio is None else round(ratio, 2)
        else:
            result["error"] = f"no learner update within {args.timeout} s"
    except RuntimeError as error:
        result["error"] = str(error)
    finally:
        result.update({k: round(v, 3) if isinstance(v, float) else v for k, v in peak.items()})
        tree = [proc.pid]
        with contextlib.suppress(psutil.Error):
            tree = [proc.pid] + [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        stop = time.time()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=120)
        while any(psutil.pid_exists(pid) for pid in tree) and time.time() - stop < 150:
            time.sleep(0.2)
        left = [pid for pid in tree if psutil.pid_exists(pid)]
        for pid in left:  # not expected; reported, then cleaned up
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
        result["exit_after_sigterm_s"] = round(time.time() - stop, 1)
        result["left_behind"] = len(left)
        result["returncode"] = proc.returncode
        result["load_after"] = machine.loadavg()
        log.close()
        if args.keep_workdirs:
            result["workdir"] = workdir
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return result


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ints = lambda s: tuple(int(x) for x in s.split(",") if x)  # noqa: E731
    parser.add_argument("--actors", type=ints, default=(1, 4, 32), help="actor streams")
    parser.add_argument("--sides", default="ours,acme", help="which programs, in order")
    parser.add_argument("--window", type=float, default=90.0, help="measured seconds")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to 1st update")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--sequence-length", type=int, default=10)
    parser.add_argument("--samples-per-insert", type=float, default=32.0)
    parser.add_argument("--min-replay-size", type=int, default=1000)
    parser.add_argument("--envs-per-process", type=int, default=0, help="ours (0: auto)")
    parser.add_argument(
        "--gib-per-process", type=float, default=0.45, help="Acme's, for the fit check"
    )
    parser.add_argument("--learner-kernels", default="auto", help="ours: resources.learner_kernels")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--keep-workdirs", action="store_true")
    return parser.parse_args(argv)


def print_run(r: dict) -> None:
    head = f"{r['side']:>4} {r['actors']:>2} actors:"
    if "skipped" in r:
        print(head, "skipped:", r["skipped"])
        return
    fields = [
        ("every actor inserted", r.get("all_inserted_s"), "s"),
        ("first update", r.get("first_update_s"), "s"),
        ("actor steps/s", r.get("actor_steps_per_s"), ""),
        ("updates/s", r.get("learner_updates_per_s"), ""),
        ("samples/insert", r.get("samples_per_insert"), ""),
        ("PSS", r.get("total_gib"), " GiB"),
        ("actors' PSS", r.get("actor_gib"), " GiB"),
        ("processes", r.get("processes"), ""),
        ("exit after SIGTERM", r.get("exit_after_sigterm_s"), "s"),
    ]
    text = ", ".join(f"{name} {value}{unit}" for name, value, unit in fields if value is not None)
    print(head, text, f"[{r['error']}]" if "error" in r else "", flush=True)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    report = {**machine.report_header(argv, args), "runs": []}

    for actors in args.actors:
        for side in args.sides.split(","):
            result = run_side(side, actors, args)
            report["runs"].append(result)
            print_run(result)
            machine.write_report(report, args.out)  # after every run: keep what it measured
    report["uptime_end"] = machine.uptime()
    print(
        f"{report['cpu']}, {report['nproc']} CPUs; load [{report['uptime_start']}] -> "
        f"[{report['uptime_end']}]"
    )
    machine.write_report(report, args.out)
    return report


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
