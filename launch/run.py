"""One run's life: `bprl run` after its flags are parsed.

Checks the config before anything starts, isolates a local run in its own network
namespace, takes the run directory's lock, prepares a resume, launches (locally, on
Vertex AI, or rehearsed), hands a failed local program to the self-healing policy
(launch/local/healing.py) and prints the summary.
"""

from __future__ import annotations

import os
import sys
import time

import ml_collections

from bprl.launch.local import healing
from bprl.launch.rundir import layout


def run(
    config: ml_collections.ConfigDict | None, workdir: str | None, launch: str, network: str
) -> int:
    """One `bprl run`: checks, then the local program, the Vertex AI submission or its
    rehearsal; the run's exit code (a failed local program heals itself, launch/local/
    healing.py, re-executing this process). `workdir` as given on the command line."""
    from bprl.launch.program import lifeline

    lifeline.maybe_tie_to_sweep()  # a run of a sweep ends with the sweep
    if workdir:
        # Launchpad reads this once, when first imported (Acme imports it too): set it first.
        os.environ["LAUNCHPAD_LOGGING_DIR"] = layout.logs_dir(os.path.abspath(workdir))
    from bprl.launch.config import errors, fit, validate, workdir_checks
    from bprl.launch.local import launcher as local

    if network == "isolated" and launch == "local":  # (a rehearsal: its own)
        from bprl.launch.local import netns

        # First, so the checks below (which import TensorFlow) run once, in the run's
        # own namespace; a bad config still ends with one error line before any node.
        netns.reexec_isolated(sys.argv)  # returns only where isolation is not possible
    if config is None:
        raise errors.ConfigError("--config is required")
    if config.prior.artifact:  # saved in config.json: resumable from any directory
        config.prior.artifact = os.path.abspath(config.prior.artifact)
    validate.validate_config(config)
    if launch == "vertex_ai":  # the run directory is under the bucket, not here
        from bprl.launch.vertex import job as vertex

        vertex.validate_cluster(config, submit=True)
        vertex.launch_vertex(config, workdir)
        return 0
    workdir_checks.validate_workdir(workdir)
    workdir = os.path.abspath(workdir)
    lock = None
    run_dir = workdir  # where the run's files are read from (the bucket's, rehearsed)
    if launch == "vertex_ai_local":
        from bprl.launch.vertex import job as vertex
        from bprl.launch.vertex import rehearsal

        rehearsal.check_can_rehearse()
        vertex.validate_cluster(config, submit=False)
        run_dir = rehearsal.run_dir_view(workdir)
    if launch in ("local", "vertex_ai_local"):
        from bprl.launch.local import runlock

        fit.validate_fits_machine(config)
        lock = runlock.acquire(workdir, "bprl run")  # kept across restarts (exec)
    resuming = workdir_checks.validate_resume(config, run_dir)
    print(f"run directory: {workdir}")
    print(f"watch it with: tensorboard --logdir {run_dir}")
    if resuming:
        from bprl.launch.rundir import checkpoint_record, resume

        if launch == "local":  # (rehearsed nodes choose their checkpoint themselves)
            try:  # a damaged newest checkpoint falls back to the previous one
                resume.prepare_resume(workdir)
            except resume.CheckpointError as error:
                raise errors.ConfigError(str(error)) from None
        counts = checkpoint_record.load_counts(run_dir)
        if counts:
            learner_steps = int(counts.get("learner_steps", 0))
            actor_steps = int(counts.get("actor_steps", 0))
            print(f"resuming {workdir}: learner step {learner_steps}, actor step {actor_steps}")
        else:
            print(f"resuming {workdir}: no complete checkpoint yet, starting from scratch")
    started = time.monotonic()
    if launch == "vertex_ai_local":
        try:
            code = _rehearse(config, workdir)
        finally:
            runlock.release(lock)
        if code:
            return code
        return summarize(config, run_dir, started, out_dir=workdir)
    try:
        local.launch_local(config, workdir)
    except local.LaunchInterrupted as interrupted:
        print(f"stopped by {interrupted} while starting; no process of the run is left")
        return 130
    except local.NodeFailure as failure:  # every process of the program has been stopped
        return healing.after_failure(config, workdir, failure)
    finally:  # (a restart re-executes this process: no `finally`, the lock stays held)
        if lock is not None:
            from bprl.launch.local import runlock

            runlock.release(lock)
    return summarize(config, workdir, started)


def _rehearse(config, workdir: str) -> int:
    """The rehearsal of the Vertex AI job; 0 when the job ended as a finished run does
    (SUCCEEDED: the stop node, its primary replica, exited 0 at the budget)."""
    from bprl.launch.local import launcher as local
    from bprl.launch.vertex import rehearsal

    outcome = rehearsal.launch_rehearsal(config, workdir)
    print(f"rehearsed job {outcome.state}: {outcome.reason}")
    for node in outcome.failed:
        print(
            f"error: {node} failed; its log: {os.path.join(workdir, 'logs', node)}", file=sys.stderr
        )
        for line in local.log_tail(workdir, node):
            print(f"    {line}", file=sys.stderr)
    return 0 if outcome.state == "SUCCEEDED" else 1


def summarize(config, workdir: str, started: float, out_dir: str | None = None) -> int:
    """The end-of-run summary lines and learning-curve PNG; 0."""
    from bprl.launch.rundir import summary

    task = f"{config.task}, prior sees {', '.join(config.prior_info)}"
    summary.write_learning_curve(workdir, title=f"evaluation return ({task})", out_dir=out_dir)
    print("\n".join(summary.summary_lines(workdir, time.monotonic() - started, out_dir)))
    return 0
