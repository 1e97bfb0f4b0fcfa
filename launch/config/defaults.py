"""Every config field of a run, with its default and a comment: the schema of a run.

Experiment configs (experiments/configs/*.py) start from `base_config()` and only
override it; `load_saved(path)` reads a run's config.json over these defaults, so runs
saved before a field existed still load (the field takes its default).
"""

from __future__ import annotations

import dataclasses
import json

import ml_collections

from bprl.agents.config import LearnerHyperparams


def base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.task = "walker_walk"  # a name from `bprl tasks`
    config.task_kwargs = ml_collections.ConfigDict()  # extra keyword arguments for the task
    config.seed = 0  # seeds networks, actors (seed * 1000 + actor id) and evaluators
    config.prior_info = ("proprioception",)  # information sets the prior sees

    # The prior's architecture (docs/priors.md); the policy is Gaussian unless hierarchical.
    config.prior = ml_collections.ConfigDict()
    # "mlp" | "lstm" (memory) | "hierarchical" (latent z) | "mlp_latent_policy" (the
    # hierarchical kind's policy, a flat MLP prior)
    config.prior.kind = "mlp"
    config.prior.lstm_size = 128  # lstm: units of the prior's LSTM core
    config.prior.latent_size = 4  # hierarchical, mlp_latent_policy: dimension of z
    config.prior.low_hidden = (128, 128)  # hierarchical, mlp_latent_policy: low-level widths
    config.prior.share_low_level = True  # hierarchical: prior uses the policy's low level
    # lstm: replay items carry this many rows before each sequence, over which the learner
    # recomputes the prior's state from the one the actor stored (R2D2's burn-in); 0 starts
    # every sequence from the stored state as it is (docs/priors.md, "Stale state").
    config.prior.burn_in = 0
    # Transfer (docs/transfer.md): start the prior from a prior artifact (`bprl
    # export-prior`); "" starts it from a random initialisation.
    config.prior.artifact = ""
    # True: the prior is never updated (the policy's KL is against it as it is; for a
    # hierarchical prior sharing its low level, that low level is fixed too). False: it
    # is trained as usual (from the artifact's weights: fine-tuning).
    config.prior.frozen = False

    config.network = ml_collections.ConfigDict()
    config.network.policy_hidden = (256, 256)  # policy MLP widths
    config.network.prior_hidden = (256, 256)  # prior MLP widths
    config.network.critic_hidden = (256, 256)  # critic MLP widths
    config.network.min_scale = 1e-3  # lower bound on the Gaussian heads' standard deviation
    config.network.init_scale = 0.7  # standard deviation of the heads at initialisation
    config.network.max_scale = 0.0  # upper bound on that standard deviation (0: unbounded)
    config.network.mean_bound = 1.0  # heads' means lie in [-mean_bound, mean_bound]

    # The learning rule's hyperparameters (alpha, discount, Retrace lambda, action samples,
    # learning rates, target period, bad-update budget, action squash): their defaults and
    # meaning are in agents/config.py (`LearnerHyperparams`), the one place they are set.
    config.agent = ml_collections.ConfigDict(dataclasses.asdict(LearnerHyperparams()))

    config.replay = ml_collections.ConfigDict()
    config.replay.sequence_length = 10  # T: transitions per replay item (T+1 steps stored)
    config.replay.batch_size = 256  # sequences per learner update
    config.replay.min_size = 1000  # items in replay before the learner may sample
    config.replay.max_size = 1_000_000  # FIFO capacity in items
    config.replay.samples_per_insert = 32.0  # rate limiter: sampled items per inserted item
    config.replay.samples_per_insert_tolerance = 0.1  # slack of the rate limiter, fraction
    config.replay.prefetch_size = 4  # batches the learner's dataset prefetches
    # Actor-side sequence writer: "fast" (agents/fast_adder.py: one Reverb append per
    # sequence, NumPy buffering) or "acme" (Acme's SequenceAdder); both write the same items.
    config.replay.adder = "fast"

    config.actors = ml_collections.ConfigDict()
    config.actors.num_actors = 32  # environment streams (each an actor: own seed, episodes)
    # Streams per actor process, stepped together with one batched inference per step
    # (launch/config/packing.py): ceil(num_actors / envs_per_process) actor processes. 0 (auto):
    # about one process per core of the launching machine, at most 16 streams each
    # (Vertex AI: 1, one stream per actor VM as before). 1: one process per stream.
    config.actors.envs_per_process = 0
    config.actors.variable_update_period = 1000  # actor steps between weight refreshes
    config.actors.max_errors = 10  # exceptions an actor process rebuilds after, then dies
    config.actors.max_restarts = 100  # dead actor processes a node replaces before failing
    config.actors.inject_fault_every_steps = 0  # testing: raise in env.step every N steps (0: off)

    config.checkpoint = ml_collections.ConfigDict()
    config.checkpoint.every_seconds = 300  # learner + counts period; replay: rounded to minutes
    config.checkpoint.replay = True  # also checkpoint the Reverb replay (Reverb's checkpointer)

    # Self-healing (docs/reliability.md): when a node of a local run dies, the launcher
    # restarts the whole program from the last complete checkpoint, this many times.
    config.reliability = ml_collections.ConfigDict()
    config.reliability.max_program_restarts = 3  # whole-program restarts (0: fail at once)
    # wait before a restart: this * 2**(restarts in a row with no progress), at most 300 s
    config.reliability.restart_backoff_secs = 10.0
    # Hung nodes (launch/local/liveness.py): a local run's node that makes no progress while it
    # could for this many seconds is killed and handled as a death. 0: derived, max(180 s,
    # 3x the longest checkpoint so far); -1: not watched.
    config.reliability.hang_timeout_secs = 0.0

    config.evaluators = ml_collections.ConfigDict()
    config.evaluators.num_evaluators = 1  # evaluator processes (policy mean and prior alone)
    config.evaluators.episodes = 1  # episodes of each kind per evaluation
    config.evaluators.every_actor_steps = 20_000  # actor steps between evaluations

    config.stop = ml_collections.ConfigDict()
    config.stop.max_actor_steps = (
        10_000_000  # stop when the actors took this many steps (0: no limit)
    )
    config.stop.max_learner_steps = 0  # stop after this many learner updates (0: no limit)

    config.report = ml_collections.ConfigDict()
    # `bprl report`: a return that counts as "learned"; the report gives actor steps to
    # reach it per variant and the speed-up over the from-scratch variant (None: off).
    config.report.threshold = ml_collections.config_dict.placeholder(float)
    # Why this threshold (e.g. "half the source policy's asymptote"): printed beside it in
    # the report, so a threshold is chosen before the runs and says on what grounds.
    config.report.threshold_reason = ""

    config.logging = ml_collections.ConfigDict()
    config.logging.learner_every_steps = 100  # learner steps between TensorBoard writes

    config.resources = ml_collections.ConfigDict()
    # TensorFlow threads of the learner: N > 0 pins N; -1 leaves TensorFlow's default (every
    # core); 0 (auto) pins 1 for a small update (the same size rule as
    # learner_updates_per_call), whose products gain less from a second thread than they
    # lose waiting for it while the actors share the cores (docs/results.md, issue 30).
    config.resources.learner_threads = 0
    # The learner's critic on S action samples runs them in one pass while its first-layer
    # activations stay below this many bytes, else one sample set at a time (same values;
    # networks/critic.py); 0: always one at a time.
    config.resources.critic_one_pass_bytes = 4 * 2**20
    config.resources.actor_threads = 1  # threads of each actor / evaluator process
    # How the learner's update runs (launch/config/xla.py): "xla_float32" (one XLA program),
    # "onednn_bfloat16" (bfloat16 products on oneDNN, float32 weights and accumulation),
    # "auto": onednn_bfloat16 for a big update on a CPU with AMX, else xla_float32.
    config.resources.learner_kernels = "auto"
    # Updates per compiled call of the learner (agents/learner.py): K batches sampled as
    # one, K updates in one call; 0 = by the update's size: 4 under 4 GFLOP, else 1
    # (launch/program/builders.py).
    config.resources.learner_updates_per_call = 0

    # Vertex AI (`--launch=vertex_ai` and its rehearsal `vertex_ai_local`, see
    # docs/cluster.md); unused by local runs.
    config.cluster = ml_collections.ConfigDict()
    config.cluster.project = ""  # Google Cloud project id that runs and pays for the jobs
    config.cluster.region = "us-central1"  # Vertex AI region of the jobs and the bucket
    config.cluster.bucket = ""  # gs://BUCKET[/prefix]: run directories (events) go under it
    # Every node is one Vertex replica (one VM). Nodes of groups with equal resources
    # share a worker pool, and Vertex AI allows at most 4 pools: keep <= 4 distinct specs.
    for group, cpu, memory_gb in (
        ("learner", 8, 30),  # the learner: SGD on the replay batches
        ("replay", 8, 52),  # the Reverb server: holds the replay table in memory
        ("actor", 4, 15),  # each actor: environment + policy sampling
        ("evaluator", 4, 15),  # each evaluator (same machine as an actor: one pool)
        ("counter", 4, 15),  # the step counter (an actor's machine: it shares their pool)
        ("stopper", 2, 13),  # the stop condition: the job's primary replica, a pool alone
    ):
        config.cluster[group] = ml_collections.ConfigDict()
        config.cluster[group].cpu = cpu  # vCPUs of each node of the group
        config.cluster[group].memory_gb = memory_gb  # GiB of memory of each node
    # The image every node runs (built from the Dockerfile and pushed); "" means
    # REGION-docker.pkg.dev/PROJECT/bprl/bprl:latest.
    config.cluster.image = ""
    # GPU of the learner: "" (none, the default: the image installs tensorflow-cpu) or
    # T4, P4, P100, V100. A GPU needs `learner_image`: an image with a GPU TensorFlow 2.8.
    config.cluster.learner.accelerator = ""
    config.cluster.learner.accelerator_count = 0  # GPUs of that type (1, 2, 4 or 8)
    config.cluster.learner_image = ""  # the learner's image when it has a GPU
    # The job's service account (jobSpec.serviceAccount): "" is Vertex AI's custom-code
    # service agent. It needs to read and write the bucket (docs/cluster.md, IAM).
    config.cluster.service_account = ""
    # scheduling.timeout in hours; 0: from the budget at slow assumed rates
    # (launch/vertex/job_request.py).
    config.cluster.timeout_hours = 0.0
    # VPC peering (jobSpec.network) is refused: the nodes' ports take unauthenticated
    # connections, which only the job's own replicas may reach.
    config.cluster.network = ""
    return config


def merge_dicts(defaults: dict, saved: dict) -> dict:
    """`saved` over `defaults`, recursively: fields added since a run was saved keep their
    defaults, so older runs still resume and load."""
    out = dict(defaults)
    for key, value in saved.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merge_dicts(out[key], value) if both else value
    return out


def load_saved(path: str) -> ml_collections.ConfigDict:
    """A run's saved config.json, with the defaults of fields it predates."""
    with open(path) as f:
        return ml_collections.ConfigDict(merge_dicts(base_config().to_dict(), json.load(f)))
