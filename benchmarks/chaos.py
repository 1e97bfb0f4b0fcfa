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
import ast
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks import machine  # noqa: E402

BPRL = os.path.join(os.path.dirname(sys.executable), "bprl")
TARGETS = ("learner", "replay", "counter", "actor", "evaluator", "stopper")
SIGNALS = ("SIGKILL", "SIGSTOP")


class Console:
    """The launcher's stdout and stderr, line by line with the time each arrived (also
    written to `path`)."""

    def __init__(self, proc: subprocess.Popen, path: str):
        self.lines: list[tuple[float, str, str]] = []
        self._lock = threading.Lock()
        self._file = open(path, "w")  # noqa: SIM115 - closed by close()
        self._threads = [
            threading.Thread(target=self._read, args=(stream, name), daemon=True)
            for stream, name in ((proc.stdout, "out"), (proc.stderr, "err"))
        ]
        for thread in self._threads:
            thread.start()

    def _read(self, stream, name: str) -> None:
        for line in stream:
            now = time.time()
            with self._lock:
                self.lines.append((now, name, line.rstrip("\n")))
                self._file.write(f"{now:.3f} {name} {line}")
                self._file.flush()

    def after(self, since: float) -> list[tuple[float, str, str]]:
        with self._lock:
            return [entry for entry in self.lines if entry[0] >= since]

    def close(self) -> None:
        for thread in self._threads:
            thread.join(timeout=10)
        self._file.close()


def _is_progress(text: str) -> bool:
    return text.startswith("actor ") and " | learner " in text


def node_processes(launcher_pid: int) -> dict:
    """`group/i` -> psutil.Process of the launcher's live node processes."""
    from bprl.launch.local import launcher as local

    return local.node_processes(launcher_pid)


def actor_worker(node) -> object | None:
    """The worker process an actor node supervises (multiprocessing spawn), if alive."""
    import psutil

    try:
        for child in node.children():
            if "spawn_main" in " ".join(child.cmdline()) and child.status() != "zombie":
                return child
    except psutil.Error:
        pass
    return None


def program_memory(launcher_pid: int) -> tuple[int, float]:
    """(processes, summed RSS in GiB) of the launcher and all its descendants."""
    import psutil

    try:
        root = psutil.Process(launcher_pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0, 0.0
    count, rss = 0, 0
    for proc in procs:
        try:
            rss += proc.memory_info().rss
            count += 1
        except psutil.Error:
            continue
    return count, rss / 2**30


def listen_port(proc) -> int | None:
    import psutil

    try:
        ports = [c.laddr.port for c in proc.net_connections("inet") if c.status == "LISTEN"]
    except psutil.Error:
        return None
    return min(ports) if ports else None


class Probes:
    """The counter's counts and the replay's size, asked directly (host network)."""

    def __init__(self, launcher_pid: int, enabled: bool):
        self._launcher = launcher_pid
        self.enabled = enabled
        self._counter = None
        self._replay = None

    def counts(self) -> dict | None:
        if not self.enabled:
            return None
        try:
            if self._counter is None:
                import courier

                port = listen_port(node_processes(self._launcher)["counter/0"])
                self._counter = courier.Client(f"localhost:{port}", call_timeout=3)
            return dict(self._counter.get_counts())
        except Exception:  # noqa: BLE001 - stopped, restarting, gone: rediscover next time
            self._counter = None
            return None

    def replay_items(self) -> int | None:
        if not self.enabled:
            return None
        try:
            if self._replay is None:
                import reverb

                port = listen_port(node_processes(self._launcher)["replay/0"])
                self._replay = reverb.Client(f"localhost:{port}")
            tables = self._replay.server_info(timeout=3)
            return int(sum(info.current_size for info in tables.values()))
        except Exception:  # noqa: BLE001 - as above
            self._replay = None
            return None


def read_json_lines(path: str) -> list[dict]:
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError):
        return []


def record_counts(workdir: str) -> dict | None:
    """The newest complete checkpoint record's counts and time, if any."""
    try:
        with open(os.path.join(workdir, "checkpoints", "counts.json")) as f:
            record = json.load(f)
        return {**record.get("counts", {}), "time": record.get("time")}
    except (OSError, ValueError):
        return None


def final_return(workdir: str) -> dict:
    """The last evaluation of the run (policy and prior alone), and the mean of the last 3."""
    from bprl.launch.rundir import events, layout

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


def load_config(args: argparse.Namespace):
    """The run's config with the overrides applied (for the node layout: actor streams)."""
    from bprl.launch.config import validate

    config = validate.load_config(os.path.join(ROOT, args.config))
    for override in args.override:
        key, _, text = override.partition("=")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        config.update_from_flattened_dict({key: value})
    return config


def run_command(args: argparse.Namespace, workdir: str, chaos: bool) -> list[str]:
    command = [BPRL, "run", f"--config={os.path.join(ROOT, args.config)}"]
    command += [f"--network={args.network}"]
    command += [f"--config.checkpoint.every_seconds={args.checkpoint_secs:g}"]
    command += [f"--config.{override}" for override in args.override]
    if chaos:
        command += [
            f"--config.reliability.max_program_restarts={args.max_restarts}",
            f"--config.reliability.restart_backoff_secs={args.restart_backoff_secs:g}",
        ]
        if args.hang_timeout_secs:
            command += [f"--config.reliability.hang_timeout_secs={args.hang_timeout_secs:g}"]
    return [*command, f"--workdir={workdir}"]


def stream_dirs(config, workdir: str) -> dict[str, list[str]]:
    from bprl.launch.config import packing
    from bprl.launch.rundir import layout

    return {
        f"actor/{i}": [layout.actor_dir(workdir, s) for s in streams]
        for i, streams in enumerate(packing.stream_groups(config))
    }


def event_bytes(directories: list[str]) -> int:
    total = 0
    for directory in directories:
        try:
            for name in os.listdir(directory):
                if name.startswith("events.out.tfevents"):
                    total += os.path.getsize(os.path.join(directory, name))
        except OSError:
            continue
    return total


class Soak:
    """One chaos run: the launcher, its console, the samples and the faults."""

    def __init__(self, args: argparse.Namespace, workdir: str):
        self.args = args
        self.workdir = workdir
        self.config = load_config(args)
        self.rng = random.Random(args.seed)
        self.samples: list[dict] = []
        self.faults: list[dict] = []
        self.records: list[dict] = []  # distinct checkpoint records seen, in order
        self.backwards: list[str] = []
        self.started = time.time()
        self.command = run_command(args, workdir, chaos=True)
        self.proc = subprocess.Popen(
            self.command,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.console = Console(self.proc, f"{workdir}.console.log")
        self.probes = Probes(self.proc.pid, args.network == "host")
        self.expected_groups = {"learner", "replay", "counter", "actor", "stopper"}
        if int(self.config.evaluators.num_evaluators):
            self.expected_groups.add("evaluator")
        self.actor_dirs = stream_dirs(self.config, workdir)
        self.last_counts: dict | None = None

    # -- observation ----------------------------------------------------------------------

    def sample(self) -> dict:
        processes, rss = program_memory(self.proc.pid)
        counts = self.probes.counts()
        record = record_counts(self.workdir)
        if record and (not self.records or record["time"] != self.records[-1]["time"]):
            if self.records:
                for key in ("actor_steps", "learner_steps"):
                    if record.get(key, 0) < self.records[-1].get(key, 0):
                        self.backwards.append(
                            f"record {key} {self.records[-1].get(key)} -> {record.get(key)}"
                        )
            self.records.append(record)
        if counts and self.records:
            # The counter starts from the record it resumed from, and a record's actor
            # steps are the counter's: the live count is never below the newest record's.
            # (Not learner steps: a record has the learner's own count, which the
            # counter's trails by up to a second, for ever if the learner is stopped.)
            newest = self.records[-1].get("actor_steps", 0)
            if counts.get("actor_steps", 0) < newest:
                self.backwards.append(
                    f"live actor_steps {counts.get('actor_steps')} below the record's {newest}"
                )
        if counts:
            self.last_counts = counts
        entry = {
            "t": round(time.time() - self.started, 1),
            "processes": processes,
            "rss_gib": round(rss, 3),
            "actor_steps": counts.get("actor_steps") if counts else None,
            "learner_steps": counts.get("learner_steps") if counts else None,
            "replay_items": self.probes.replay_items(),
            "nodes": len(node_processes(self.proc.pid)),
        }
        self.samples.append(entry)
        return entry

    def program_up(self, since: float) -> bool:
        """Every node group alive, and the learner stepped since `since` (an attempt's
        start or a fault)."""
        nodes = node_processes(self.proc.pid)
        groups = {name.split("/")[0] for name in nodes}
        if not self.expected_groups <= groups:
            return False
        if any(actor_worker(p) is None for n, p in nodes.items() if n.startswith("actor/")):
            return False
        try:
            if any(p.status() == "stopped" for p in nodes.values()):
                return False
        except Exception:  # noqa: BLE001 - a process went away: not up
            return False
        steps = [s["learner_steps"] for s in self.samples if s["t"] + self.started >= since]
        steps = [s for s in steps if s is not None]
        if self.probes.enabled:
            return len(steps) >= 2 and steps[-1] > steps[0]
        return self._learner_log_line_after(since) is not None

    def _learner_log_line_after(self, since: float) -> float | None:
        """When the learner's log (this attempt's) says it started, if after `since`."""
        path = os.path.join(self.workdir, "logs", "learner", "0")
        try:
            if os.path.getmtime(path) < since:
                return None
            with open(path, errors="replace") as f:
                if "learner started at step" in f.read():
                    return os.path.getmtime(path)
        except OSError:
            return None
        return None

    # -- faults ---------------------------------------------------------------------------

    def inject(self) -> dict | None:
        targets = [t for t in self.args.targets if t != "evaluator" or self._has("evaluator")]
        target = self.rng.choice(targets)
        sig = self.rng.choice(self.args.signals)
        nodes = node_processes(self.proc.pid)
        candidates = sorted(name for name in nodes if name.split("/")[0] == target)
        if not candidates:
            return None
        node = self.rng.choice(candidates)
        victim = nodes[node]
        if target == "actor":
            victim = actor_worker(victim)
            if victim is None:
                return None
        before = self.last_counts or {}
        items = next(
            (s["replay_items"] for s in reversed(self.samples) if s["replay_items"] is not None),
            None,
        )
        fault = {
            "n": len(self.faults) + 1,
            "time": time.time(),
            "t": round(time.time() - self.started, 1),
            "target": target,
            "node": node,
            "process": "worker" if target == "actor" else "node",
            "pid": victim.pid,
            "signal": sig,
            "learner_steps_before": before.get("learner_steps"),
            "actor_steps_before": before.get("actor_steps"),
            "replay_items_before": items,
            "worker_pid_before": victim.pid if target == "actor" else None,
        }
        victim.send_signal(getattr(signal, sig))
        print(f"fault {fault['n']}: {sig} to {node} ({fault['process']} {victim.pid})", flush=True)
        self.faults.append(fault)
        return fault

    def _has(self, group: str) -> bool:
        return any(name.startswith(group + "/") for name in node_processes(self.proc.pid))

    def follow(self, fault: dict) -> None:
        """Fills in the fault's detection and recovery as they happen (called each tick)."""
        now = time.time()
        t0 = fault["time"]
        if fault.get("detected_after_s") is None:
            for at, _, text in self.console.after(t0):
                if not _is_progress(text) and text.strip():
                    fault["detected_after_s"] = round(at - t0, 1)
                    fault["detected_line"] = text
                    break
        if fault["target"] == "actor":
            self._follow_worker(fault, now)
        else:
            self._follow_program(fault, now)

    def _follow_worker(self, fault: dict, now: float) -> None:
        node = node_processes(self.proc.pid).get(fault["node"])
        worker = actor_worker(node) if node is not None else None
        if worker is None or worker.pid == fault["worker_pid_before"]:
            return
        if "new_worker" not in fault:
            fault["new_worker"] = worker.pid
            fault["new_worker_size"] = event_bytes(self.actor_dirs[fault["node"]])
            try:
                started = worker.create_time()
            except Exception:  # noqa: BLE001 - gone again
                started = now
            if fault.get("detected_after_s") is None or fault["signal"] == "SIGKILL":
                fault["detected_after_s"] = round(started - fault["time"], 1)
                fault["detected_line"] = f"new worker process {worker.pid}"
            fault["how"] = "worker restart"
        elif event_bytes(self.actor_dirs[fault["node"]]) > fault["new_worker_size"]:
            fault["recovered_after_s"] = round(now - fault["time"], 1)
            fault["caught_up_after_s"] = fault["recovered_after_s"]
            fault["learner_steps_lost"] = 0
            fault["actor_steps_lost"] = 0
            fault["replay_items_lost"] = 0

    def _follow_program(self, fault: dict, now: float) -> None:
        t0 = fault["time"]
        entry = next(
            (
                e
                for e in read_json_lines(os.path.join(self.workdir, "restarts.jsonl"))
                if e.get("time", 0) >= t0
            ),
            None,
        )
        if entry is None:
            return
        if "restart" not in fault:
            fault["how"] = "program restart"
            fault["restart"] = entry.get("restart")
            fault["cause"] = entry.get("cause")
            fault["hang"] = entry.get("hang")
            fault["learner_steps_lost"] = entry.get("learner_steps_lost")
            fault["actor_steps_lost"] = max(
                0,
                int(entry.get("actor_steps_at_failure", 0))
                - int(entry.get("checkpoint_actor_steps", 0)),
            )
            fault["resumed_learner_steps"] = entry.get("checkpoint_learner_steps")
            fault["restart_logged_after_s"] = round(entry["time"] - t0, 1)
        resumed_at = [
            at
            for at, _, text in self.console.after(entry["time"])
            if text.startswith("resuming ") or text.startswith("run directory:")
        ]
        if not resumed_at:
            return
        fault.setdefault("relaunched_after_s", round(resumed_at[0] - t0, 1))
        later = [s for s in self.samples if s["t"] + self.started >= resumed_at[0]]
        items = [s["replay_items"] for s in later if s["replay_items"] is not None]
        if items and "replay_items_after" not in fault:
            fault["replay_items_after"] = items[0]
            if fault["replay_items_before"] is not None:
                fault["replay_items_lost"] = max(0, fault["replay_items_before"] - items[0])
        steps = [s["learner_steps"] for s in later if s["learner_steps"] is not None]
        resumed = fault.get("resumed_learner_steps") or 0
        if self.probes.enabled:
            if steps and steps[-1] > resumed and "recovered_after_s" not in fault:
                fault["recovered_after_s"] = round(now - t0, 1)
            # Caught up: stepping again (above all) and back at the steps of the fault.
            before = fault.get("learner_steps_before") or 0
            recovered = "recovered_after_s" in fault
            if recovered and steps[-1] >= before and "caught_up_after_s" not in fault:
                fault["caught_up_after_s"] = round(now - t0, 1)
        else:
            started = self._learner_log_line_after(resumed_at[0])
            if started and "recovered_after_s" not in fault:
                fault["recovered_after_s"] = round(started - t0, 1)

    def done(self, fault: dict) -> bool:
        if fault["target"] == "actor" or not self.probes.enabled:
            return "recovered_after_s" in fault
        return "caught_up_after_s" in fault

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> dict:
        args = self.args
        every = args.every_minutes * 60.0
        next_fault = self.started + every
        current: dict | None = None
        last_sample = 0.0
        attempt_since = self.started
        while self.proc.poll() is None:
            now = time.time()
            if now - last_sample >= args.sample_secs:
                self.sample()
                last_sample = now
            if current is not None:
                self.follow(current)
                if self.done(current):
                    attempt_since = time.time()
                    next_fault = max(next_fault, time.time() + 10.0)
                    current = None
                elif now - current["time"] > args.recovery_timeout_secs:
                    current["not_recovered"] = True
                    print(
                        f"fault {current['n']}: no recovery in "
                        f"{args.recovery_timeout_secs:g} s; stopping"
                    )
                    break
            budget_left = args.faults == 0 or len(self.faults) < args.faults
            if current is None and budget_left and now >= next_fault:
                if self.program_up(attempt_since):
                    current = self.inject()
                    if current is not None:
                        next_fault = time.time() + every
            time.sleep(1.0)
        if current is not None and self.proc.poll() is not None:
            self.follow(current)
        if self.proc.poll() is None:  # stopped by a fault that never recovered
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.wait()
        self.console.close()
        left = cleanup(self.workdir)
        return {
            "command": " ".join(self.command),
            "workdir": self.workdir,
            "exit_code": self.proc.returncode,
            "wall_s": round(time.time() - self.started, 1),
            "faults": self.faults,
            "samples": self.samples,
            "records": self.records,
            "counts_never_backwards": not self.backwards,
            "backwards": self.backwards[:20],
            "restarts": read_json_lines(os.path.join(self.workdir, "restarts.jsonl")),
            "final": final_return(self.workdir),
            "left_behind": left,  # 35 s after the launcher exited
        }


def run_processes(workdir: str) -> list:
    """The run's processes: the launcher (`--workdir=WORKDIR`) and every process that
    inherited its Launchpad log directory (nodes, actor workers); never this one."""
    import psutil

    found = []
    logs = os.path.join(workdir, "logs")
    for proc in psutil.process_iter(["cmdline", "environ"]):
        if proc.pid == os.getpid():
            continue
        try:
            args = proc.info["cmdline"] or []
            env = proc.info["environ"] or {}
        except psutil.Error:
            continue
        if f"--workdir={workdir}" in args or env.get("LAUNCHPAD_LOGGING_DIR") == logs:
            found.append(proc)
    return found


def cleanup(workdir: str) -> int:
    """SIGKILL to anything of the run still there 35 s after it ended (a stopped process
    included; the nodes' own lifelines end them within 30 s); how many there were."""
    import psutil

    deadline = time.time() + 35
    while run_processes(workdir) and time.time() < deadline:
        time.sleep(1)
    left = run_processes(workdir)
    for proc in left:
        try:
            proc.kill()
        except psutil.Error:
            continue
    return len(left)


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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = args.workdir or tempfile.mkdtemp(prefix="bprl_chaos_")
    workdir = os.path.join(os.path.abspath(root), "chaos")
    if os.path.exists(workdir):
        shutil.rmtree(workdir)
    report = machine.report_header(argv, args)
    report["chaos"] = Soak(args, workdir).run()
    if not args.no_baseline:
        report["baseline"] = baseline(args, os.path.join(os.path.abspath(root), "baseline"))
    report["uptime_end"] = machine.uptime()
    machine.write_report(report, args.out or os.path.join(root, "chaos.json"))
    table = markdown(report)
    path = args.markdown or (os.path.splitext(args.out)[0] + ".md" if args.out else "")
    with open(path or os.path.join(root, "chaos.md"), "w") as f:
        f.write(table)
    print(table)
    return 0 if report["chaos"]["exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
