"""`redis://` and `rediss://`: a response cache in Redis, shared by every replica and kept
across restarts."""
from costr import hookimpl

from .redis_cache import RedisCache

__all__ = ["RedisCache"]


@hookimpl
def register_cache_backends(register):
    register("redis", RedisCache)
    register("rediss", RedisCache)
