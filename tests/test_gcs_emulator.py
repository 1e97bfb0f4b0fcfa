"""Run directories on object storage: the storage layer, the checkpoint records, the
learner checkpoint and the mirrored Reverb checkpoints, against a real Cloud Storage
emulator (fake-gcs-server) through TensorFlow's modular GCS filesystem, as the nodes of
a Vertex AI job (and its rehearsal) reach gs://.

The emulator runs in this process; the code under test runs in a child process, which
sets TF_USE_MODULAR_FILESYSTEM before TensorFlow is imported (as every Vertex node does)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from bprl.launch.vertex import gcs_emulator, job_request

BUCKET = "test-bucket"


@pytest.fixture
def emulator(tmp_path):
    with gcs_emulator.StorageEmulator(str(tmp_path / "storage"), BUCKET) as em:
        yield em


def _run_child(emulator, code: str, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.update(job_request.STORAGE_ENV)
    env[gcs_emulator.ENDPOINT_ENV] = emulator.endpoint
    env.update(extra_env or {})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _result(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT ") :])


def test_storage_layer_and_checkpoint_records_on_gs(emulator):
    code = f"""
    import json
    from bprl.launch.rundir import checkpoint_record
    from bprl.launch.rundir import storage
    from bprl.launch.program.tensorboard import TensorBoardLogger
    run = "gs://{BUCKET}/runs/r1"
    out = {{}}
    storage.makedirs(run)
    storage.write_json(storage.join(run, "config.json"), {{"task": "t", "seed": 3}})
    out["config"] = storage.read_json(storage.join(run, "config.json"))
    out["exists"] = storage.exists(storage.join(run, "config.json"))
    out["missing"] = storage.exists(storage.join(run, "nope.json"))
    out["listdir"] = storage.listdir(run)
    # checkpoint records: write, keep the previous, read back, fall back when damaged
    checkpoint_record.write_record(run, {{"learner": "a", "counts": {{"actor_steps": 1}}}}, True)
    checkpoint_record.write_record(run, {{"learner": "b", "counts": {{"actor_steps": 2}}}}, True)
    out["newest"] = checkpoint_record.load_record(checkpoint_record.counts_path(run))
    out["previous"] = checkpoint_record.load_record(checkpoint_record.previous_counts_path(run))
    out["counts"] = checkpoint_record.load_counts(run)
    for text in ("x", "yy", "zzz"):  # this process reads back what it rewrote
        storage.write_text(storage.join(run, "again.txt"), text)
        out.setdefault("again", []).append(storage.read_text(storage.join(run, "again.txt")))
    with checkpoint_record.record_lock(run):
        out["locked"] = True
    storage.write_text(checkpoint_record.counts_path(run), "{{truncated")
    out["counts_after_damage"] = checkpoint_record.load_counts(run)
    # a TensorBoard event file on gs:// flushes at most every 30 s
    logger = TensorBoardLogger(storage.join(run, "learner"), "learner", flush_secs=0)
    out["flush_secs"] = logger._flush_secs
    logger.write({{"loss": 1.0}})
    logger.close()
    out["events"] = [n for n in storage.listdir(storage.join(run, "learner"))]
    print("RESULT " + json.dumps(out))
    """
    out = _result(_run_child(emulator, code))
    assert out["config"] == {"task": "t", "seed": 3}
    assert out["exists"] is True and out["missing"] is False
    assert "config.json" in out["listdir"]
    assert out["newest"]["learner"] == "b" and out["previous"]["learner"] == "a"
    assert out["counts"] == {"actor_steps": 2} and out["locked"]
    assert out["again"] == ["x", "yy", "zzz"]
    assert out["counts_after_damage"] == {"actor_steps": 1}  # the previous record
    assert out["flush_secs"] >= 30
    assert any(n.startswith("events.out.tfevents") for n in out["events"])
    # the objects are in the bucket (the emulator's files), not in a local gs: folder
    assert os.path.exists(emulator.local_path(f"gs://{BUCKET}/runs/r1/checkpoints/counts.json"))
    assert not os.path.exists("gs:")


def test_learner_and_replay_checkpoints_reach_gs_and_restore_together(emulator, tmp_path):
    code = f"""
    import json, os
    import reverb
    import tensorflow as tf
    from bprl.launch.rundir import checkpoint_record, replay_mirror, resume
    from bprl.launch.rundir import storage
    run = "gs://{BUCKET}/runs/r2"
    out = {{}}
    # the learner's checkpoint, through tf.train.CheckpointManager as the node writes it
    v = tf.Variable([1.0, 2.0])
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(v=v), checkpoint_record.checkpoint_dir(run, "learner"), 3
    )
    learner_path = manager.save()
    # Reverb writes on this machine's disk; the replay node's mirror copies it to gs://
    mirror = replay_mirror.ReplayMirror(run)
    mirror.restore()
    checkpointer = reverb.checkpointers.DefaultCheckpointer(mirror.staging)
    server = reverb.Server([reverb.Table.queue("q", 100)], checkpointer=checkpointer)
    client = reverb.Client(f"localhost:{{server.port}}")
    for i in range(7):
        client.insert([float(i)], {{"q": 1.0}})
    local = client.checkpoint()
    out["mirrored"] = mirror.sync()
    out["remote"] = replay_mirror.wait_for_mirror(run, local, timeout=30)
    checkpoint_record.write_record(
        run, {{"learner": learner_path, "replay": out["remote"], "counts": {{}}}}, True
    )
    server.stop()
    # a replaced replay machine: empty disk, restores what the record names
    import shutil
    shutil.rmtree(mirror.staging)
    again = replay_mirror.ReplayMirror(run)
    out["restored_from"] = again.restore()
    server = reverb.Server(
        [reverb.Table.queue("q", 100)],
        checkpointer=reverb.checkpointers.DefaultCheckpointer(again.staging),
    )
    out["items"] = reverb.Client(f"localhost:{{server.port}}").server_info()["q"].current_size
    server.stop()
    v.assign([0.0, 0.0])
    tf.train.Checkpoint(v=v).restore(learner_path).assert_existing_objects_matched()
    out["v"] = v.numpy().tolist()
    record = checkpoint_record.load_record(checkpoint_record.counts_path(run))
    out["check"] = resume.check_record(record)
    print("RESULT " + json.dumps(out))
    """
    out = _result(_run_child(emulator, code))
    assert len(out["mirrored"]) == 1
    assert out["remote"].startswith(f"gs://{BUCKET}/runs/r2/checkpoints/replay/")
    assert out["restored_from"] == out["remote"]
    assert out["items"] == 7
    assert out["v"] == [1.0, 2.0]
    assert out["check"] is None  # the record's checkpoints read back
    replay = emulator.local_path(out["remote"])
    assert {"DONE", "tables.tfrecord", "chunks.tfrecord"} <= set(os.listdir(replay))


def test_the_gcs_read_cache_setting_is_needed(emulator):
    """Why job_request.STORAGE_ENV turns the plugin's read cache on: without it, a read at a
    lower offset than the previous one returns wrong bytes or crashes the process (seen
    with tensorflow-io-gcs-filesystem 0.25.0). If this starts passing, the setting can go."""
    code = f"""
    import json
    import tensorflow as tf
    data = bytes(range(192))
    path = "gs://{BUCKET}/x.bin"
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(data)
    with tf.io.gfile.GFile(path, "rb") as f:
        f.seek(144)
        tail = f.read(48)
        f.seek(0)
        head = f.read(100)
    print("RESULT " + json.dumps({{"tail": tail == data[144:], "head": head == data[:100]}}))
    """
    cached = _result(_run_child(emulator, code))
    assert cached == {"tail": True, "head": True}
    uncached = _run_child(emulator, code, {"GCS_READ_CACHE_MAX_SIZE_MB": "0"})
    assert uncached.returncode != 0 or _result(uncached)["head"] is False


def test_a_prior_artifact_is_shipped_to_the_run_directory_and_loads_from_it(emulator, tmp_path):
    """A Vertex AI run's nodes cannot read a workstation path: the artifact is copied
    into the run directory on storage, checked as locally, and the config names the copy."""
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    code = f"""
    import json, sys
    import numpy as np
    sys.path.insert(0, {tests_dir!r})
    from test_transfer import _config, _make_artifact
    from bprl.agents import prior_artifact
    from bprl.launch.program import builders
    from bprl.launch.rundir import storage
    from bprl.launch.vertex import job_request
    config = _config("tiny")
    local = {str(tmp_path / "prior")!r}
    networks, env = _make_artifact(local, config)
    config.prior.artifact = local
    shipped = job_request.ship_prior_artifact(config, "gs://{BUCKET}/runs/r3")
    remote = str(shipped.prior.artifact)
    out = {{"remote": remote, "original": str(config.prior.artifact)}}
    out["metadata_kind"] = prior_artifact.read_metadata(remote)["kind"]
    fresh = builders.RunBuilder(config).make_networks()
    prior_artifact.load_into(remote, fresh)
    modules = networks.kind.transfer_modules(networks)
    loaded = fresh.kind.transfer_modules(fresh)
    out["equal"] = all(
        np.array_equal(a.numpy(), b.numpy())
        for name in modules
        for a, b in zip(modules[name].variables, loaded[name].variables)
    )
    # a damaged copy is refused as locally
    storage.write_text(storage.join(remote, "prior.json"), "{{")
    try:
        prior_artifact.read_metadata(remote)
        out["damaged"] = ""
    except prior_artifact.ArtifactError as error:
        out["damaged"] = str(error)
    print("RESULT " + json.dumps(out))
    """
    out = _result(_run_child(emulator, code))
    assert out["remote"] == f"gs://{BUCKET}/runs/r3/prior_artifact"
    assert out["original"] == str(tmp_path / "prior")  # the caller's config is unchanged
    assert out["metadata_kind"] == "mlp" and out["equal"] is True
    assert "corrupt" in out["damaged"]


def test_bprl_report_reads_a_sweep_on_gs_and_writes_its_report_there(emulator, tmp_path):
    """A Vertex AI sweep's seeds are on object storage and end with FINISHED.json (no
    DONE marker): `bprl report gs://...` reads them and puts the report beside them."""
    code = f"""
    import json
    import tensorflow as tf
    from bprl.launch.rundir import storage
    root = "gs://{BUCKET}/sweeps/s1"
    for seed, last in ((0, 5.0), (1, 7.0)):
        run = f"{{root}}/seed_{{seed}}"
        writer = tf.summary.create_file_writer(f"{{run}}/evaluator_0")
        with writer.as_default():
            for step, value in ((0, 1.0), (1000, last)):
                tf.summary.scalar("policy_return", value, step=step)
                tf.summary.scalar("prior_return", value / 2, step=step)
        writer.close()
        storage.write_json(f"{{run}}/FINISHED.json", {{"counts": {{"actor_steps": 1000}}}})
        storage.write_text(f"{{run}}/checkpoints/counts.json", "{{}}")  # not copied down
    # an unfinished seed is left out
    writer = tf.summary.create_file_writer(f"{{root}}/seed_2/evaluator_0")
    with writer.as_default():
        tf.summary.scalar("policy_return", 1e6, step=0)
    writer.close()
    print("RESULT " + json.dumps({{}}))
    """
    _result(_run_child(emulator, code))
    env = dict(os.environ, **job_request.STORAGE_ENV)
    env[gcs_emulator.ENDPOINT_ENV] = emulator.endpoint
    result = subprocess.run(
        [sys.executable, "-m", "bprl.launch.cli", "report", f"gs://{BUCKET}/sweeps/s1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    printed = result.stdout.split()
    assert printed and all(p.startswith(f"gs://{BUCKET}/sweeps/s1/report/") for p in printed)
    report_dir = emulator.local_path(f"gs://{BUCKET}/sweeps/s1/report")
    names = os.listdir(report_dir)
    assert any(n.endswith(".png") for n in names) and any(n.endswith(".md") for n in names)
    import csv

    with open(os.path.join(report_dir, "summary.csv")) as f:
        rows = {r["metric"]: r for r in csv.DictReader(f)}
    # seed 2 has no FINISHED mark: the two finished seeds only, final mean (5 + 7) / 2
    assert int(rows["policy_return"]["seeds"]) == 2
    assert float(rows["policy_return"]["final_mean"]) == pytest.approx(6.0)


def test_large_objects_are_read_through_the_emulators_api(emulator, tmp_path):
    """The modular filesystem's larger reads crash the process (see launch/rundir/storage.py):
    in a rehearsal, reads and copies of objects go through the emulator's JSON API, and
    a 3 MB object written by TensorFlow reads back whole, many times over."""
    code = f"""
    import json, os
    import tensorflow as tf
    from bprl.launch.rundir import storage
    data = os.urandom(3_000_000)
    path = "gs://{BUCKET}/big/blob.bin"
    with tf.io.gfile.GFile(path, "wb") as f:  # writes through TensorFlow are fine
        f.write(data)
    reads = [storage.read_bytes(path) == data for _ in range(5)]
    local = {str(tmp_path / "copy.bin")!r}
    storage.copy(path, local)
    storage.copy(path, "gs://{BUCKET}/big/again.bin")
    out = {{
        "reads": reads,
        "copy": open(local, "rb").read() == data,
        "remote_copy": storage.read_bytes("gs://{BUCKET}/big/again.bin") == data,
    }}
    try:
        storage.read_bytes("gs://{BUCKET}/big/missing.bin")
        out["missing"] = "read"
    except FileNotFoundError:
        out["missing"] = "FileNotFoundError"
    print("RESULT " + json.dumps(out))
    """
    out = _result(_run_child(emulator, code))
    assert out == {
        "reads": [True] * 5,
        "copy": True,
        "remote_copy": True,
        "missing": "FileNotFoundError",
    }
