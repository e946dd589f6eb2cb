"""Before a reload swaps anything: what changed, and whether what changed can load.

A reload that would fail does so here, while the running app is still untouched.
"""

from __future__ import annotations

from relevo.app.functions import check_functions
from relevo.functions.python import forget_file
from relevo.registry import Registry
from relevo.reload.diff import Fingerprints, Plan, fingerprints, plan, referenced_files


async def prepare(registry: Registry, old: Fingerprints) -> tuple[Fingerprints, Plan]:
    """The new registry's fingerprints and the plan from `old` to them. Raises
    ConfigError when a new or changed function cannot load."""
    prints = fingerprints(registry)
    todo = plan(old, registry, prints)
    for entry_id in todo.changed:  # handler files are imported once: read them again
        if registry[entry_id].kind == "function.python":
            for file in referenced_files(registry[entry_id]):
                forget_file(file)
    await check_functions(registry, {*todo.added, *todo.changed})
    return prints, todo
