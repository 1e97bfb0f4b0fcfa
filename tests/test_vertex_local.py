"""`--launch=vertex_ai_local`: the Vertex AI job run on emulated hosts, with real processes,
real network namespaces, a real Reverb server and Launchpad nodes (needs root)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import psutil
import pytest
from tests_support import read_checkpoint_record, start_run, wait_for

from launch import defaults, rehearsal, vertex

CLUSTER = ("--config.cluster.project=my-project", "--config.cluster.bucket=gs://my-bucket/bprl")


def _start(workdir: str, *overrides: str) -> subprocess.Popen:
    return start_run(workdir, "--launch=vertex_ai_local", *CLUSTER, *overrides)


def _record(workdir: str) -> dict | None:
    try:
        with open(os.path.join(workdir, rehearsal.RECORD)) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _tree(pids: list[int]) -> list[psutil.Process]:
    """The live processes of the replicas `pids` and their descendants."""
    found = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            found += [proc, *proc.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
    return [p for p in found if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def _leftovers(run_id: str) -> list[str]:
    """Namespaces, links, hosts files and state of rehearsal `run_id` still on the machine."""
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    left = [n for n in names.split() if n.startswith(f"{rehearsal.PREFIX}-{run_id}-")]
    left += [f"link {run_id}" for line in links.splitlines() if run_id in line.split(":")[1]]
    if os.path.isdir(rehearsal.NETNS_ETC):
        left += [n for n in os.listdir(rehearsal.NETNS_ETC) if f"-{run_id}-" in n]
    if os.path.exists(os.path.join(rehearsal.STATE_DIR, f"{run_id}.json")):
        left.append(f"state {run_id}")
    return left


@pytest.fixture
def run(tmp_path):
    """A run directory; afterwards, pass or fail, the run's processes and hosts are gone
    (the test's own cleanup removes what the launcher did not, then fails the test)."""
    workdir = str(tmp_path / "run")
    procs: list[subprocess.Popen] = []
    yield workdir, procs
    for proc in procs:  # a test that failed early: cancel its job as a user would
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=90)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
    record = _record(workdir) or {}
    pids = [r["pid"] for r in record.get("replicas", [])]
    deadline = time.time() + 15  # replicas of a killed launcher die with it (asynchronously)
    while _tree(pids) and time.time() < deadline:
        time.sleep(0.5)
    left_procs = _tree(pids)
    for proc in left_procs:
        proc.kill()
    run_id = record.get("run_id")
    left = _leftovers(run_id) if run_id else []
    if run_id:
        rehearsal.remove_hosts(run_id)
    assert not left_procs, f"replica processes left: {left_procs}"
    assert not left, f"hosts left: {left}"


def _interfaces(namespace: str) -> dict[str, str]:
    out = subprocess.run(
        ["ip", "-n", namespace, "-o", "link"], capture_output=True, text=True, check=True
    ).stdout
    links = {}
    for line in out.splitlines():
        name = line.split(":")[1].strip()
        links[name.split("@")[0]] = line
    return links


def _replay_peers(namespace: str) -> set[str]:
    """Remote addresses of the established TCP connections to the replay's port."""
    out = subprocess.run(
        ["ip", "netns", "exec", namespace, "ss", "-Htn", "state", "established"],
        capture_output=True,
        text=True,
    ).stdout
    peers = set()
    for line in out.splitlines():
        fields = line.split()
        local, remote = fields[-2], fields[-1]
        if local.endswith(f":{vertex.PORT}"):  # e.g. [::ffff:10.213.7.5]:41234
            peers.add(remote.rsplit(":", 1)[0].strip("[]").removeprefix("::ffff:"))
    return peers


def test_rehearsal_runs_to_its_budget_on_its_own_hosts_and_stops_through_the_cancel_call(run):
    workdir, procs = run
    proc = _start(workdir, "--config.stop.max_actor_steps=1500")
    procs.append(proc)
    record = wait_for(
        lambda: (r := _record(workdir)) and r.get("replicas") and r, 120, "replicas started"
    )
    replicas = {r["node"]: r for r in record["replicas"]}
    assert set(replicas) == {
        "replay/0",
        "counter/0",
        "learner/0",
        "actor/0",
        "actor/1",
        "evaluator/0",
        "stopper/0",
    }
    bridge = record["bridge"]
    ours = os.stat("/proc/self/ns/net").st_ino
    inodes = set()
    for r in record["replicas"]:
        # its own namespace, whose only interfaces are lo and eth0, a veth on the bridge
        links = _interfaces(r["namespace"])
        assert set(links) == {"lo", "eth0"}, links
        peer_index = links["eth0"].split("@if")[1].split(":")[0]
        host_side = subprocess.run(
            ["ip", "-o", "link", "show", r["veth"]], capture_output=True, text=True, check=True
        ).stdout
        assert host_side.startswith(f"{peer_index}:") and f"master {bridge}" in host_side
        inode = os.stat(f"/proc/{r['pid']}/ns/net").st_ino
        assert inode == os.stat(f"/run/netns/{r['namespace']}").st_ino
        inodes.add(inode)
        # the environment is the pool's request plus what Vertex AI sets
        with open(f"/proc/{r['pid']}/environ", "rb") as f:
            environ = dict(
                item.split("=", 1) for item in f.read().decode().split("\0") if "=" in item
            )
        [pool] = [p for p in record["job"]["jobSpec"]["workerPoolSpecs"] if _pool_has(p, r)]
        for entry in pool["containerSpec"]["env"]:
            assert environ[entry["name"]] == entry["value"]
        spec = json.loads(environ["CLUSTER_SPEC"])
        assert spec["task"] == {"type": r["pool"], "index": r["index"], "trial": ""}
        assert spec["cluster"][r["pool"]][r["index"]] == f"{r['hostname']}:{vertex.PORT}"
    assert ours not in inodes and len(inodes) == len(replicas)
    # the learner and the actors reached the replay over the bridge, not loopback
    wanted = {replicas[n]["address"] for n in ("learner/0", "actor/0", "actor/1")}
    seen: set[str] = set()

    def connected() -> bool:
        seen.update(_replay_peers(replicas["replay/0"]["namespace"]))
        assert proc.poll() is None, f"the run ended; replay peers seen: {seen}"
        return wanted <= seen

    wait_for(connected, 300, "the learner and both actors connected to the replay's address")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-2000:] + err[-3000:]
    assert "rehearsed job CANCELLED: cancel request from stopper/0" in out
    final = _record(workdir)
    assert final["outcome"]["state"] == "CANCELLED"
    assert final["outcome"]["cancel_from"] == "stopper/0"
    stopper = replicas["stopper/0"]["address"]
    calls = [(q["method"], q["client"], q["status"]) for q in final["requests"]]
    assert calls == [("GET", stopper, 200), ("POST", stopper, 200)]  # token, then cancel
    assert final["requests"][1]["path"].endswith(f"/customJobs/{final['job_id']}:cancel")
    checkpoint = read_checkpoint_record(workdir)
    assert checkpoint["counts"]["actor_steps"] >= 1500
    assert checkpoint["counts"]["learner_steps"] > 0
    # What the real submission would send is what ran (one function builds both)
    config = defaults.load_saved(os.path.join(workdir, "config.json"))
    submitted = vertex.custom_job_spec(
        config, vertex.run_dir(config, "smoke"), vertex.display_name(config, "smoke")
    )
    assert _without_run_dir(submitted, vertex.run_dir(config, "smoke")) == _without_run_dir(
        final["job"], workdir
    )
    pools = submitted["jobSpec"]["workerPoolSpecs"]
    assert [p["replicaCount"] for p in pools] == ["1", "2", "1", "3"]
    assert {p["containerSpec"]["imageUri"] for p in pools} == {
        "us-central1-docker.pkg.dev/my-project/bprl/bprl:latest"
    }


def _pool_has(pool: dict, replica: dict) -> bool:
    return pool["containerSpec"]["args"][0].endswith(f"/nodes/{replica['pool']}.pkl")


def _without_run_dir(job: dict, run_dir: str) -> list:
    """The per-pool requests with the run directory in the args replaced by RUN."""
    pools = json.loads(json.dumps(job["jobSpec"]["workerPoolSpecs"]))
    for pool in pools:
        pool["containerSpec"]["args"] = [
            a.replace(run_dir, "RUN") for a in pool["containerSpec"]["args"]
        ]
    return pools


def test_a_sigkilled_launcher_takes_its_replicas_along_and_its_hosts_are_removed_later(run):
    workdir, procs = run
    proc = _start(workdir, "--config.stop.max_actor_steps=1000000")
    procs.append(proc)
    record = wait_for(
        lambda: (r := _record(workdir)) and r.get("replicas") and r, 120, "replicas started"
    )
    pids = [r["pid"] for r in record["replicas"]]
    alive = _tree(pids)
    assert {p.pid for p in alive} >= set(pids), (pids, alive)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    wait_for(lambda: not _tree(pids), 15, f"the replicas to die with their launcher: {pids}")
    assert _leftovers(record["run_id"])  # nothing could remove them yet
    removed = rehearsal.remove_stale_hosts()
    assert record["run_id"] in removed, (record["run_id"], removed)
    assert _leftovers(record["run_id"]) == []


def test_sigterm_to_the_launcher_cancels_the_job_and_removes_its_hosts(run):
    workdir, procs = run
    proc = _start(workdir, "--config.stop.max_actor_steps=1000000")
    procs.append(proc)
    record = wait_for(
        lambda: (r := _record(workdir)) and r.get("replicas") and r, 120, "replicas started"
    )
    assert _leftovers(record["run_id"])
    proc.send_signal(signal.SIGTERM)  # Ctrl-C or SIGTERM: the job is cancelled
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "rehearsed job CANCELLED: SIGTERM to the launcher" in out
    assert _leftovers(record["run_id"]) == []
    assert not _tree([r["pid"] for r in record["replicas"]])


@pytest.mark.slow  # about 70 s
def test_sigterm_to_every_replica_writes_a_final_checkpoint_and_leaves_nothing(run):
    workdir, procs = run
    proc = _start(workdir, "--config.stop.max_actor_steps=1000000")
    procs.append(proc)
    wait_for(
        lambda: (read_checkpoint_record(workdir) or {}).get("counts", {}).get("learner_steps"),
        400,
        "a first checkpoint",
    )
    record = _record(workdir)
    sent = time.time()
    for r in record["replicas"]:  # what Vertex AI does when the job is cancelled
        os.kill(r["pid"], signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert time.time() - sent <= 40, "the replicas did not stop within their grace period"
    checkpoint = read_checkpoint_record(workdir)
    assert checkpoint["time"] >= sent, "no checkpoint was written after SIGTERM"
    assert os.path.exists(checkpoint["replay"])
    assert _leftovers(record["run_id"]) == []


@pytest.mark.slow  # about 100 s
def test_a_killed_actor_worker_is_replaced_and_the_run_completes(run):
    workdir, procs = run
    proc = _start(workdir, "--config.stop.max_actor_steps=6000")
    procs.append(proc)
    record = wait_for(
        lambda: (r := _record(workdir)) and r.get("replicas") and r, 120, "replicas started"
    )
    actor = next(r for r in record["replicas"] if r["node"] == "actor/0")

    def workers():
        return [p for p in _tree([actor["pid"]]) if "spawn_main" in " ".join(p.cmdline())]

    [victim] = wait_for(workers, 300, "the actor's worker process")
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    replaced = wait_for(
        lambda: [w for w in workers() if w.pid != victim.pid], 90, "a new worker process"
    )
    assert victim.pid not in {w.pid for w in replaced}
    out, err = proc.communicate(timeout=400)
    assert proc.returncode == 0, out[-2000:] + err[-3000:]
    assert read_checkpoint_record(workdir)["counts"]["actor_steps"] >= 6000
    assert _leftovers(record["run_id"]) == []


@pytest.mark.slow  # about 3-7 minutes
def test_a_dead_replica_fails_the_job_with_final_checkpoints_and_the_run_resumes(run):
    workdir, procs = run
    proc = _start(workdir, "--config.stop.max_actor_steps=1000000")
    procs.append(proc)
    wait_for(
        lambda: (read_checkpoint_record(workdir) or {}).get("counts", {}).get("learner_steps"),
        400,
        "a first checkpoint",
    )
    record = _record(workdir)
    actor = next(r for r in record["replicas"] if r["node"] == "actor/1")
    killed = time.time()
    os.kill(actor["pid"], signal.SIGKILL)  # the replica's own process, not a worker
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 1
    assert "rehearsed job FAILED: actor/1 exited with SIGKILL" in out
    assert "error: actor/1 failed" in err
    assert _record(workdir)["outcome"]["failed"] == ["actor/1"]
    checkpoint = read_checkpoint_record(workdir)
    assert checkpoint["time"] >= killed  # the others stopped on SIGTERM with checkpoints
    assert _leftovers(record["run_id"]) == []
    at_failure = checkpoint["counts"]["actor_steps"]
    again = _start(workdir, f"--config.stop.max_actor_steps={at_failure + 800}")
    procs.append(again)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err[-3000:]
    assert f"resuming {workdir}: learner step {checkpoint['counts']['learner_steps']}" in out
    assert "rehearsed job CANCELLED: cancel request from stopper/0" in out
    with open(os.path.join(workdir, "logs", "stopper", "0")) as f:
        reached = int(f.read().split("budget reached (actor steps ")[1].split(",")[0])
    assert reached >= at_failure + 800  # the counts went on from the checkpoint's
    assert _leftovers(_record(workdir)["run_id"]) == []
