"""The configuration in force: validated files plus the objects built from them (providers,
policies, scorer), swapped whole on reload so a request always sees one consistent set."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from costr.config.files import Config, ConfidenceEntry, load_config, stale_confidence
from costr.errors import ConfigError
from costr.plugins import Registry
from costr.routing.policy import Policy
from costr.routing.scoring import Scorer
from costr.wire.providers import ModelSpec, Provider
from costr.wire.upstream import Upstream

log = logging.getLogger("costr.config")


@dataclass
class LiveConfig:
    config: Config
    providers: dict[str, Provider]     # every configured provider, usable or not
    usable: frozenset[str]             # providers with their credentials present
    policies: dict[str, Policy]
    scorer: Scorer
    chat_models: dict[str, ModelSpec]  # by id, in file order
    by_tier: dict[str, list[ModelSpec]]
    auto_names: frozenset[str]
    confidence: ConfidenceEntry | None = None  # routing.confidence, unless fitted for another scorer

    @classmethod
    def build(cls, config: Config, registry: Registry, http: Upstream) -> "LiveConfig":
        providers = {name: registry.provider_types[s.type](s, http)
                     for name, s in config.providers.items()}
        missing = config.missing_credentials()
        chat = {m.id: m for m in config.models.values() if m.mode == "chat"}
        policies = {name: registry.policy_types[kind](name, options, config.tiers)
                    for name, (kind, options) in config.policies.items()}
        scorer = registry.scorers[config.routing.scorer](config.routing.scorer_options)
        _require_interfaces(config, policies, scorer)
        return cls(
            config=config, providers=providers,
            usable=frozenset(n for n in providers if n not in missing),
            policies=policies, scorer=scorer,
            chat_models=chat,
            by_tier={t: [m for m in chat.values() if m.tier == t] for t in config.tiers},
            auto_names=frozenset(["auto", *config.routing.auto_aliases]),
            confidence=None if stale_confidence(config.routing) else config.routing.confidence,
        )

    def provider_for(self, model: ModelSpec) -> Provider:
        return self.providers[model.provider]

    def passes_through(self, request, model: ModelSpec) -> bool:
        """Whether the client's request reaches this model's upstream as sent (same wire
        format), its fields and forwarded headers included; a translation drops them."""
        return self.providers[model.provider].wire_format == request.source_format


def _require_interfaces(config: Config, policies: dict, scorer: object) -> None:
    """A plugin whose factory built something without the interface is refused here, once,
    rather than failing every request."""
    problems = [f"policy {name}: type {config.policies[name][0]!r} built a "
                f"{type(policy).__name__}, which has no choose_tier(complexity)"
                for name, policy in policies.items() if not isinstance(policy, Policy)]
    if not isinstance(scorer, Scorer):
        problems.append(f"routing.scorer: {config.routing.scorer!r} built a "
                        f"{type(scorer).__name__}, which has no score(request)")
    if problems:
        raise ConfigError(problems)


@dataclass(frozen=True)
class ReloadOutcome:
    """What the latest reload did, kept for the operator (the dashboard's operator view): a
    broken edit is otherwise only in the log, and the gateway carries on with the old files."""
    at: float           # epoch seconds
    ok: bool
    problems: str = ""  # when not ok: every problem found, as logged


class ConfigHolder:
    """Holds the LiveConfig in force; reloads it when its files change or on SIGHUP.
    A broken edit keeps the last good configuration and logs every problem; `loaded_at` is when
    the configuration in force was loaded, `last_reload` what the latest reload did (None
    before the first)."""

    def __init__(self, providers_path: Path, policies_dir: Path, registry: Registry,
                 http: Upstream, poll_seconds: float = 1.0):
        self.providers_path, self.policies_dir = Path(providers_path), Path(policies_dir)
        self.registry, self.http, self.poll_seconds = registry, http, poll_seconds
        self.current = self._load()
        self.loaded_at = time.time()
        self.last_reload: ReloadOutcome | None = None
        self._stamp = self._files_stamp()
        self._task: asyncio.Task | None = None

    def _load(self) -> LiveConfig:
        config = load_config(self.providers_path, self.policies_dir, self.registry)
        live = LiveConfig.build(config, self.registry, self.http)
        for name, env in config.missing_credentials().items():
            log.warning("provider %s is left out of routing: %s is not set", name, env)
        return live

    def reload(self) -> bool:
        try:
            self.current = self._load()
        except ConfigError as exc:
            log.error("configuration not reloaded, keeping the last good one:\n%s", exc)
            self.last_reload = ReloadOutcome(time.time(), ok=False, problems=str(exc))
            return False
        self.loaded_at = time.time()
        self.last_reload = ReloadOutcome(self.loaded_at, ok=True)
        log.info("configuration reloaded from %s and %s", self.providers_path, self.policies_dir)
        return True

    def _files_stamp(self) -> tuple:
        paths = [self.providers_path, *sorted(self.policies_dir.glob("*.y*ml"))]
        stamp = []
        for path in paths:
            try:
                st = os.stat(path)
                stamp.append((str(path), st.st_mtime_ns, st.st_size))
            except OSError:
                stamp.append((str(path), None, None))
        return tuple(stamp)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            stamp = self._files_stamp()
            if stamp != self._stamp:
                self._stamp = stamp
                self.reload()

    def start_watching(self) -> None:
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._watch())
        try:
            loop.add_signal_handler(signal.SIGHUP, self.reload)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread (tests) or no SIGHUP on this platform

    def stop_watching(self) -> None:
        if self._task:
            self._task.cancel()
