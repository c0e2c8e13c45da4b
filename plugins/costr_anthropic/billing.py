"""What in an Anthropic Messages request Anthropic bills beyond its tokens at list price
(`billing_features`), named for providers.yaml's `billing.surcharges`:

- `web_search`: the web search server tool, billed per search (the answer's
  `usage.server_tool_use.web_search_requests`), bounded by the tool's `max_uses`;
- `code_execution`: the code execution server tool, billed by container time;
- `web_fetch`: the web fetch server tool; no fee beyond the tokens fetched, so allowed unpriced;
- `long_context`: the 1M-token context beta (`anthropic-beta: context-1m-...`), which prices a
  request over 200k input tokens higher (2x input, 1.5x output on the models that charge it);
- `fast_mode`: `speed: "fast"`, a dearer per-token rate;
- `inference_geo_<where>` (`inference_geo: "us"`, 1.1x on the models that charge it) and
  `service_tier_<tier>` (any tier but `auto` and `standard_only`);
- any other server tool Costr does not know, as `<its type without the date>`, since it may be
  billed: the operator allows it by pricing it, if only with `{}`.

Tools the client runs itself (bash, text editor, computer, memory) cost only their tokens.
Stripping a feature takes its body field (or tool) out together with the beta values that pair
with it, since either one alone is a 400.
"""
from __future__ import annotations

import re

from costr import BillingFeature, ChatRequest, InvalidRequest

SERVER_TOOLS = {   # tool type prefix -> (feature name, dearer, beta value prefixes pairing with it)
    "web_search_": ("web_search", True, ()),
    "code_execution_": ("code_execution", True, ("code-execution-",)),
    "web_fetch_": ("web_fetch", False, ("web-fetch-",)),
}
# Costr knows these cost nothing beyond their tokens: run by the client, or searches of the
# request's own tools and MCP servers.
TOKEN_PRICED_TOOLS = ("bash_", "text_editor_", "computer_", "memory_", "tool_search_tool_",
                      "mcp_toolset")
LONG_CONTEXT_BETA = "context-1m-"
FAST_MODE_BETA = "fast-mode-"
PLAIN_TIERS = ("auto", "standard_only")
BETA_HEADER = "anthropic-beta"


def billing_features(request: ChatRequest) -> list[BillingFeature]:
    raw = request.raw or {}
    found = [feature for i, tool in enumerate(raw.get("tools") or [])
             if (feature := _server_tool(i, tool)) is not None]
    betas = _betas(request)
    if any(b.startswith(LONG_CONTEXT_BETA) for b in betas):
        found.append(BillingFeature("long_context", BETA_HEADER,
                                    strip=_stripper(betas=(LONG_CONTEXT_BETA,))))
    for field in ("speed", "inference_geo", "service_tier"):
        if raw.get(field) is not None and not isinstance(raw[field], str):
            raise InvalidRequest(f"{field}: Input should be a valid string", param=field)
    if raw.get("speed") not in (None, "standard"):
        found.append(BillingFeature("fast_mode", "speed",
                                    strip=_stripper("speed", (FAST_MODE_BETA,))))
    geo = raw.get("inference_geo")
    if geo not in (None, "global"):
        found.append(BillingFeature(_named("inference_geo", geo), "inference_geo",
                                    strip=_stripper("inference_geo")))
    tier = raw.get("service_tier")
    if tier is not None and tier not in PLAIN_TIERS:
        found.append(BillingFeature(_named("service_tier", tier), "service_tier",
                                    strip=_stripper("service_tier")))
    return found


def _server_tool(index: int, tool) -> BillingFeature | None:
    kind = tool.get("type") if isinstance(tool, dict) else None
    if not isinstance(kind, str) or kind == "custom" or "input_schema" in tool \
            or kind.startswith(TOKEN_PRICED_TOOLS):
        return None
    name, dearer, betas = next((known for prefix, known in SERVER_TOOLS.items()
                                if kind.startswith(prefix)),
                               (_named(re.sub(r"_\d{8}$", "", kind)), True, ()))
    uses = tool.get("max_uses")
    bound = uses if isinstance(uses, int) and not isinstance(uses, bool) and uses >= 0 else None
    return BillingFeature(name, f"tools.{index}", dearer, bound, _tool_stripper(tool, betas))


def _tool_stripper(tool: dict, betas: tuple[str, ...]):
    def strip(request: ChatRequest) -> None:
        raw = request.raw
        kept = [t for t in raw.get("tools") or [] if t is not tool]
        choice = raw.get("tool_choice")
        if isinstance(choice, dict) and choice.get("name") == tool.get("name"):
            raw.pop("tool_choice")   # it named the tool now gone
        if kept:
            raw["tools"] = kept
        else:
            raw.pop("tools", None)
            raw.pop("tool_choice", None)
        _drop_betas(request, betas)
    return strip


def _stripper(field: str | None = None, betas: tuple[str, ...] = ()):
    def strip(request: ChatRequest) -> None:
        if field is not None:
            request.raw.pop(field, None)
        _drop_betas(request, betas)
    return strip


def _betas(request: ChatRequest) -> list[str]:
    header = request.forward_headers.get(BETA_HEADER, "")
    return [b.strip() for b in header.split(",") if b.strip()]


def _drop_betas(request: ChatRequest, prefixes: tuple[str, ...]) -> None:
    if not prefixes:
        return
    kept = [b for b in _betas(request) if not b.startswith(prefixes)]
    if kept:
        request.forward_headers[BETA_HEADER] = ",".join(kept)
    else:
        request.forward_headers.pop(BETA_HEADER, None)


def _named(prefix: str, value: object = None) -> str:
    """A feature name from what the client sent: lower-case letters, digits and underscores,
    short enough to quote in an error."""
    text = prefix if value is None else f"{prefix}_{value}"
    return re.sub(r"[^a-z0-9_]+", "_", text.lower())[:48]
