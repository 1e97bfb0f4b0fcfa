# The project image: the pinned stack of requirements.lock, installed exactly as the
# Makefile does (lock with --no-deps, then Acme with --no-deps, then the project), run as
# a non-root user with `bprl` as the entry point:
#   docker build -t bprl .
#   docker run --rm bprl run --config=experiments/configs/walker_walk.py:tiny --workdir=/tmp/run
# On Vertex AI every node runs this image with the command
#   python -m bprl.launch.program.node_entry --data_file=gs://.../nodes/workerpoolN.pkl
# (launch/vertex/job_request.py writes the job request; see docs/cluster.md), which starts with
# /usr/bin/tini as PID 1 (Vertex AI's command replaces the ENTRYPOINT; PID 1 of a
# container ignores signals it has no handler for and reaps no orphans, so the node must
# not be PID 1). Build for the machines that run it, and submit the image by its digest:
#   docker build --platform linux/amd64 -t REGION-docker.pkg.dev/PROJECT/bprl/bprl .
FROM python:3.10-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MUJOCO_GL=disable \
    TF_CPP_MIN_LOG_LEVEL=2

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 1000 bprl
WORKDIR /opt/bprl

# Dependencies first, so code edits do not reinstall the stack.
COPY requirements.lock requirements-acme.txt ./
RUN python -m pip install --no-cache-dir --upgrade "pip==24.3.1" \
    && python -m pip install --no-cache-dir --no-deps -r requirements.lock \
    && python -m pip install --no-cache-dir --no-deps -r requirements-acme.txt

COPY pyproject.toml ./
COPY agents ./agents
COPY environments ./environments
COPY networks ./networks
COPY launch ./launch
COPY experiments ./experiments
RUN python -m pip install --no-cache-dir --no-deps .

# Configs are read from /opt/bprl/experiments/configs; write run directories to a mounted
# volume or /tmp (the image itself is read-only to this user).
USER 1000:1000
ENV HOME=/home/bprl
ENTRYPOINT ["/usr/bin/tini", "-g", "--", "bprl"]
CMD ["tasks"]
