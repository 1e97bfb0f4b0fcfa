"""Seed sweeps: one `bprl run` subprocess per seed (and per value of one swept field).

Layout under the sweep directory DIR:
    DIR/seed_<k>/                       without a swept field
    DIR/<field>=<value>/seed_<k>/       with one, each value times the seeds
A run that exited 0 gets a `DONE` marker (written by the sweep, not the run). Rerunning
the same sweep command runs only the seeds without it: a seed whose run left a checkpoint
resumes from it in its directory (as `bprl run` resumes any run), and a directory with no
checkpoint to resume (a run stopped before its first one) is moved into `.attempts/` beside
it, not deleted, so the new run's event files start clean. Nothing a run wrote is removed.
Each run is a subprocess in its own process group (Launchpad reads its logging folder
at import, so one process launches one run); SIGINT/SIGTERM to the sweep terminates
the groups of the runs in flight, so no node process outlives the sweep; a SIGKILLed
sweep takes its runs along too (each run ties itself to the sweep, launch/program/lifeline.py).
The sweep locks its directory and each run its own (launch/local/runlock.py).
"""

from __future__ import annotations

import ast
import dataclasses
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import ml_collections
from ml_collections.config_flags import tuple_parser

from bprl.launch.program import lifeline
from bprl.launch.rundir import checkpoint_record, layout
from bprl.launch.rundir.layout import DONE, RUN_LOG, seed_dirs  # noqa: F401  (the layout's names)


@dataclasses.dataclass
class SeedRun:
    """One run of a sweep: its directory, seed, and the config overrides that make it."""

    run_dir: str
    seed: int
    overrides: list[str]
    config: ml_collections.ConfigDict
    variant: str = ""

    @property
    def label(self) -> str:
        seed_dir = layout.seed_dir_name(self.seed)
        return f"{self.variant}/{seed_dir}" if self.variant else seed_dir

    @property
    def done(self) -> bool:
        return layout.is_done(self.run_dir)


def split_values(text: str) -> list[str]:
    """`--sweep_values` holds values separated by ';'; for a tuple field, a value's items
    are separated by ',' (`proprioception;proprioception,velocity`: two values)."""
    values = [v.strip() for v in text.split(";")]
    return [v for v in values if v]


def parse_value(current, text: str):
    """Parses `text` the way `--config.<field>=<text>` would for a field now `current`."""
    if isinstance(current, tuple):
        if text.lstrip().startswith(("(", "[")):
            return tuple(tuple_parser.TupleParser().parse(text))
        return tuple(v.strip() for v in text.split(",") if v.strip())  # a,b -> ('a', 'b')
    if isinstance(current, str):
        return text
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def value_dirname(field: str, value) -> str:
    """`prior_info=proprioception+velocity`: a directory name for one swept value."""
    text = "+".join(str(v) for v in value) if isinstance(value, tuple | list) else str(value)
    text = re.sub(r"[^A-Za-z0-9_.+-]", "_", text) or "_"
    return f"{field}={text}"


def plan(
    config: ml_collections.ConfigDict,
    workdir: str,
    num_seeds: int,
    field: str = "",
    values: list[str] | None = None,
) -> list[SeedRun]:
    """Every run of the sweep, in launch order (value-major, then seed)."""
    if num_seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {num_seeds}")
    base_seed = int(config.seed)
    variants: list[tuple[str, list[str], ml_collections.ConfigDict]] = []
    if field:
        if not values:
            raise ValueError("--sweep_field needs --sweep_values (separated by ';')")
        try:
            current = _get_field(config, field)
        except (AttributeError, KeyError):
            raise ValueError(f"--sweep_field: the config has no field {field!r}") from None
        if field == "seed":
            raise ValueError("sweep seeds with --seeds, not --sweep_field=seed")
        for text in values:
            variant = ml_collections.ConfigDict(config.to_dict())
            parsed = parse_value(current, text)
            try:
                variant.update_from_flattened_dict({field: parsed})
            except TypeError as error:
                raise ValueError(f"--sweep_values: {text!r} for {field}: {error}") from None
            # a tuple goes to `bprl run` as a literal, which its config flag parses as is
            arg = repr(parsed) if isinstance(parsed, tuple) else text
            variants.append((value_dirname(field, parsed), [f"--config.{field}={arg}"], variant))
    else:
        variants.append(("", [], config))
    runs = []
    for name, overrides, variant in variants:
        for k in range(num_seeds):
            seed = base_seed + k
            seeded = ml_collections.ConfigDict(variant.to_dict())
            seeded.seed = seed
            seed_dir = layout.seed_dir_name(seed)
            runs.append(
                SeedRun(
                    run_dir=os.path.join(workdir, name, seed_dir)
                    if name
                    else os.path.join(workdir, seed_dir),
                    seed=seed,
                    overrides=[*overrides, f"--config.seed={seed}"],
                    config=seeded,
                    variant=name,
                )
            )
    return runs


def _get_field(config: ml_collections.ConfigDict, dotted: str):
    node = config
    for part in dotted.split("."):
        node = node[part]
    return node


def run_command(config_args: list[str], run: SeedRun) -> list[str]:
    """The `bprl run` command line of one run (the sweep's own config flags, then its own)."""
    return [
        sys.executable,
        "-m",
        "bprl.launch.cli",
        "run",
        *config_args,
        *run.overrides,
        f"--workdir={run.run_dir}",
    ]


def _write_done(run: SeedRun, command: list[str], started: float) -> None:
    marker = {
        "seed": run.seed,
        "variant": run.variant,
        "returncode": 0,
        "started": datetime.datetime.fromtimestamp(started).isoformat(timespec="seconds"),
        "finished": datetime.datetime.now().isoformat(timespec="seconds"),
        "seconds": round(time.time() - started, 1),
        "command": command,
    }
    path = os.path.join(run.run_dir, DONE)
    with open(path + ".tmp", "w") as f:
        json.dump(marker, f, indent=2)
    os.replace(path + ".tmp", path)


class _Stop(Exception):
    """SIGTERM received: unwind like Ctrl-C."""


def _raise_stop(signum, frame):
    raise _Stop()


def _terminate(procs: list[subprocess.Popen], grace_secs: float = 20.0) -> None:
    """SIGTERM to each run's process group; SIGKILL what is left after `grace_secs`."""
    for proc in procs:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + grace_secs
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for proc in procs:  # the launcher may be gone while its nodes are not: kill the group
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()


ATTEMPTS_DIR = ".attempts"


def prepare_run_dir(run: SeedRun, say=print) -> bool:
    """Readies a seed's directory before its run starts; True when the run resumes there.

    A directory an earlier attempt left (interrupted, or failed) resumes when it holds a
    checkpoint record; otherwise it is moved into `.attempts/` beside it (kept, not
    deleted) and the seed starts over in a fresh directory.
    """
    if not os.path.isdir(run.run_dir):
        os.makedirs(run.run_dir)
        return False
    if any(os.path.exists(path) for path in checkpoint_record.record_paths(run.run_dir)):
        counts = checkpoint_record.load_counts(run.run_dir)
        steps = counts.get("actor_steps", 0)
        say(f"sweep: resuming {run.label} from its checkpoint ({steps:,} actor steps)")
        return True
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    parent, name = os.path.split(run.run_dir)
    aside = os.path.join(parent, ATTEMPTS_DIR, f"{name}-{stamp}")
    os.makedirs(os.path.dirname(aside), exist_ok=True)
    shutil.move(run.run_dir, aside)
    os.makedirs(run.run_dir)
    say(f"sweep: {run.label} left no checkpoint; its earlier attempt is kept in {aside}")
    return False


def run_local(
    runs: list[SeedRun],
    config_args: list[str],
    parallel: int = 1,
    show_progress: bool = True,
    poll_secs: float = 1.0,
) -> int:
    """Runs the runs without a DONE marker, `parallel` at a time; 0 when all are done."""
    from bprl.launch.rundir.progress import ProgressPrinter, RunProgress

    if parallel < 1:
        raise ValueError(f"--parallel must be >= 1, got {parallel}")
    pending = [run for run in runs if not run.done]
    skipped = len(runs) - len(pending)
    print(
        f"sweep: {len(runs)} runs, {skipped} already done, {len(pending)} to run, "
        f"{parallel} at a time",
        flush=True,
    )
    running: dict[str, tuple[SeedRun, subprocess.Popen, float, list[str], object]] = {}
    failed: list[str] = []
    finished = skipped

    def render() -> str:
        head = f"sweep {finished}/{len(runs)} done" + (f", {len(failed)} failed" if failed else "")
        lines = [progress.poll().line() for (_, _, _, _, progress) in list(running.values())]
        return " || ".join([head, *lines])

    previous_term = signal.signal(signal.SIGTERM, _raise_stop)
    printer = ProgressPrinter(render) if show_progress else None
    try:
        if printer:
            printer.__enter__()
        while pending or running:
            while pending and len(running) < parallel:
                run = pending.pop(0)
                resuming = prepare_run_dir(run, say=print)
                command = run_command(config_args, run)
                with open(os.path.join(run.run_dir, RUN_LOG), "a" if resuming else "w") as log:
                    proc = subprocess.Popen(
                        command,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        start_new_session=True,  # its own process group, see _terminate
                        # the run ends with this sweep, even a SIGKILLed one (lifeline.py)
                        env={**os.environ, lifeline.SWEEP_PID: str(os.getpid())},
                    )
                progress = RunProgress(
                    run.run_dir,
                    run.config.stop.max_actor_steps,
                    run.config.stop.max_learner_steps,
                    label=run.label,
                )
                running[run.run_dir] = (run, proc, time.time(), command, progress)
                print(f"sweep: started {run.label} (pid {proc.pid}) in {run.run_dir}", flush=True)
            time.sleep(poll_secs)
            for key, (run, proc, started, command, _) in list(running.items()):
                code = proc.poll()
                if code is None:
                    continue
                del running[key]
                if code == 0:
                    _write_done(run, command, started)
                    finished += 1
                    print(f"sweep: {run.label} done", flush=True)
                else:
                    failed.append(run.label)
                    log = os.path.join(run.run_dir, RUN_LOG)
                    print(f"sweep: {run.label} failed (exit {code}); see {log}", flush=True)
    except (KeyboardInterrupt, _Stop):
        print("\nsweep: interrupted; stopping the runs in flight", flush=True)
        _terminate([proc for (_, proc, _, _, _) in running.values()])
        print("sweep: stopped; rerun the same command to resume the unfinished seeds")
        return 130
    finally:
        if printer:
            printer.__exit__(None, None, None)
        signal.signal(signal.SIGTERM, previous_term)
    if failed:
        print(f"sweep: {len(failed)} run(s) failed: {', '.join(failed)}")
        return 1
    print(f"sweep: all {len(runs)} runs done")
    return 0


def config_args_from_argv(argv: list[str]) -> list[str]:
    """The `--config...` arguments of the sweep's own command line, to pass to each run."""
    args, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--config" or (arg.startswith("--config.") and "=" not in arg):
            args += argv[i : i + 2]
            i += 2
            continue
        if arg.startswith("--config=") or arg.startswith("--config."):
            args.append(arg)
        i += 1
    return args
