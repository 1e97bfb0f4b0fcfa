"""`lp.stop()` on Vertex AI: cancel the node's own custom job.

A run that reaches its budget does not need this: its stop node (the job's primary
replica) has the final checkpoint written and exits 0, which ends the job SUCCEEDED
(launch/program/light_nodes.py). A node that calls `lp.stop()` otherwise asks for a cancel; a
refusal (403: the job's service account lacks `aiplatform.customJobs.cancel`) or any other
error is one line in the node's log, not an exception: a failing node would make Vertex
AI restart it and, with `restartJobOnWorkerRestart`, the whole job.

Launchpad's own Vertex stopper needs google-cloud-aiplatform, which cannot be installed
beside TensorFlow 2.8's protobuf. This one uses the REST method
`projects.locations.customJobs.cancel` with a token from the VM's metadata server, over
plain HTTP (urllib). Vertex AI then sends SIGTERM to every replica: each node stops as on
a local SIGTERM (final checkpoints). The job comes from `CLOUD_ML_JOB_ID` and, failing
`BPRL_VERTEX_PROJECT`, `CLOUD_ML_PROJECT_ID` (both set by Vertex AI on every replica,
and what Launchpad's stopper reads); the region from `BPRL_VERTEX_REGION` (the job's
environment). `BPRL_VERTEX_API_ENDPOINT` replaces the API's address (the rehearsal's
stand-in); the metadata server is `metadata.google.internal` as on any Google VM.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request

from absl import logging

METADATA_TOKEN_URL = (
    "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token"
)
API_ENDPOINT_ENV = "BPRL_VERTEX_API_ENDPOINT"


def metadata_token(timeout: float = 10.0) -> str:
    """The VM service account's access token, from the metadata server."""
    request = urllib.request.Request(METADATA_TOKEN_URL, headers={"Metadata-Flavor": "Google"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.load(response)["access_token"]


def cancel_url(environ: dict | None = None) -> str:
    """The REST URL that cancels this replica's job."""
    environ = os.environ if environ is None else environ
    region = environ["BPRL_VERTEX_REGION"]
    project = environ.get("BPRL_VERTEX_PROJECT") or environ["CLOUD_ML_PROJECT_ID"]
    job = environ["CLOUD_ML_JOB_ID"].rstrip("/").rsplit("/", 1)[-1]  # an id or a resource name
    endpoint = environ.get(API_ENDPOINT_ENV) or f"https://{region}-aiplatform.googleapis.com"
    return (
        f"{endpoint.rstrip('/')}/v1/projects/{project}/locations/{region}/customJobs/{job}:cancel"
    )


def cancel_job(attempts: int = 5) -> bool:
    """Asks Vertex AI to cancel this replica's job; True when it accepted. Retries what
    may pass (5xx, network); a refusal (401/403/404) is logged once and not retried."""
    try:
        url = cancel_url()
    except KeyError as error:
        logging.error("cannot cancel the job: %s is not set on this replica", error)
        return False
    for attempt in range(1, attempts + 1):
        try:
            request = urllib.request.Request(
                url,
                data=b"{}",
                method="POST",
                headers={
                    "Authorization": f"Bearer {metadata_token()}",
                    "Content-Type": "application/json",
                },
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                logging.info("cancel of the job requested: %s (%d)", url, response.status)
                return True
        except urllib.error.HTTPError as error:
            if error.code == 400:  # FAILED_PRECONDITION: already cancelled or finished
                logging.info("job already ending: %s", error.read()[:200])
                return True
            if error.code in (401, 403, 404):
                logging.error(
                    "error: Vertex AI refused to cancel the job (%d %s): the job's service "
                    "account needs aiplatform.customJobs.cancel (docs/cluster.md); not retried",
                    error.code,
                    error.reason,
                )
                return False
            logging.warning("cancel %s failed (%d/%d): %s", url, attempt, attempts, error)
        except (OSError, ValueError, KeyError) as error:
            logging.warning("cancel %s failed (%d/%d): %s", url, attempt, attempts, error)
        time.sleep(min(2.0 * attempt, 10.0))
    logging.error("error: could not cancel the job through %s after %d tries", url, attempts)
    return False
