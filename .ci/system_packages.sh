#!/usr/bin/env bash
# System packages the tests use that are not Python packages: tini (the image's init,
# which the Vertex AI rehearsal runs as each replica's PID 1). Installed with apt-get when
# missing and running as root (the rehearsal tests need root anyway); otherwise a note.
set -euo pipefail
if [ -x /usr/bin/tini ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "installing tini (apt-get) for the Vertex AI rehearsal tests"
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tini >/dev/null
else
  echo "note: /usr/bin/tini is missing; the rehearsal tests (tests/test_vertex_local.py) need it: apt-get install tini" >&2
fi
