"""The rehearsal's stand-in for the VM metadata server and the Vertex AI job-cancel API.

On Vertex AI the stop node cancels its own job with a token from the metadata server
(launch/vertex/stop.py). In the rehearsal both are one small HTTP server in the services
namespace (port 80, where `metadata.google.internal` resolves): it hands out a token and
takes the job's cancel request, which ends the rehearsed job; `BPRL_REHEARSAL_CANCEL_STATUS`
(e.g. 403) makes it refuse cancels. Every request is recorded (`rehearsal.json`).
"""

from __future__ import annotations

import http.server
import json
import os
import secrets
import threading
import time

from bprl.launch.config.errors import ConfigError

CANCEL_STATUS_ENV = "BPRL_REHEARSAL_CANCEL_STATUS"  # e.g. 403: the stand-in refuses cancels


class StandIn:
    """The metadata server's token and the job-cancel endpoint, on the bridge's address."""

    def __init__(self, address: str, project: str, region: str, job_id: str, on_cancel):
        self.token = secrets.token_hex(16)
        self.cancel_path = f"/v1/projects/{project}/locations/{region}/customJobs/{job_id}:cancel"
        self.requests: list[dict] = []  # every request: method, path, client, status
        self.cancel_status = int(os.environ.get(CANCEL_STATUS_ENV, "200") or 200)
        stand_in = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _reply(self, status: int, body: dict) -> None:
                # Logged before the reply goes out: a client acts on the reply at once (the
                # token's GET is followed by the cancel's POST on another handler thread),
                # so logging after it could record the POST first, or the GET too late.
                stand_in.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "client": self.client_address[0],
                        "status": status,
                        "time": time.time(),
                    }
                )
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                token_path = "/computeMetadata/v1/instance/service-accounts/default/token"
                if self.path != token_path or self.headers.get("Metadata-Flavor") != "Google":
                    self._reply(404, {"error": "not found"})
                    return
                self._reply(
                    200,
                    {"access_token": stand_in.token, "expires_in": 3599, "token_type": "Bearer"},
                )

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                if self.headers.get("Authorization") != f"Bearer {stand_in.token}":
                    self._reply(401, {"error": {"code": 401, "status": "UNAUTHENTICATED"}})
                elif self.path != stand_in.cancel_path:
                    self._reply(404, {"error": {"code": 404, "status": "NOT_FOUND"}})
                elif stand_in.cancel_status != 200:  # e.g. 403: the account may not cancel
                    status = stand_in.cancel_status
                    self._reply(status, {"error": {"code": status, "status": "PERMISSION_DENIED"}})
                else:
                    self._reply(200, {})
                    on_cancel(self.client_address[0])

        try:  # port 80: the metadata server's, which the stop node's urllib call uses
            self.server = http.server.ThreadingHTTPServer((address, 80), Handler)
        except OSError as error:
            message = f"the rehearsal's stand-in cannot listen on {address}:80: {error}"
            raise ConfigError(message) from None
        self.endpoint = f"http://{address}:80"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
