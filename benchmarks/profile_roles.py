"""Where the cores go (issue 30, part 1): one local run profiled per process and role.

Usage:
  python benchmarks/profile_roles.py --config experiments/configs/seqnav_pointmass.py:local_short
      [--warmup-secs 120] [--window-secs 60] [--rate 20] [--override key=value ...]
      [--out profile.json] [--markdown profile.md]
  python benchmarks/profile_roles.py --reclassify profile.json   # shares again, new RULES

1. `bprl run` of the config starts (host network, so its processes are this machine's
   children), with a budget large enough to outlast the profile.
2. After `--warmup-secs` (compiles done, replay past its minimum size), for
   `--window-secs`: every process of the run (launcher, nodes, actor worker processes) has
   its per-thread CPU time read from /proc before and after, and py-spy samples every
   Python thread of every Python process at `--rate` Hz, idle or not (wall-clock stacks).
3. Each process is named by its role (`learner`, `actor/0 worker`, `replay`, ...). Its
   cores are CPU seconds over the window's seconds, split into:
   - each Python thread's CPU, with the wall time of that thread by activity (the first
     rule of `RULES` that matches its stack): environment step, inference, inserts (a
     blocked insert is the rate limiter holding the actor back), the learner's wait for
     a batch (the rate limiter or the sampler) and its compiled update, ...;
   - the CPU of threads without Python frames (TensorFlow's and XLA's intra-op pools,
     Reverb's and gRPC's threads), where a compiled update's arithmetic runs.
4. The run is stopped (SIGTERM to the launcher) and nothing of it is left.

py-spy pauses a process briefly for each sample (it reads a consistent stack): at 20 Hz
over 10 processes that costs a few percent of one core; the report gives the machine's
total beside the run's. Needs py-spy (`pip install py-spy`, in requirements.lock).
"""

from __future__ import annotations

import argparse
import collections
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

from benchmarks import machine  # noqa: E402
from benchmarks.chaos_run import cleanup, node_processes  # noqa: E402

# (activity, substrings of a stack, whether all must be there (else any one)); the first
# matching rule names a sample. A stack reads root to leaf as "function (file:line);...".
RULES: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("learner: wait for a batch", ("step (agents/learner.py", "iterator_ops.py"), True),
    ("learner: compiled update", ("learn_from_sample", "learn_from_batch"), False),
    ("learner: counter", ("step (agents/learner.py", "counting.py"), True),
    ("learner: logging", ("_write_latest", "flush_logs"), False),
    ("checkpoint", ("checkpointing.py", "checkpoint_record.py", "replay_mirror.py"), False),
    ("variables served", ("get_variables",), False),
    ("inserts (rate limiter included)", ("fast_adder.py", "trajectory_writer.py"), False),
    ("inference", ("select_action",), False),  # select_actions too (packed)
    ("environment step", ("dm_control", "environments/", "mujoco"), False),
    ("evaluator: other", ("run_episode",), False),
    # (";" before it: not the actor worker's build_and_run in the same file)
    ("evaluator: waiting for its next evaluation", (";_run (launch/program/nodes.py",), False),
    ("variable fetch", ("variable_utils.py", "VersionedVariableClient"), False),
    ("counter", ("counting.py",), False),
    ("logging", ("tensorboard.py",), False),
    ("supervision / lifeline", ("supervision.py", "lifeline.py"), False),
    ("idle", ("wait (threading.py", "sleep", "select", "_worker (concurrent", "join ("), False),
)


def classify(stack: str) -> str:
    """The activity of one sampled stack (its whole text, root to leaf)."""
    for activity, needles, need_all in RULES:
        if (all if need_all else any)(n in stack for n in needles):
            return activity
    return "other Python"


def thread_cpu(pid: int) -> dict[int, float]:
    """tid -> CPU seconds (user + system) of every thread of `pid` ({} when gone)."""
    ticks = os.sysconf("SC_CLK_TCK")
    found = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[int(tid)] = (int(fields[11]) + int(fields[12])) / ticks
    return found


def roles(launcher_pid: int) -> dict[str, int]:
    """role -> pid: the launcher, each node, and each actor node's worker process."""
    import psutil

    found = {"launcher": launcher_pid}
    for name, proc in sorted(node_processes(launcher_pid).items()):
        found[name] = proc.pid
        try:
            children = proc.children()
        except psutil.Error:
            continue
        for child in children:
            try:
                if "resource_tracker" in " ".join(child.cmdline()):
                    continue  # multiprocessing's helper: sleeps
            except psutil.Error:
                continue
            found[f"{name} worker"] = child.pid
    return found


def spy_path(spy_dir: str, role: str) -> str:
    """Where py-spy's samples of the process of `role` are kept."""
    return os.path.join(spy_dir, role.replace("/", "_").replace(" ", "_"))


def shares(counts: collections.Counter) -> dict[str, float]:
    """activity -> its share of a thread's samples, largest first."""
    total = sum(counts.values())
    return {k: round(v / total, 3) for k, v in counts.most_common()}


def parse_raw(path: str) -> dict[int, collections.Counter]:
    """py-spy's raw output (`--threads`): tid -> Counter(activity -> samples)."""
    by_thread: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    if not os.path.exists(path):
        return by_thread
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            head = stack.split(";", 1)[0]  # "thread (1234): name" or "thread (0x..)"
            try:
                tid = int(head.split("(", 1)[1].split(")", 1)[0], 0)
            except (IndexError, ValueError):
                continue
            by_thread[tid][classify(stack)] += int(count)
    return by_thread


def profile(args: argparse.Namespace, workdir: str) -> dict:
    command = [
        os.path.join(os.path.dirname(sys.executable), "bprl"),
        "run",
        f"--config={args.config}",
        "--network=host",
        f"--workdir={workdir}",
        f"--config.stop.max_actor_steps={args.max_actor_steps}",
    ] + [f"--config.{o}" for o in args.override]
    log = open(f"{workdir}.console.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        time.sleep(args.warmup_secs)
        if proc.poll() is not None:
            raise RuntimeError(f"the run ended during the warm-up: see {workdir}.console.log")
        found = roles(proc.pid)
        before = {role: thread_cpu(pid) for role, pid in found.items()}
        spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
        spies = {}
        for role, pid in found.items():
            out = spy_path(workdir + ".spy", role)
            os.makedirs(os.path.dirname(out), exist_ok=True)
            spies[role] = (
                out,
                subprocess.Popen(
                    [
                        spy,
                        "record",
                        "--pid",
                        str(pid),
                        "--rate",
                        str(args.rate),
                        "--duration",
                        str(int(args.window_secs)),
                        "--format",
                        "raw",
                        "--threads",
                        "--idle",
                        "--output",
                        out,
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                ),
            )
        started = time.time()
        cpu_start = _machine_cpu()
        for _, spy_proc in spies.values():
            spy_proc.wait(args.window_secs + 60)
        window = time.time() - started
        cpu_end = _machine_cpu()
        after = {role: thread_cpu(pid) for role, pid in found.items()}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()
        cleanup(workdir)
    result = {"window_s": round(window, 1), "machine_cores_busy": _busy(cpu_start, cpu_end)}
    processes = {}
    for role, pid in found.items():
        samples = parse_raw(spies[role][0])
        threads, native = [], 0.0
        for tid, cpu in after[role].items():
            used = (cpu - before[role].get(tid, 0.0)) / window
            if tid in samples:
                threads.append({"tid": tid, "cores": round(used, 3), "wall": shares(samples[tid])})
            else:
                native += used
        threads.sort(key=lambda t: -t["cores"])
        processes[role] = {
            "pid": pid,
            "cores": round(sum(t["cores"] for t in threads) + native, 3),
            "python_threads": threads,
            "native_threads_cores": round(native, 3),
        }
    result["processes"] = processes
    return result


def _machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [float(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def _busy(start: tuple[float, float], end: tuple[float, float]) -> float:
    busy, total = end[0] - start[0], end[1] - start[1]
    return round((os.cpu_count() or 1) * busy / max(total, 1e-9), 2)


def markdown(report: dict) -> str:
    """One row per process: its cores, its Python threads' activities, native cores."""
    result = report["profile"]
    lines = [
        f"`{report['command']}` ({report['date']}, {report['cpu']}, {report['nproc']} cores)",
        "",
        f"Window {result['window_s']} s; the machine's busy cores {result['machine_cores_busy']}.",
        "",
        "| process | cores | Python threads: cores, wall time by activity | native threads |",
        "| --- | --- | --- | --- |",
    ]
    total = 0.0
    for role, proc in result["processes"].items():
        total += proc["cores"]
        parts = []
        for thread in proc["python_threads"]:
            if thread["cores"] < 0.005 and set(thread["wall"]) <= {
                "idle",
                "supervision / lifeline",
            }:
                continue
            shares = ", ".join(f"{k} {v:.0%}" for k, v in thread["wall"].items() if v >= 0.02)
            parts.append(f"{thread['cores']:.2f}: {shares}")
        lines.append(
            f"| {role} | {proc['cores']:.2f} | {'; '.join(parts) or '-'} | "
            f"{proc['native_threads_cores']:.2f} |"
        )
    lines.append(f"| **the run** | **{total:.2f}** | | |")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="experiments/configs/seqnav_pointmass.py:local_short")
    parser.add_argument("--warmup-secs", type=float, default=120.0)
    parser.add_argument("--window-secs", type=float, default=60.0)
    parser.add_argument("--rate", type=int, default=20, help="py-spy samples per second")
    parser.add_argument("--max-actor-steps", type=int, default=10_000_000)
    parser.add_argument("--override", action="append", default=[], help="key=value (config)")
    parser.add_argument("--workdir", default="", help="run directory (default: a temporary one)")
    parser.add_argument("--out", default="", help="JSON report")
    parser.add_argument("--markdown", default="", help="markdown table (default: OUT .md)")
    parser.add_argument(
        "--reclassify", default="", help="REPORT.json: recompute its shares with today's RULES"
    )
    return parser.parse_args(argv)


def reclassify(report: dict, root: str) -> dict:
    """The report's wall-time shares recomputed from its py-spy files (`root`/run.spy/)
    with today's RULES: the CPU figures stay as measured."""
    for role, proc in report["profile"]["processes"].items():
        samples = parse_raw(spy_path(os.path.join(root, "run.spy"), role))
        for thread in proc["python_threads"]:
            if samples.get(thread["tid"]):
                thread["wall"] = shares(samples[thread["tid"]])
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.reclassify:  # REPORT.json: its shares again from its py-spy files
        path = args.reclassify
        with open(path) as f:
            report = json.load(f)
        root = report["settings"]["workdir"] or os.path.dirname(os.path.abspath(path))
        report = reclassify(report, root)
        table = markdown(report)
        machine.write_outputs(report, table, path, "", root, "profile")
        print(table)
        return 0
    root = os.path.abspath(args.workdir or tempfile.mkdtemp(prefix="bprl_profile_"))
    os.makedirs(root, exist_ok=True)
    workdir = os.path.join(root, "run")
    report = machine.report_header(argv, args)
    report["profile"] = profile(args, workdir)
    report["uptime_end"] = machine.uptime()
    table = markdown(report)
    machine.write_outputs(report, table, args.out, args.markdown, root, "profile")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
