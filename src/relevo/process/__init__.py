"""Several worker processes under one parent: `relevo run --processes N`.

`parent.py` keeps N children running (restarts, recycling, shutdown), `child.py` is what
each child runs, `channel.py` is the line between them.
"""
