"""One chaos soak (benchmarks/chaos.py): `Soak` starts the `bprl run`, samples it, injects
a fault at a time (SIGKILL or SIGSTOP to a random node or actor worker) once the program
is back up, follows each fault to detection, recovery and catching up, and returns the
soak's part of the report.

Its own module: the loop and the faults, while how the run is seen is in
benchmarks/chaos_run.py and what is read back afterwards in benchmarks/chaos_report.py.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import time

from benchmarks.chaos_report import final_return, read_json_lines, record_counts
from benchmarks.chaos_run import (
    Console,
    Probes,
    actor_worker,
    cleanup,
    load_config,
    node_processes,
    program_memory,
    run_command,
    stream_dirs,
)
from benchmarks.machine import ROOT
from bprl.launch.local.node_probes import event_bytes
from bprl.launch.rundir import layout


def _is_progress(text: str) -> bool:
    return text.startswith("actor ") and " | learner " in text


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
        path = layout.node_log(self.workdir, "learner/0")
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
        try:
            return self._run()
        except BaseException:  # interrupted: the launcher (and so its nodes) goes too
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(60)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
            raise

    def _run(self) -> dict:
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
