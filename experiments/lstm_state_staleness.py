"""How wrong is the LSTM prior's stored state, and how much does a burn-in repair?

An actor stores, with every replay item, the prior's LSTM state at the item's first step,
computed with the actor's weights of that time. The learner unrolls the item from that state
with its current weights, so the state is as old as the item (docs/priors.md). This script
measures the error on a finished run, with two of its learner checkpoints standing for the
actor's weights (`--old_step`) and the learner's (`--new_step`):

1. plays `--episodes` episodes with the old policy, as an actor would have;
2. per episode, runs the old prior from the start (the states an actor stores) and the new
   prior from the start (the fresh states: what the learner would use if it could);
3. cuts the episode into items of T steps (the run's `replay.sequence_length`) and unrolls
   the new prior over each item from: zeros; the stored state; the stored state N steps
   earlier, burned in over those N steps with the new weights (`prior.burn_in` = N: a burn-in
   that reaches back to the episode's start starts from zeros there, as the learner does);
   and the fresh state;
4. reports, per start, the mean KL(fresh || start) of the prior's action distribution per
   step over the item, and the relative error of the item's first hidden state, with 95%
   bootstrap intervals over episodes.

    python experiments/lstm_state_staleness.py --run=~/exp/s20/seqnav_lstm/seed_2 \\
        --old_step=40000 --new_step=49860 --episodes=10 --out=staleness.md

`learner_checkpoints` lists the steps a run still keeps (the newest three, every 5 min).
With `--old_step` equal to `--new_step` every start but zeros must give 0 (a check).
"""

from __future__ import annotations

import numpy as np
from absl import app, flags

from bprl.experiments.across_seeds import mean_interval
from bprl.launch.config.errors import ConfigError
from bprl.launch.reuse.rollout import load_run, record_rollouts
from bprl.launch.reuse.transfer import learner_checkpoints
from bprl.networks.recurrent import LSTMState


def define_flags() -> None:
    """The script's flags, defined only when it runs as a script: absl flags are global,
    and other analysis modules imported beside this one (in tests) use the same names."""
    flags.DEFINE_string("run", "", "A run directory with an LSTM prior.")
    flags.DEFINE_integer("old_step", None, "Learner step of the actor's (stale) weights.")
    flags.DEFINE_integer("new_step", None, "Learner step of the learner's weights.")
    flags.DEFINE_integer("episodes", 10, "Episodes played with the old policy.")
    flags.DEFINE_list("burn_in", ["5", "10", "20"], "Burn-in lengths N to measure.")
    flags.DEFINE_integer("seed", 2024, "Seed of the episodes.")
    flags.DEFINE_string("out", "", "Markdown table to write (also printed).")


def gaussian_kl(m1: np.ndarray, s1: np.ndarray, m2: np.ndarray, s2: np.ndarray) -> float:
    """KL(N(m1, s1) || N(m2, s2)) of diagonal Gaussians, summed over action dimensions."""
    return float(np.sum(np.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - 0.5))


def episode_states(head, params, observations: list[dict], state: LSTMState) -> list[LSTMState]:
    """The state before each step and after the last: len(observations) + 1 states."""
    states = [state]
    for observation in observations:
        _, _, state = head.numpy_step(params, observation, state)
        states.append(state)
    return states


def unroll_moments(head, params, observations: list[dict], state: LSTMState) -> list:
    """[(mean, scale)] of each step, unrolled from `state`."""
    moments = []
    for observation in observations:
        mean, scale, state = head.numpy_step(params, observation, state)
        moments.append((np.asarray(mean), np.asarray(scale)))
    return moments


def item_starts(
    head, params_new, observations: list[dict], t0: int, stored: list, fresh: list, burn_ins
) -> dict[str, LSTMState]:
    """The start states the learner could use for the item beginning at step `t0`."""
    starts = {"zeros": head.numpy_initial_state(), "stored": stored[t0]}
    for n in burn_ins:
        if t0 - n <= 0:  # the burn-in sees the episode's start: zeros there, then new weights
            starts[f"burn-in {n}"] = fresh[t0]
        else:
            window = observations[t0 - n : t0]
            starts[f"burn-in {n}"] = episode_states(head, params_new, window, stored[t0 - n])[-1]
    starts["fresh"] = fresh[t0]
    return starts


def measure(run: str, old_step: int, new_step: int, episodes: int, burn_ins, seed: int):
    """({start name: ([KL per episode], [relative state error per episode])}, T)."""
    checkpoints = dict(learner_checkpoints(run))
    for step in (old_step, new_step):
        if step not in checkpoints:
            raise ConfigError(
                f"{run} has no learner checkpoint at step {step} (has: {sorted(checkpoints)})"
            )
    config, old, _ = load_run(run, checkpoints[old_step])
    _, new, _ = load_run(run, checkpoints[new_step])
    if config.prior.kind != "lstm":
        raise ConfigError(
            f"{run}: prior.kind is {config.prior.kind!r}, this measures an LSTM prior"
        )
    T = int(config.replay.sequence_length)
    rollouts = record_rollouts(config, old, use_prior=False, episodes=episodes, seed=seed)
    keys = [k for k in rollouts if k.startswith("observation/")]
    head = new.prior
    params_old, params_new = old.prior.numpy_params(), new.prior.numpy_params()
    results: dict[str, tuple[list, list]] = {}
    for episode in range(episodes):
        rows = np.flatnonzero(rollouts["episode"] == episode)
        observations = [{k[len("observation/") :]: rollouts[k][r] for k in keys} for r in rows]
        stored = episode_states(old.prior, params_old, observations, head.numpy_initial_state())
        fresh = episode_states(head, params_new, observations, head.numpy_initial_state())
        per_start: dict[str, tuple[list, list]] = {}
        for t0 in range(0, len(observations) - T + 1, T):
            item = observations[t0 : t0 + T]
            reference = unroll_moments(head, params_new, item, fresh[t0])
            starts = item_starts(head, params_new, observations, t0, stored, fresh, burn_ins)
            norm = max(np.linalg.norm(fresh[t0].hidden), 1e-8)
            for name, start in starts.items():
                # the fresh start's unroll is the reference itself (its KL is 0)
                moments = (
                    reference if name == "fresh" else unroll_moments(head, params_new, item, start)
                )
                kl = np.mean([gaussian_kl(*a, *b) for a, b in zip(reference, moments, strict=True)])
                error = np.linalg.norm(start.hidden - fresh[t0].hidden) / norm
                per_start.setdefault(name, ([], []))
                per_start[name][0].append(kl)
                per_start[name][1].append(error)
        for name, (kls, errors) in per_start.items():  # one value per episode
            results.setdefault(name, ([], []))
            results[name][0].append(float(np.mean(kls)))
            results[name][1].append(float(np.mean(errors)))
    return results, T


def table(results, run: str, old_step: int, new_step: int, episodes: int, T: int) -> str:
    lines = [
        f"Run {run}: actor weights at learner step {old_step}, learner weights at {new_step} "
        f"(a gap of {new_step - old_step} updates); {episodes} episodes of the old policy; "
        f"items of T = {T} steps. KL: mean over an item's steps of KL(fresh start || this "
        "start) of the new prior's action distribution, nats; state error: "
        "||h - h_fresh|| / ||h_fresh|| at the item's first step. Mean over episodes [95% "
        "bootstrap interval over episodes].",
        "",
        "| start of the unroll | KL per step | state error |",
        "| --- | --- | --- |",
    ]
    for name, (kls, errors) in results.items():
        kl, kl_lo, kl_hi = mean_interval(kls)
        error, e_lo, e_hi = mean_interval(errors)
        lines.append(
            f"| {name} | {kl:.4f} [{kl_lo:.4f}, {kl_hi:.4f}] "
            f"| {error:.3f} [{e_lo:.3f}, {e_hi:.3f}] |"
        )
    return "\n".join(lines) + "\n"


def main(argv) -> None:
    del argv
    f = flags.FLAGS
    if not f.run or f.old_step is None or f.new_step is None:
        raise app.UsageError("--run, --old_step and --new_step are required")
    burn_ins = [int(n) for n in f.burn_in]
    if any(n < 1 for n in burn_ins):
        raise app.UsageError(f"--burn_in lengths must be >= 1, got {burn_ins}")
    if f.episodes < 2:
        raise app.UsageError("--episodes must be >= 2 (an interval over episodes)")
    results, T = measure(f.run, f.old_step, f.new_step, f.episodes, burn_ins, f.seed)
    text = table(results, f.run, f.old_step, f.new_step, f.episodes, T)
    print(text)
    if f.out:
        with open(f.out, "w") as out:
            out.write(text)


if __name__ == "__main__":
    define_flags()
    app.run(main)
