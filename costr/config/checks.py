"""The checks of providers.yaml only the installed plugins can make: the options each provider
type declares (for itself and for its models), the scorer's options, and each provider's own
`check_settings()`. They run wherever the configuration is loaded with the plugins, so
`costr check`, start-up and a reload all refuse the same mistakes, instead of a typo being
ignored or a scorer failing with a traceback once Costr serves.
"""
from __future__ import annotations

import re
from typing import Callable

from costr.config.plugin_options import option_problems
from costr.wire.providers import ProviderSettings

Report = Callable[[tuple, str], None]   # report(key path in providers.yaml, reason)


def check_with_plugins(parsed, providers: dict[str, ProviderSettings], registry,
                       report: Report) -> None:
    """Report what the provider types and the scorer in `registry` find wrong in `parsed`
    (a validated ProvidersFile), whose providers' settings are `providers`."""
    faulty = check_provider_options(parsed, registry, report)
    check_scorer(parsed.routing.scorer, parsed.routing.scorer_options, registry, report)
    check_provider_settings({n: s for n, s in providers.items() if n not in faulty},
                            registry, report)


def check_provider_options(parsed, registry, report: Report) -> set[str]:
    """Options under a provider or a model that its provider type does not declare, or whose
    value does not fit; returns the providers whose own options are wrong."""
    faulty = set()
    for name, entry in parsed.providers.items():
        factory = registry.provider_types.get(entry.type)
        declared = getattr(factory, "provider_options", None)
        for loc, reason in option_problems(entry.options, declared,
                                           f"provider type {entry.type!r}"):
            report(("providers", name, "options", *loc), reason)
            faulty.add(name)
    for i, model in enumerate(parsed.models):
        entry = parsed.providers.get(model.provider)
        if entry is None:
            continue   # reported as an unknown provider
        declared = getattr(registry.provider_types.get(entry.type), "model_options", None)
        for loc, reason in option_problems(model.options, declared,
                                           f"models of provider type {entry.type!r}"):
            report(("models", i, "options", *loc), reason)
    return faulty


def check_scorer(name: str, options: dict, registry, report: Report) -> None:
    """Build the scorer as serving will, so a bad option or an unreadable file is reported at
    `routing.scorer_options` (at the option the complaint starts with, when it names one)."""
    factory = registry.scorers.get(name)
    if factory is None:
        return   # reported as an unknown scorer
    try:
        factory(options)
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        report(("routing", "scorer_options"), f"cannot read{where}: {exc.strerror or exc}")
    except (ValueError, TypeError, KeyError) as exc:
        key, sep, reason = str(exc).partition(": ")
        if sep and re.fullmatch(r"[\w-]+(\.[\w-]+)*", key) and key.split(".")[0] in options:
            report(("routing", "scorer_options", *key.split(".")), reason)
        else:
            report(("routing", "scorer_options"), str(exc))


def check_provider_settings(providers: dict[str, ProviderSettings], registry,
                            report: Report) -> None:
    """Each provider's `check_settings()`, on a provider built without an HTTP client
    (factories open nothing), reported at `providers.NAME`."""
    for name, settings in providers.items():
        factory = registry.provider_types.get(settings.type)
        if factory is None:
            continue   # reported as an unknown provider type
        try:
            problems = factory(settings, None).check_settings()
        except (ValueError, TypeError, KeyError) as exc:
            problems = [str(exc)]
        for problem in problems:
            report(("providers", name), problem)
