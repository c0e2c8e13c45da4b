"""The default cache backend, `memory://`: an LRU in this process, lost on restart and not
shared between replicas."""
from costr import hookimpl

from .memory import MemoryCache

__all__ = ["MemoryCache"]


@hookimpl(trylast=True)
def register_cache_backends(register):
    register("memory", MemoryCache)
