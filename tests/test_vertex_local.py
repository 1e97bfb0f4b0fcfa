"""`--launch=vertex_ai_local`: the Vertex AI job run on emulated machines, with real
processes, real network, mount, PID and UTS namespaces, a real Cloud Storage emulator
(fake-gcs-server), a real Reverb server and Launchpad nodes (needs root and tini)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from bprl.launch.config import defaults
from bprl.launch.vertex import (
    gcs_emulator,
    job_request,
    rehearsal,
    rehearsal_hosts,
    rehearsal_sandbox,
    rehearsal_stand_in,
)
from bprl.launch.vertex import job as vertex
from tests_support import read_checkpoint_record, start_run, wait_for

# pytest-xdist (the default run): these tests stay on one worker, for
# one rehearsal at a time: its cleanup checks the machine's rehearsal routes.
pytestmark = pytest.mark.xdist_group("test_vertex_local")

IMAGE = "us-central1-docker.pkg.dev/my-project/bprl/bprl@sha256:" + "0" * 64

CLUSTER = ("--config.cluster.project=my-project", "--config.cluster.bucket=gs://my-bucket/bprl")


def _start(workdir: str, *overrides: str) -> subprocess.Popen:
    return start_run(workdir, "--launch=vertex_ai_local", *CLUSTER, *overrides)


def _record(workdir: str) -> dict | None:
    try:
        with open(os.path.join(workdir, rehearsal.RECORD)) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _emulators(workdir: str) -> list[psutil.Process]:
    """The live fake-gcs-server processes serving the bucket under `workdir`."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        line = " ".join(proc.info["cmdline"] or [])
        if "fake-gcs-server" in line and f"-filesystem-root={workdir}" in line:
            found.append(proc)
    return found


def _tree(pids: list[int]) -> list[psutil.Process]:
    """The live processes of the replicas `pids` and their descendants."""
    found = []
    for pid in pids:
        if not pid:  # (psutil.Process(None) is this process)
            continue
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
    left = [n for n in names.split() if n.startswith(f"{rehearsal_hosts.PREFIX}-{run_id}-")]
    left += [f"link {run_id}" for line in links.splitlines() if run_id in line.split(":")[1]]
    if os.path.isdir(rehearsal_hosts.NETNS_ETC):
        left += [n for n in os.listdir(rehearsal_hosts.NETNS_ETC) if f"-{run_id}-" in n]
    if os.path.exists(os.path.join(rehearsal_hosts.STATE_DIR, f"{run_id}.json")):
        left.append(f"state {run_id}")
    routes = subprocess.run(
        ["ip", "route", "show", "proto", rehearsal_hosts.ROUTE_PROTO],
        capture_output=True,
        text=True,
    ).stdout
    left += [f"route {line}" for line in routes.splitlines() if line.strip()]
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
        rehearsal_hosts.remove_hosts(run_id)
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
        if local.endswith(f":{job_request.PORT}"):  # e.g. [::ffff:10.213.7.5]:41234
            peers.add(remote.rsplit(":", 1)[0].strip("[]").removeprefix("::ffff:"))
    return peers


def _view(workdir: str) -> str:
    """The bucket's objects of the rehearsed run directory, as files on this machine."""
    return rehearsal.run_dir_view(workdir)


def _status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)


def _environ(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as f:
        return dict(item.split("=", 1) for item in f.read().decode().split("\0") if "=" in item)


def _connect_error(address: str, port: int) -> int:
    """The errno of a TCP connection from this machine to `address:port` (0: it
    connected). An unreachable error at once: no packet left this machine."""
    import socket

    try:
        with socket.create_connection((address, port), timeout=2):
            return 0
    except OSError as error:
        return error.errno or -1


def test_rehearsal_runs_to_its_budget_on_its_own_machines_and_ends_succeeded(run, monkeypatch):
    workdir, procs = run
    # The stand-in refuses any cancel (a service account without the permission): a run
    # that reaches its budget must end by itself all the same.
    monkeypatch.setenv(rehearsal_stand_in.CANCEL_STATUS_ENV, "403")
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
    assert record["job"]["jobSpec"]["workerPoolSpecs"][0]["replicaCount"] == "1"
    assert replicas["stopper/0"]["pool"] == "workerpool0"  # the primary replica
    bridge = record["bridge"]
    ours = os.stat("/proc/self/ns/net").st_ino
    inodes = set()
    for r in record["replicas"]:
        # its own network namespace, whose only interfaces are lo and eth0, on the bridge
        links = _interfaces(r["namespace"])
        assert set(links) == {"lo", "eth0"}, links
        peer_index = links["eth0"].split("@if")[1].split(":")[0]
        host_side = subprocess.run(
            ["ip", "-o", "link", "show", r["veth"]], capture_output=True, text=True, check=True
        ).stdout
        assert host_side.startswith(f"{peer_index}:") and f"master {bridge}" in host_side
        init = r["pid"]  # the replica's PID 1, as this machine numbers it
        inode = os.stat(f"/proc/{init}/ns/net").st_ino
        assert inode == os.stat(f"/run/netns/{r['namespace']}").st_ino
        inodes.add(inode)
        # the image's init is PID 1 of its own PID namespace, the node its child, and
        # both run as the image's user from the image's working directory
        status = _status(init)
        assert status["NSpid"].split()[-1] == "1" and "tini" in status["Name"]
        assert os.path.basename(os.readlink(f"/proc/{init}/exe")) == "tini"
        assert status["Uid"].split()[0] == str(rehearsal_sandbox.IMAGE_UID)
        for ns in ("mnt", "pid", "uts"):
            assert os.stat(f"/proc/{init}/ns/{ns}").st_ino != os.stat(f"/proc/self/ns/{ns}").st_ino
        [node] = psutil.Process(init).children()
        assert node.uids().real == rehearsal_sandbox.IMAGE_UID
        assert os.readlink(f"/proc/{node.pid}/cwd") == rehearsal_sandbox.IMAGE_WORKDIR
        # no shared local directory: the launcher's folder and this machine's /tmp are
        # not what the replica sees
        seen_there = f"/proc/{init}/root{workdir}"
        assert not os.path.exists(seen_there) or os.listdir(seen_there) == []
        assert os.listdir(workdir)  # (here the folder has the logs and the bucket)
        # the environment: the image's, the pool's request, what Vertex AI sets
        environ = _environ(node.pid)
        [pool] = [p for p in record["job"]["jobSpec"]["workerPoolSpecs"] if _pool_has(p, r)]
        for entry in pool["containerSpec"]["env"]:
            assert environ[entry["name"]] == entry["value"]
        for name, value in job_request.IMAGE_ENV.items():
            assert environ[name] == value
        assert environ["HOME"] == rehearsal_sandbox.IMAGE_HOME
        assert environ[gcs_emulator.ENDPOINT_ENV] == record["storage"]["endpoint"]
        for name, value in job_request.STORAGE_ENV.items():  # the filesystem that reaches it
            assert environ[name] == value
        spec = json.loads(environ["CLUSTER_SPEC"])
        assert spec["task"] == {"type": r["pool"], "index": r["index"], "trial": ""}
        assert spec["cluster"][r["pool"]][r["index"]] == f"{r['hostname']}:{job_request.PORT}"
    assert ours not in inodes and len(inodes) == len(replicas)
    # the learner and the actors reached the replay over the bridge, not loopback; a
    # process outside the job's namespaces cannot reach any node's port
    replay = replicas["replay/0"]
    wanted = {replicas[n]["address"] for n in ("learner/0", "actor/0", "actor/1")}
    seen: set[str] = set()

    def connected() -> bool:
        seen.update(_replay_peers(replay["namespace"]))
        assert proc.poll() is None, f"the run ended; replay peers seen: {seen}"
        return wanted <= seen

    wait_for(connected, 300, "the learner and both actors connected to the replay's address")
    import errno

    started = time.monotonic()
    assert _connect_error(replay["address"], job_request.PORT) in (
        errno.ENETUNREACH,
        errno.EHOSTUNREACH,
    )
    assert time.monotonic() - started < 1.0  # refused here, not timed out on a network
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-2000:] + err[-3000:]
    assert "rehearsed job SUCCEEDED: stopper/0 (workerpool0-0) finished" in out
    final = _record(workdir)
    assert final["outcome"]["state"] == "SUCCEEDED"
    assert final["exit_codes"]["stopper/0"] == 0
    assert not [q for q in final["requests"] if q["method"] == "POST"]  # no cancel needed
    # every file of the run is an object in the emulated bucket
    view = _view(workdir)
    checkpoint = read_checkpoint_record(view)
    assert checkpoint["counts"]["actor_steps"] >= 1500
    assert checkpoint["counts"]["learner_steps"] > 0
    assert checkpoint["learner"].startswith(f"gs://{rehearsal.BUCKET}/")
    assert checkpoint["replay"].startswith(f"gs://{rehearsal.BUCKET}/")
    replay_dir = os.path.join(view, "checkpoints", "replay", os.path.basename(checkpoint["replay"]))
    assert {"DONE", "tables.tfrecord", "chunks.tfrecord"} <= set(os.listdir(replay_dir))
    # the one written with the final record is the newest: the replay node, stopping
    # after the budget, uploads no second one that no record names
    assert max(os.listdir(os.path.dirname(replay_dir))) == os.path.basename(replay_dir)
    assert os.path.exists(os.path.join(view, "checkpoints", "learner", "checkpoint"))
    with open(os.path.join(view, "FINISHED.json")) as f:
        assert json.load(f)["counts"]["actor_steps"] >= 1500
    for part in ("learner", "evaluator_0", "actors/0", "actors/1"):
        assert any(n.startswith("events.out.tfevents") for n in os.listdir(f"{view}/{part}"))
    assert os.path.exists(os.path.join(view, rehearsal.RECORD))
    assert final["storage"]["bytes_uploaded"] > 0
    # `bprl report` of the rehearsal's folder says where the run's objects are
    told = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "bprl"), "report", workdir],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert told.returncode == 1 and f"bprl report {view}" in told.stderr, told.stderr
    # What the real submission would send is what ran (one function builds both)
    config = defaults.load_saved(os.path.join(view, "config.json"))
    config.cluster.image = IMAGE
    submitted = job_request.custom_job_spec(
        config, vertex.run_dir(config, "smoke"), job_request.display_name(config, "smoke")
    )
    assert _without_run_dir(submitted, vertex.run_dir(config, "smoke")) == _without_run_dir(
        final["job"], final["run_dir"], image=IMAGE
    )
    pools = submitted["jobSpec"]["workerPoolSpecs"]
    assert [p["replicaCount"] for p in pools] == ["1", "1", "4", "1"]
    assert submitted["jobSpec"]["scheduling"] == final["job"]["jobSpec"]["scheduling"]


def test_a_refused_cancel_is_one_line_and_not_retried(tmp_path):
    """vertex_stop.cancel_job against the rehearsal's stand-in answering 403."""
    import io
    import logging

    from absl import logging as absl_logging

    from bprl.launch.vertex import stop as vertex_stop

    os.environ[rehearsal_stand_in.CANCEL_STATUS_ENV] = "403"
    try:
        stand_in = rehearsal_stand_in.StandIn(
            "127.0.0.3", "p", "us-central1", "123", lambda c: None
        )
    finally:
        del os.environ[rehearsal_stand_in.CANCEL_STATUS_ENV]
    stand_in.start()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    absl_logging.get_absl_logger().addHandler(handler)
    try:
        env = {
            "BPRL_VERTEX_REGION": "us-central1",
            "BPRL_VERTEX_PROJECT": "p",
            "CLOUD_ML_JOB_ID": "projects/1/locations/us-central1/customJobs/123",
            vertex_stop.API_ENDPOINT_ENV: stand_in.endpoint,
        }
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        token_url = vertex_stop.METADATA_TOKEN_URL
        vertex_stop.METADATA_TOKEN_URL = token_url.replace(
            "http://metadata.google.internal", stand_in.endpoint
        )
        started = time.time()
        assert vertex_stop.cancel_job() is False
        assert time.time() - started < 5  # a refusal is not retried
    finally:
        vertex_stop.METADATA_TOKEN_URL = token_url
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        absl_logging.get_absl_logger().removeHandler(handler)
        stand_in.stop()
    lines = [line for line in stream.getvalue().splitlines() if "cancel" in line]
    assert len(lines) == 1 and "403" in lines[0] and "aiplatform.customJobs.cancel" in lines[0]
    posts = [q for q in stand_in.requests if q["method"] == "POST"]
    assert len(posts) == 1 and posts[0]["status"] == 403
    assert posts[0]["path"].endswith("/customJobs/123:cancel")  # the id, not the resource name


def _pool_has(pool: dict, replica: dict) -> bool:
    return pool["containerSpec"]["args"][0].endswith(f"/nodes/{replica['pool']}.pkl")


def _without_run_dir(job: dict, run_dir: str, image: str = "") -> list:
    """The per-pool requests with the run directory in the args replaced by RUN (and the
    image by `image`: a rehearsal runs this machine's code under any image name)."""
    pools = json.loads(json.dumps(job["jobSpec"]["workerPoolSpecs"]))
    for pool in pools:
        pool["containerSpec"]["args"] = [
            a.replace(run_dir, "RUN") for a in pool["containerSpec"]["args"]
        ]
        if image:
            pool["containerSpec"]["imageUri"] = image
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
    # The storage emulator too (it served from the services namespace).
    wait_for(lambda: not _emulators(workdir), 15, "the storage emulator to die with it")
    assert _leftovers(record["run_id"])  # nothing could remove them yet
    removed = rehearsal_hosts.remove_stale_hosts()
    assert record["run_id"] in removed, (record["run_id"], removed)
    assert _leftovers(record["run_id"]) == []


@pytest.mark.slow  # ~1 min; the refused cancel and a SIGKILLed launcher stay in the default run
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
    proc = _start(
        workdir, "--config.stop.max_actor_steps=1000000", "--config.checkpoint.every_seconds=15"
    )
    procs.append(proc)
    view = _view(workdir)
    wait_for(
        lambda: (read_checkpoint_record(view) or {}).get("counts", {}).get("learner_steps"),
        400,
        "a first checkpoint",
    )
    record = _record(workdir)
    sent = time.time()
    for r in record["replicas"]:  # what Vertex AI does when the job is cancelled
        os.kill(r["pid"], signal.SIGTERM)
    out, err = proc.communicate(timeout=90)
    assert time.time() - sent <= 60, "the replicas did not stop within their grace period"
    assert "rehearsed job CANCELLED: every replica stopped" in out, out[-3000:]
    assert not os.path.exists(os.path.join(view, "FINISHED.json"))  # not a finished run
    assert _record(workdir)["exit_codes"]["stopper/0"] != 0  # nor a SUCCEEDED job
    checkpoint = read_checkpoint_record(view)
    assert checkpoint["time"] >= sent, "no checkpoint was written after SIGTERM"
    replay = os.path.join(view, "checkpoints", "replay", os.path.basename(checkpoint["replay"]))
    assert os.path.exists(os.path.join(replay, "DONE"))
    assert _leftovers(record["run_id"]) == []
    with open("/proc/self/mountinfo") as f:
        assert workdir not in f.read()  # the replicas' mounts went with their namespaces


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
    assert read_checkpoint_record(_view(workdir))["counts"]["actor_steps"] >= 6000
    assert _leftovers(record["run_id"]) == []


@pytest.mark.slow  # about 5-9 minutes
def test_a_killed_replica_restarts_the_whole_job_from_the_bucket_and_a_rerun_resumes(run):
    import threading

    workdir, procs = run
    # The learner is killed at the first checkpoint that has learner steps, which must come
    # well before the budget. Actors are tied to the learner by the rate limiter (about 20
    # actor steps per learner step here), so the margin is what the learner does in one
    # checkpoint interval: with 15 s intervals a CI machine was at 8,400 actor steps by then.
    # 5 s intervals and a 10,000-step budget leave it about 3.5 times that speed.
    budget = 10_000
    proc = _start(
        workdir, f"--config.stop.max_actor_steps={budget}", "--config.checkpoint.every_seconds=5"
    )
    procs.append(proc)
    view = _view(workdir)
    history: list[tuple[int, int]] = []
    done = threading.Event()

    def watch() -> None:  # the counts of every record written, in order
        while not done.wait(0.5):
            counts = (read_checkpoint_record(view) or {}).get("counts")
            if counts and (not history or history[-1] != _pair(counts)):
                history.append(_pair(counts))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    first = wait_for(
        lambda: (
            _exited(proc)
            or ((c := read_checkpoint_record(view)) and c["counts"].get("learner_steps") and c)
        ),
        400,
        "a first checkpoint",
    )
    assert first["counts"]["actor_steps"] < budget and not os.path.exists(f"{view}/FINISHED.json")
    record = _record(workdir)
    learner = next(r for r in record["replicas"] if r["node"] == "learner/0")
    os.kill(learner["pid"], signal.SIGKILL)  # the replica's init: the whole replica dies
    out, err = proc.communicate(timeout=600)
    done.set()
    watcher.join()
    assert proc.returncode == 0, out[-3000:] + err[-3000:]
    assert "rehearsed job: learner/0 exited with" in out, out[-3000:]
    assert "restarting the whole job from its last complete checkpoint (restart 1 of 3)" in out
    assert "rehearsed job SUCCEEDED" in out
    final = _record(workdir)
    assert final["outcome"]["restarts"] == 1 and len(final["job_restarts"]) == 1
    # the restarted nodes went on from the checkpoint: the counts never went backwards
    assert len(history) >= 2, history
    for before, after in zip(history, history[1:], strict=False):
        assert after[0] >= before[0] and after[1] >= before[1], history
    with open(os.path.join(workdir, "logs", "learner", "0")) as f:
        assert "learner restored from gs://" in f.read()
    checkpoint = read_checkpoint_record(view)
    assert checkpoint["counts"]["actor_steps"] >= 5000
    # `bprl run` on the directory again resumes from the bucket's last checkpoint
    again = _start(
        workdir, f"--config.stop.max_actor_steps={checkpoint['counts']['actor_steps'] + 800}"
    )
    procs.append(again)
    out, err = again.communicate(timeout=400)
    assert again.returncode == 0, err[-3000:]
    assert f"learner step {checkpoint['counts']['learner_steps']}" in out, out[-2000:]
    assert "rehearsed job SUCCEEDED" in out
    resumed = read_checkpoint_record(view)
    assert resumed["counts"]["actor_steps"] >= checkpoint["counts"]["actor_steps"] + 800
    assert resumed["counts"]["learner_steps"] >= checkpoint["counts"]["learner_steps"]
    assert _leftovers(_record(workdir)["run_id"]) == []


def _exited(proc: subprocess.Popen) -> None:
    """Fails the test at once (with the launcher's output) if the launcher has exited."""
    if proc.poll() is not None:
        out, err = proc.communicate()
        pytest.fail(f"the launcher exited with {proc.returncode}: {out[-2000:]} {err[-3000:]}")


def _pair(counts: dict) -> tuple[int, int]:
    return int(counts.get("actor_steps", 0)), int(counts.get("learner_steps", 0))
