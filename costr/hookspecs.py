"""The hooks a Costr plugin can implement.

Collecting hooks receive a `register` callback; the host merges what is registered, rejects
duplicate names and records which plugin registered what (`costr plugins` shows it).
"""
import pluggy

hookspec = pluggy.HookspecMarker("costr")
hookimpl = pluggy.HookimplMarker("costr")


@hookspec
def register_provider_types(register):
    """Register upstream wire APIs: `register(type_name, factory)`, where
    `factory(settings: costr.ProviderSettings, http: costr.Upstream)`
    returns a `costr.Provider`. `type_name` is what providers.yaml puts in `type:`."""


@hookspec
def register_api_formats(register):
    """Register client-facing API formats: `register(api_format)`, an object following
    `costr.ApiFormat` (its name, the paths it serves, and its codec)."""


@hookspec
def register_scorers(register):
    """Register complexity scorers: `register(name, factory)`, where `factory(options: dict)`
    returns a `costr.Scorer`: `score(request) -> costr.Complexity`."""


@hookspec
def register_policy_types(register):
    """Register cost-policy types: `register(type_name, factory)`, where
    `factory(name, options: dict, tiers: list[str])` returns a `costr.Policy`:
    `choose_tier(complexity) -> str`; routing_policies/*.yaml name it in `type:`."""


@hookspec
def register_cache_backends(register):
    """Register response-cache backends: `register(scheme, factory)`, where
    `factory(url: str, options: dict)` returns a `costr.CacheBackend`;
    the scheme is what a cache URL starts with (`memory://`)."""


@hookspec
def register_commands(register):
    """Register `costr` subcommands: `register(name, command)`, where `command` has `help` (one
    line for `costr --help`), `add_arguments(parser)` (an argparse parser to fill) and
    `run(args) -> int` (the exit status). A name the host already uses is refused."""
