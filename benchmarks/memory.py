"""Memory (PSS) and start-up time of a whole local program, packed actors against unpacked.

Usage:
  python benchmarks/memory.py [--streams 1,4,32] [--packing 0,1] [--window 30] [--out FILE]

For each number of streams and each packing (`actors.envs_per_process`: 0 auto, 1 one
process per stream, or N), one after the other in this process:
  1. `bprl run` (the real local_mp program; default walker_walk:tiny, no budget) starts.
  2. Once every stream has logged "first sequence inserted" (its first replay item reached
     the server, `agents/packed_actor.py`), the time from launch is recorded.
  3. For `--window` seconds the PSS (/proc/<pid>/smaps_rollup) of every process of the
     program (the launcher and all its descendants) is sampled; the largest total is
     reported, split by role from each node's BPRL_NODE_GROUP (actor: nodes, their worker
     and resource-tracker processes; learner; replay; others: counter, stopper,
     evaluators, launcher). Aggregate actor steps/s over the window's second half are
     read from the shared counter's actor_steps in the TensorBoard events
     (`launch/rundir/events.py`).
  4. SIGTERM to the launcher; the time to a clean exit (every process gone) is recorded.
With `--checkout DIR` the programs are another checkout's (an A/B against older code, e.g.
a `git worktree` of the commit before packed actors): its `launch/cli.py run`, with that
directory first on PYTHONPATH. A checkout without packed actors runs one actor process per
stream (its runs list envs_per_process as null), and one whose actors do not log their
first insert counts a stream once its actor has logged an episode's actor_steps to
TensorBoard (`actors/<id>/`): later than its first insert, by up to one episode.
A configuration whose estimated size (`bprl.launch.config.fit.program_size`) exceeds the memory
available at that moment is skipped and reported as such.
"""

from __future__ import annotations

import argparse
import contextlib
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

ROLES = ("actor", "learner", "replay", "others")


def pss_kib(pid: int) -> int:
    """Proportional set size of one process in KiB (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def role_of(proc) -> str:
    """actor / learner / replay / others, from the node group a process inherited."""
    import psutil

    from bprl.launch.local import launcher as local

    try:
        group = proc.environ().get(local.NODE_GROUP_ENV, "")
    except psutil.Error:
        return "others"
    return group if group in ROLES else "others"


def program_pss(launcher_pid: int) -> dict:
    """PSS in GiB per role and in total, over the launcher and all its descendants."""
    import psutil

    try:
        root = psutil.Process(launcher_pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return {}
    gib = {role: 0.0 for role in ROLES}
    counted = {role: 0 for role in ROLES}
    for proc in procs:
        kib = pss_kib(proc.pid)
        if kib:
            role = role_of(proc) if proc.pid != launcher_pid else "others"
            gib[role] += kib / 2**20
            counted[role] += 1
    return {
        **{f"{role}_gib": gib[role] for role in ROLES},
        **{f"{role}_pids": counted[role] for role in ROLES},
        "total_gib": sum(gib.values()),
        "processes": sum(counted.values()),
    }


def inserted_streams(workdir: str) -> set[int]:
    """Streams whose first sequence reached replay (`launch.layout.inserted_streams`), or,
    for a checkout from before that log line, whose actor logged a finished episode."""
    from bprl.launch.rundir import events, layout

    found = layout.inserted_streams(workdir)
    if found:
        return found
    root = os.path.join(workdir, "actors")
    seen = _EPISODE_LOGGED.setdefault(workdir, set())
    for name in os.listdir(root) if os.path.isdir(root) else []:
        if name.isdigit() and int(name) not in seen:
            if events.read_events(os.path.join(root, name)).get("actor_steps"):
                seen.add(int(name))
    return set(seen)


_EPISODE_LOGGED: dict[str, set[int]] = {}  # workdir -> streams found (read once each)


def has_packing(checkout: str) -> bool:
    """Whether the checkout's defaults have packed actors (`actors.envs_per_process`)."""
    for path in ("launch/config/defaults.py", "launch/defaults.py"):  # after / before issue 29
        if os.path.exists(os.path.join(checkout, path)):
            with open(os.path.join(checkout, path)) as f:
                return "envs_per_process" in f.read()
    return False


def actor_rate(workdir: str, start: float, end: float) -> float | None:
    """Aggregate actor steps/s between wall times `start` and `end`: the shared counter's
    actor_steps as every node logged it (learner, actor streams; `launch/rundir/events.py`)."""
    from bprl.launch.rundir import events

    points = sorted(
        (wall, value)
        for run_dir in events.run_dirs(workdir)
        for wall, _, value in events.read_events(run_dir).get("actor_steps", [])
        if start <= wall <= end
    )
    if len(points) < 2 or points[-1][0] - points[0][0] < 1.0:
        return None
    return (points[-1][1] - points[0][1]) / (points[-1][0] - points[0][0])


def program_config(streams: int, packing: int | None, args: argparse.Namespace):
    """This checkout's config of the measured program (a checkout without packing: one
    process per stream), for its size and process count."""
    from bprl.launch.config import loading

    config = loading.load_config(os.path.join(ROOT, args.config))
    config.actors.num_actors = streams
    config.actors.envs_per_process = 1 if packing is None else packing
    return config


def measure(streams: int, packing: int | None, args: argparse.Namespace) -> dict:
    """One program: launch, wait for every stream's first insert, sample, SIGTERM, exit."""
    import psutil

    from bprl.launch.config import fit
    from bprl.launch.config import packing as packing_lib

    config = program_config(streams, packing, args)
    processes = len(packing_lib.stream_groups(config))
    estimate = fit.program_size(config)[2]
    available = psutil.virtual_memory().available / 2**30
    result = {
        "streams": streams,
        "envs_per_process": packing,
        "checkout": args.checkout,
        "actor_processes": processes,
        "estimated_gib": round(estimate, 2),
        "available_gib_before": round(available, 2),
        "load_before": machine.loadavg(),
    }
    if estimate > 0.9 * available:
        result["skipped"] = f"needs ~{estimate:.1f} GiB, {available:.1f} GiB available"
        return result
    workdir = tempfile.mkdtemp(prefix=f"bprl_mem_{streams}_{packing}_")
    env = dict(os.environ)
    if args.checkout == ROOT:
        command = [os.path.join(os.path.dirname(sys.executable), "bprl"), "run"]
    else:
        # A checkout from before issue 29 has top-level packages that PYTHONPATH finds; a
        # later one maps into `bprl`, which this venv's editable finder points at ROOT.
        if not os.path.exists(os.path.join(args.checkout, "launch", "defaults.py")):
            raise SystemExit("--checkout: only checkouts before issue 29 (launch/defaults.py)")
        command = [sys.executable, "-m", "launch.cli", "run"]
        env["PYTHONPATH"] = os.pathsep.join([args.checkout, env.get("PYTHONPATH", "")])
    config_file = os.path.join(args.checkout, args.config)  # an absolute path stays itself
    command += [f"--config={config_file}", f"--config.actors.num_actors={streams}"]
    if packing is not None:
        command.append(f"--config.actors.envs_per_process={packing}")
    command += ["--config.stop.max_actor_steps=1000000000", f"--workdir={workdir}"]
    command += [f"--config.{override}" for override in args.override]
    result["command"] = " ".join(command)
    started = time.time()
    proc = subprocess.Popen(
        command,
        cwd=args.checkout,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        while len(inserted_streams(workdir)) < streams:
            if proc.poll() is not None:
                result["error"] = f"exited early ({proc.returncode}): {proc.stderr.read()[-1500:]}"
                return result
            if time.time() - started > args.timeout:
                result["error"] = f"not every stream inserted within {args.timeout} s"
                break
            time.sleep(0.25)
        inserted = time.time()
        result["all_inserted_s"] = round(inserted - started, 1)
        peak: dict = {}
        while time.time() - inserted < args.window and proc.poll() is None:
            sample = program_pss(proc.pid)
            if sample.get("total_gib", 0.0) > peak.get("total_gib", 0.0):
                peak = sample
            time.sleep(2.0)
        window_end = time.time()
        result.update({k: round(v, 3) if isinstance(v, float) else v for k, v in peak.items()})
        tree = [proc.pid] + [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        stop = time.time()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        gone = time.time()
        while any(psutil.pid_exists(pid) for pid in tree) and time.time() - gone < 60:
            time.sleep(0.2)
        ended = time.time()
        result["exit_after_sigterm_s"] = round(ended - stop, 1)
        result["launch_to_exit_s"] = round(ended - started, 1)
        result["returncode"] = proc.returncode
        result["left_behind"] = sum(psutil.pid_exists(pid) for pid in tree)
        # The second half of the window: the learner is past its first updates by then.
        rate = actor_rate(workdir, inserted + args.window / 2, window_end)
        result["actor_steps_per_s"] = None if rate is None else round(rate, 1)
    finally:
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(Exception):
            proc.stderr.close()
        result["load_after"] = machine.loadavg()
        if not args.keep_workdirs:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            result["workdir"] = workdir
    return result


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ints = lambda s: tuple(int(x) for x in s.split(",") if x)  # noqa: E731
    parser.add_argument(
        "--config",
        default="experiments/configs/walker_walk.py:tiny",
        help="config FILE:variant the programs run, a relative FILE in the checkout "
        "(no budget; stopped by SIGTERM)",
    )
    parser.add_argument("--streams", type=ints, default=(1, 4, 32), help="actor streams")
    parser.add_argument(
        "--packing", type=ints, default=(0, 1), help="envs_per_process values (0: auto)"
    )
    parser.add_argument("--window", type=float, default=60.0, help="seconds of PSS sampling")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to first inserts")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--keep-workdirs", action="store_true")
    parser.add_argument("--checkout", default=ROOT, help="run this bprl checkout's programs (A/B)")
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config override for every program, e.g. resources.learner_kernels=xla_float32",
    )
    args = parser.parse_args(argv)
    args.checkout = os.path.abspath(args.checkout)
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    report = {**machine.report_header(argv, args), "runs": []}
    from bprl.launch.config import packing as packing_lib

    packings = args.packing if has_packing(args.checkout) else (None,)
    for streams in args.streams:
        done = set()  # e.g. 1 stream: auto, 8 and 1 are the same program
        for packing in packings:
            effective = packing_lib.envs_per_process(program_config(streams, packing, args))
            if effective in done:
                continue
            done.add(effective)
            result = measure(streams, packing, args)
            report["runs"].append(result)
            print_run(result)
    report["uptime_end"] = machine.uptime()
    print(f"{report['cpu']}, {report['nproc']} CPUs")
    print(f"load: start [{report['uptime_start']}] end [{report['uptime_end']}]")
    machine.write_report(report, args.out)
    return report


def print_run(r: dict) -> None:
    head = f"{r['streams']:>3} streams, envs_per_process {r['envs_per_process']} "
    head += f"({r['actor_processes']} actor processes):"
    if "skipped" in r or "total_gib" not in r:
        print(head, r.get("skipped") or r.get("error"))
        return
    print(
        f"{head} PSS total {r['total_gib']:.2f} GiB over {r['processes']} processes "
        f"(actors {r['actor_gib']:.2f}, learner {r['learner_gib']:.2f}, replay "
        f"{r['replay_gib']:.2f}, others {r['others_gib']:.2f}); every stream inserted "
        f"{r['all_inserted_s']} s after launch; exit {r['exit_after_sigterm_s']} s after "
        f"SIGTERM ({r['launch_to_exit_s']} s from launch, rc {r['returncode']}); actor "
        f"steps/s {r['actor_steps_per_s']}"
    )


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
