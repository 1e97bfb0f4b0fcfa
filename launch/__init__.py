"""Process wiring: Launchpad programs, nodes, logging, and the `bprl` command line.

Nothing here knows the losses: nodes build agents from `agents/` and tasks from
`environments/` and connect them through Reverb, Courier and a shared counter.
"""
