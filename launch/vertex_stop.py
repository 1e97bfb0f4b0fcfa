"""The stop node's `lp.stop()` on Vertex AI: cancel the node's own custom job.

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
    job = environ["CLOUD_ML_JOB_ID"]
    endpoint = environ.get(API_ENDPOINT_ENV) or f"https://{region}-aiplatform.googleapis.com"
    return (
        f"{endpoint.rstrip('/')}/v1/projects/{project}/locations/{region}/customJobs/{job}:cancel"
    )


def cancel_job(attempts: int = 5) -> None:
    """Asks Vertex AI to cancel this replica's job; retries, then raises (a failing stop
    node fails the job, which ends it too)."""
    url = cancel_url()
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
                return
        except urllib.error.HTTPError as error:
            if error.code == 400:  # FAILED_PRECONDITION: already cancelled or finished
                logging.info("job already ending: %s", error.read()[:200])
                return
            logging.warning("cancel %s failed (%d/%d): %s", url, attempt, attempts, error)
        except (OSError, ValueError, KeyError) as error:
            logging.warning("cancel %s failed (%d/%d): %s", url, attempt, attempts, error)
        time.sleep(min(2.0 * attempt, 10.0))
    raise RuntimeError(f"could not cancel the job through {url}")
