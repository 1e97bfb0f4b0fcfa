#!/bin/bash
# Self-healing measurement (docs/results.md, "Reliability II"): starts a tiny walker run,
# SIGKILLs its learner node as soon as a checkpoint with learner steps exists, and waits
# for the run to heal and finish. Usage: benchmarks/heal_after_learner_kill.sh WORKDIR
# [--config.x=y ...]. Prints the kill time and the launcher's exit; the launcher's
# output is in WORKDIR.out / WORKDIR.err, the restart record in WORKDIR/restarts.jsonl.
set -u
W=$(realpath -m "$1"); shift
rm -rf "$W"
bprl run --config=experiments/configs/walker_walk.py:tiny \
  --config.checkpoint.every_seconds=3 "$@" --workdir="$W" >"$W.out" 2>"$W.err" &
launcher=$!
for _ in $(seq 600); do
  grep -q '"learner_steps": [1-9]' "$W/checkpoints/counts.json" 2>/dev/null && break
  sleep 1
done
for pid in $(pgrep -f process_entry); do
  env=$(tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null) || continue
  if grep -qx "BPRL_NODE_GROUP=learner" <<<"$env" &&
    grep -qx "LAUNCHPAD_LOGGING_DIR=$W/logs" <<<"$env"; then
    echo "killed learner $pid at $(date +%T)"
    kill -9 "$pid"
  fi
done
wait "$launcher"
echo "launcher exit $? at $(date +%T)"
