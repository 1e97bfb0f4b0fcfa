"""The default 32-actor program on this machine (slow: run with `make test-slow`)."""

from __future__ import annotations

import os
import subprocess
import threading
import time

import psutil
import pytest

from bprl.launch.rundir import events
from tests_support import BPRL, CONFIG, REPO, run_processes


@pytest.mark.slow
def test_default_32_actor_program_starts_inserts_and_stops(tmp_path):
    workdir = str(tmp_path / "run32")
    peak = {"rss": 0, "procs": 0}
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            procs = run_processes(workdir)
            rss = 0
            for proc in procs:
                try:
                    rss += proc.memory_info().rss
                except psutil.NoSuchProcess:
                    pass
            peak["rss"] = max(peak["rss"], rss)
            peak["procs"] = max(peak["procs"], len(procs))
            time.sleep(1.0)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    started = time.time()
    result = subprocess.run(
        [
            BPRL,
            "run",
            f"--config={CONFIG}:tiny",
            "--config.actors.num_actors=32",
            "--config.stop.max_actor_steps=20000",
            f"--workdir={workdir}",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=REPO,
    )
    elapsed = time.time() - started
    done.set()
    assert result.returncode == 0, result.stderr[-3000:]
    actor_started = []
    for actor_id in range(32):
        logdir = os.path.join(workdir, "actors", str(actor_id))
        curves = events.read_scalars(logdir)
        assert curves.get("actor_steps"), f"actor {actor_id} logged no episode"
        # Event file names carry their creation time: the actor's loop had started.
        actor_started.append(min(int(name.split(".")[3]) for name in os.listdir(logdir)))
    assert run_processes(workdir) == []
    print(
        f"32 actors: wall {elapsed:.1f}s, all actors running after "
        f"{max(actor_started) - started:.0f}s, peak RSS {peak['rss'] / 2**30:.2f} GiB "
        f"over {peak['procs']} processes"
    )
