#!/usr/bin/env bash
# Prints the path of a working CPython 3.10 interpreter, or explains how to get one.
# Order: python3.10 on PATH, then pyenv's 3.10.x, then `uv python find 3.10`.
set -u
works() { "$1" -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1; }
if command -v python3.10 >/dev/null 2>&1 && works python3.10; then
  command -v python3.10; exit 0
fi
if command -v pyenv >/dev/null 2>&1; then
  root=$(pyenv root)
  for py in $(ls -d "$root"/versions/3.10.*/bin/python3 2>/dev/null | sort -V -r); do
    if works "$py"; then echo "$py"; exit 0; fi
  done
fi
if command -v uv >/dev/null 2>&1; then
  py=$(uv python find 3.10 2>/dev/null) && works "$py" && { echo "$py"; exit 0; }
fi
cat >&2 <<'MSG'
error: this project needs CPython 3.10 (dm-launchpad has no wheels for newer Pythons).
Install one, then re-run make:
  pyenv install 3.10.13        # with pyenv, or
  uv python install 3.10       # with uv, or
  apt-get install python3.10 python3.10-venv   # on Debian/Ubuntu with that package
MSG
exit 1
