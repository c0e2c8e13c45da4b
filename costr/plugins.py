"""Builds the plugin manager and collects what plugins register.

Built-in plugins are found exactly as third-party ones are: through the `costr` entry-point
group. `COSTR_LOAD_PLUGINS` (comma-separated entry-point names) restricts which load.
"""
from __future__ import annotations

import importlib.metadata
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import pluggy

from . import hookspecs

ENTRY_POINT_GROUP = "costr"
KINDS = {
    "register_provider_types": "provider type",
    "register_api_formats": "API format",
    "register_scorers": "scorer",
    "register_policy_types": "policy type",
    "register_cache_backends": "cache backend",
    "register_commands": "command",
}


class DuplicateRegistration(Exception):
    pass


@dataclass
class Registry:
    """Everything plugins registered, by kind and name, and which plugin registered it."""
    provider_types: dict[str, Callable] = field(default_factory=dict)
    api_formats: dict[str, Any] = field(default_factory=dict)
    scorers: dict[str, Callable] = field(default_factory=dict)
    policy_types: dict[str, Callable] = field(default_factory=dict)
    cache_backends: dict[str, Callable] = field(default_factory=dict)
    commands: dict[str, Any] = field(default_factory=dict)
    origins: dict[tuple[str, str], str] = field(default_factory=dict)  # (kind, name) -> plugin


def make_plugin_manager(load_entry_points: bool = True) -> pluggy.PluginManager:
    pm = pluggy.PluginManager("costr")
    pm.add_hookspecs(hookspecs)
    if load_entry_points:
        wanted = os.environ.get("COSTR_LOAD_PLUGINS")
        if wanted:
            allowed = {n.strip() for n in wanted.split(",") if n.strip()}
            for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
                if ep.name not in allowed:
                    pm.set_blocked(ep.name)
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    return pm


def plugin_origin(pm: pluggy.PluginManager, plugin: object) -> str:
    """Where a plugin came from: its distribution and version, or its module."""
    for loaded, dist in pm.list_plugin_distinfo():
        if loaded is plugin:
            return f"{dist.project_name} {dist.version}"
    return getattr(plugin, "__name__", type(plugin).__name__)


def collect(pm: pluggy.PluginManager) -> Registry:
    """Call every collecting hook and merge what is registered.

    Each plugin's implementation is called through pluggy (a caller holding that plugin alone),
    so pluggy's argument matching and tracing apply, while the host still knows
    which plugin is registering. Plugins are called in registration order."""
    registry = Registry()
    for hook_name, kind in KINDS.items():
        store = _store_for(registry, hook_name)
        impls = getattr(pm.hook, hook_name).get_hookimpls()
        plugins = [impl.plugin for impl in impls]
        for impl in impls:
            plugin_name = pm.get_name(impl.plugin) or repr(impl.plugin)
            others = [p for p in plugins if p is not impl.plugin]
            call_one = pm.subset_hook_caller(hook_name, remove_plugins=others)
            call_one(register=_registrar(registry, store, kind, plugin_name))
    return registry


def _store_for(registry: Registry, hook_name: str) -> dict:
    return getattr(registry, hook_name.removeprefix("register_"))


def _registrar(registry: Registry, store: dict, kind: str, plugin_name: str):
    def register(name_or_obj, factory=None):
        if factory is None:  # register(api_format): the object names itself
            name, value = name_or_obj.name, name_or_obj
        else:
            name, value = name_or_obj, factory
        if name in store:
            earlier = registry.origins[(kind, name)]
            raise DuplicateRegistration(
                f"{kind} {name!r} is registered by both plugin {earlier!r} and plugin {plugin_name!r}")
        store[name] = value
        registry.origins[(kind, name)] = plugin_name
    return register
