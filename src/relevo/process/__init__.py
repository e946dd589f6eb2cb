"""Several worker processes under one parent: `relevo run --processes N`.

`parent.py` keeps N children running (restarts, recycling, shutdown), `child.py` is what
each child runs, `channel.py` is the line between them. `handle.py` is the parent's handle
on one child (spawned from a fork server), `policy.py` what the parent reads from the
config, `sizes.py` parses memory sizes, `deathsig.py` asks the kernel to signal a child
whose parent died.
"""
