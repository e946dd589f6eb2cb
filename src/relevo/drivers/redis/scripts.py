"""The driver's server-side Lua scripts, run by SHA with a fallback to their source.

Redis forgets loaded scripts when it restarts, so a NOSCRIPT reply is answered by
running the source once more (EVAL caches it again); callers never see it.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError


def _read(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


class Script:
    """One `.lua` file beside this module, after the shared ones it names (`uses`)."""

    __slots__ = ("name", "sha", "source")

    def __init__(self, name: str, uses: tuple[str, ...] = ()) -> None:
        self.name = name
        self.source = "".join(_read(shared) for shared in (*uses, name))
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    def queue(self, pipe: Pipeline, keys: list[Any], args: list[Any]) -> None:
        """Add a call to a pipeline; `run_again` handles the NOSCRIPT it may answer."""
        pipe.evalsha(self.sha, len(keys), *keys, *args)

    async def run(self, client: Redis, keys: list[Any], args: list[Any]) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.eval(self.source, len(keys), *keys, *args)


REQUEUE = Script("requeue.lua", uses=("attempts.lua",))
RECLAIM = Script("reclaim.lua", uses=("attempts.lua",))
REMOVE = Script("remove.lua")
LOCATE = Script("locate.lua")
DELAY = Script("delay.lua")
PROMOTE = Script("promote.lua")
RETRY = Script("retry.lua", uses=("attempts.lua",))
BOUNDED = Script("bounded.lua")
