"""Costr, a self-hosted LLM cost router: the public names plugin authors import, `from costr import ...`.

Everything listed here is kept stable; other modules are internal and may move. Names load
lazily, so importing one does not pull in the server or the offline tools.
"""
from __future__ import annotations

import importlib

_PUBLIC = {
    "costr.hookspecs": ["hookimpl", "hookspec"],
    "costr.errors": [
        "AuthenticationFailed", "ConfigError", "CostrError", "InsufficientCredits",
        "InvalidRequest", "ModelNotFound", "NoUsableProvider", "NotFound", "PermissionDenied",
        "RateLimited", "UpstreamError", "UpstreamTimeout", "default_error_body"],
    "costr.wire.conversation": [
        "BlockStart", "BlockStop", "ChatRequest", "ChatResponse", "EmbeddingRequest",
        "EmbeddingResponse", "Event", "Frame", "Image", "Message", "MessageEnd", "MessageStart",
        "ResponseFormat", "StopReason", "StreamFailure", "Text", "TextDelta", "Thinking",
        "ThinkingDelta", "Tool", "ToolArgumentsDelta", "ToolCall", "ToolChoice", "ToolResult",
        "Part", "Role", "Usage", "system_reminder", "text_of"],
    "costr.wire.formats": ["ApiFormat", "EmbeddingsFormat", "RoutingFacts", "StreamEncoder",
                           "parse_json_object"],
    "costr.wire.providers": ["ModelSpec", "Price", "Provider", "ProviderSettings"],
    "costr.wire.upstream": ["Reply", "Timeouts", "Upstream", "error_from_reply"],
    "costr.wire.sse": ["SSEvent", "data_line", "event_line"],
    "costr.wire.billing_features": ["BillingFeature"],
    "costr.wire.tool_names": ["ToolNameRule", "restore_in_events", "restore_in_response"],
    "costr.wire.tool_call_ids": ["ToolCallIdRule"],
    "costr.routing.scoring": ["Complexity", "Scorer", "TrainedScorer", "estimate_tokens",
                              "user_ask"],
    "costr.routing.policy": ["MarginPolicy", "Policy"],
    "costr.cache.backends": ["CacheBackend", "cache_key", "open_cache"],
    "costr.config.plugin_options": ["check_options"],
}
_HOME = {name: module for module, names in _PUBLIC.items() for name in names}
__all__ = sorted(_HOME)


def __getattr__(name: str):
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'costr' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
