#!/bin/bash
# Self-healing measurement (docs/results.md, "Reliability II"): starts a tiny walker run,
# SIGKILLs one node (GROUP: learner, replay, counter, evaluator, stopper) as soon as a
# checkpoint with learner steps exists, and waits for the run to heal and finish.
# Usage: benchmarks/heal_after_kill.sh GROUP WORKDIR [--config.x=y ...]. Prints the kill
# time, when the restarted learner restored its checkpoint, and the launcher's exit; the
# launcher's output is in WORKDIR.out / WORKDIR.err, the restart in WORKDIR/restarts.jsonl.
set -u
GROUP=$1
W=$(realpath -m "$2")
shift 2
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
  if grep -qx "BPRL_NODE_GROUP=$GROUP" <<<"$env" &&
    grep -qx "LAUNCHPAD_LOGGING_DIR=$W/logs" <<<"$env"; then
    echo "killed $GROUP $pid at $(date +%T)"
    kill -9 "$pid"
  fi
done
for _ in $(seq 900); do
  if grep -q "learner resumed at step" "$W/logs/learner/0" 2>/dev/null; then
    echo "learner restored its checkpoint at $(date +%T)"
    break
  fi
  kill -0 "$launcher" 2>/dev/null || break
  sleep 1
done
wait "$launcher"
echo "launcher exit $? at $(date +%T)"
