"""What a provider plugin implements, and what it is given.

A provider type (registered with `register_provider_types`) is a factory
`factory(settings, http) -> Provider`; Costr builds one Provider per entry under `providers:`
in providers.yaml. A provider knows its own wire format and nothing else: it encodes the
neutral `ChatRequest` for its upstream and decodes the answer back (costr.conversation).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, ClassVar

from costr.wire.conversation import ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse, Frame
from costr.errors import InvalidRequest
from costr.wire.upstream import Timeouts, Upstream


# What a model can be asked for, as providers.yaml and policy rules name it.
CAPABILITIES = ("tools", "vision", "json_output", "reasoning")


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    name: str
    type: str
    base_url: str | None
    api_key: str | None          # resolved from api_key_env; None when unset
    api_key_env: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    options: dict = field(default_factory=dict)  # type-specific settings from providers.yaml
    timeouts: Timeouts = field(default_factory=Timeouts)


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens."""
    input: float
    output: float
    cached_input: float | None = None  # defaults to input
    cache_write: float | None = None   # defaults to input


@dataclass(frozen=True, slots=True)
class ModelSpec:
    id: str
    provider: str
    tier: str | None
    price: Price
    context_window: int
    max_output_tokens: int | None = None
    upstream_name: str | None = None
    capabilities: frozenset[str] = frozenset()
    mode: str = "chat"  # chat | embedding
    options: dict = field(default_factory=dict)

    @property
    def wire_name(self) -> str:
        """The name the upstream knows this model by."""
        return self.upstream_name or self.id

    def supports(self, capability: str) -> bool:
        return capability in self.capabilities


class Provider:
    """Base class for providers; subclasses override what their upstream offers."""

    wire_format: str = ""  # e.g. "openai-chat"; matches an ApiFormat name for passthrough
    # The options this type reads from a provider entry's `options:` and from each of its
    # models' `options:` in providers.yaml: option name -> type annotation, checked with
    # pydantic (costr.plugin_options). Declared, an unknown key or a value of the wrong type is
    # reported at its line by `costr check`, at start and on reload, instead of being ignored.
    # None, the default, says nothing, and anything is accepted.
    provider_options: ClassVar[Mapping[str, Any] | None] = None
    model_options: ClassVar[Mapping[str, Any] | None] = None

    def __init__(self, settings: ProviderSettings, http: Upstream):
        self.settings = settings
        self.http = http

    @property
    def name(self) -> str:
        return self.settings.name

    async def complete(self, request: ChatRequest, model: ModelSpec) -> ChatResponse:
        raise NotImplementedError

    def stream(self, request: ChatRequest, model: ModelSpec) -> AsyncIterator[Frame]:
        """Yield Frames; raise costr.errors.UpstreamError before the first one on failure."""
        raise NotImplementedError

    async def embed(self, request: EmbeddingRequest, model: ModelSpec) -> EmbeddingResponse:
        raise InvalidRequest(f"provider type {self.settings.type!r} does not serve embeddings",
                             param="model")

    async def count_tokens(self, request: ChatRequest, model: ModelSpec) -> int | None:
        """The upstream's own count of the request's input tokens, or None to estimate."""
        return None

    def check_settings(self) -> list[str]:
        """Problems with this provider's settings that its declared options cannot express
        (a base URL for the wrong API, say). `costr check`, start-up and reloads report each
        at `providers.NAME` and refuse the configuration. An unset API key is not one: Costr
        leaves such a provider out of routing and says so itself."""
        return []
