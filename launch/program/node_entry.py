"""The node entry point of the project image.

`python -m bprl.launch.program.node_entry --data_file=F`:

F is a pool's node pickle in the run directory (gs://... on Vertex AI, a local path in the
rehearsal). It is copied to a local file, then this process becomes Launchpad's own node
entry (`process_entry.py`, which picks the node of this replica from CLUSTER_SPEC's task
index): exec keeps the process id, so Vertex AI's SIGTERM reaches the node itself.
"""

from __future__ import annotations

import os
import sys
import tempfile


def local_copy(path: str) -> str:
    """`path` itself if local, else a local copy of it (launch/rundir/storage.py)."""
    if "://" not in path:
        return path
    from bprl.launch.rundir import storage

    fd, local = tempfile.mkstemp(prefix="bprl_nodes_", suffix=".pkl")
    os.close(fd)
    storage.copy(path, local)
    return local


def main(argv: list[str]) -> None:
    args, data = [], None
    for arg in argv[1:]:
        if arg.startswith("--data_file="):
            data = arg.split("=", 1)[1]
        else:
            args.append(arg)
    if not data:
        sys.exit(
            "usage: python -m bprl.launch.program.node_entry --data_file=PICKLE [launchpad flags]"
        )
    import importlib.util

    launchpad_dir = importlib.util.find_spec("launchpad").submodule_search_locations[0]
    entry = os.path.join(launchpad_dir, "nodes", "python", "process_entry.py")
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, entry, f"--data_file={local_copy(data)}", *args])


if __name__ == "__main__":
    main(sys.argv)
