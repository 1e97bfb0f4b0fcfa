"""What machine a benchmark ran on: CPU model, load and uptime, for docs/results.md."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def report_header(argv: list[str] | None, args) -> dict:
    """The first fields of a benchmark's JSON report: when, on what, the exact command
    (script relative to the repository, then its arguments) and every setting but --out."""
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu": cpu_model(),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "command": " ".join([os.path.relpath(sys.argv[0], ROOT)] + (argv or sys.argv[1:])),
        "uptime_start": uptime(),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
    }


def write_report(report: dict, path: str | None, default=None) -> None:
    """Writes a benchmark's JSON report to `path` (nothing when None); `default` as
    json.dump's, for values JSON has no type for."""
    if path:
        with open(path, "w") as f:
            json.dump(report, f, indent=2, default=default)


def write_outputs(report: dict, table: str, out: str, markdown: str, root: str, stem: str) -> str:
    """The JSON report at `out` (default ROOT/STEM.json) and the markdown table at
    `markdown` (default: beside the JSON, .md); returns the table's path."""
    write_report(report, out or os.path.join(root, f"{stem}.json"))
    path = markdown or (
        os.path.splitext(out)[0] + ".md" if out else os.path.join(root, f"{stem}.md")
    )
    with open(path, "w") as f:
        f.write(table)
    return path
