"""Gemini's thought signatures, carried across requests inside the tool call ids Costr mints.

Gemini 3 models attach an opaque `thoughtSignature` to the first functionCall part of each
answer that calls tools, and refuse (400 INVALID_ARGUMENT, "Function call is missing a
thought_signature in functionCall parts") a request in which the first functionCall part of
any model step of the current turn comes back without its signature. Costr keeps no state
between requests, and clients echo back only a call's id, so the signature rides in the id:

    call_<24 hex>__sig__<model tag>__<the signature as base64url, unpadded>

which stays within `[A-Za-z0-9_-]`, as Anthropic's tool_use ids must. A signature is valid only
for the model that made it (Gemini answers "Corrupted thought signature" to another's), and a
session may move a tool loop to a model of a higher tier, so the id also names the model (8 hex
of a hash of its name): the signature goes back to that model only, and any other treats the
call as unsigned. A real signature is a
few hundred to a few thousand base64 characters, and so is the id; providers that cap ids
send a short stand-in of it (costr.tool_call_ids). Gemini's own call id, when it gives one,
takes the place of `call_<24 hex>`.

Calls with no signature (made by another provider, or minted before this existed) sent to a
model that requires signatures get Google's documented sentinel instead, which tells Gemini
to skip the check. Whether a model requires them: the model's `options:
{requires_thought_signatures: true|false}` in providers.yaml when set, else its name
(`gemini-3` and later do; 2.5 and earlier only sign while thinking, and check nothing). A
versionless alias (`gemini-flash-latest`, `gemini-pro-latest`) counts as requiring them: the
aliases point at Gemini 3 models now and will only move forward, and the sentinel is harmless
to a model that checks nothing, where a missing signature is a hard 400 to one that does.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import re
import uuid

from costr import ModelSpec

MARKER = "__sig__"
SKIP_VALIDATION = "skip_thought_signature_validator"
OPTION = "requires_thought_signatures"
_FIRST_REQUIRING_VERSION = 3
_VERSION = re.compile(r"(?:^|/)gemini-(\d+)(?:[.-]|$)")
_LATEST_ALIAS = re.compile(r"(?:^|/)gemini-[a-z-]*latest$")


def new_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


def model_tag(model: ModelSpec) -> str:
    """What a call id says of the model that signed it."""
    return hashlib.sha256(model.wire_name.encode()).hexdigest()[:8]


def call_id_with_signature(base: str, signature: str | None, tag: str = "") -> str:
    """The id to hand the client for a call Gemini made (`base`), carrying its signature and the
    tag of the model that made it (`model_tag`)."""
    carried = _as_base64url(signature) if signature else None
    return f"{base}{MARKER}{tag}__{carried}" if carried else base


def signature_in(call_id: str, tag: str = "") -> str | None:
    """The signature a call id minted by `call_id_with_signature` carries, as Gemini sent it
    (standard base64), if the model tagged `tag` made it; None for any other id."""
    base, marker, carried = call_id.partition(MARKER)
    signer, separator, data = carried.partition("__")
    if not (base and marker and separator) or signer != tag:
        return None
    raw = _decode(data)
    return base64.b64encode(raw).decode() if raw else None


def requires_signatures(model: ModelSpec) -> bool:
    """Whether `model` refuses function calls of the current turn that lack a signature."""
    setting = model.options.get(OPTION)
    if isinstance(setting, bool):
        return setting
    name = model.wire_name.lower()
    version = _VERSION.search(name)
    if version is None:
        return bool(_LATEST_ALIAS.search(name))
    return int(version.group(1)) >= _FIRST_REQUIRING_VERSION


def sign_function_calls(contents: list[dict]) -> None:
    """Give the first functionCall part of every model turn that has none the sentinel. Gemini
    checks only the current turn's steps and skips the check for the sentinel, so marking the
    older turns too changes nothing and needs no guess at where the current turn begins."""
    for content in contents:
        if content["role"] != "model":
            continue
        first = next((part for part in content["parts"] if "functionCall" in part), None)
        if first is not None and "thoughtSignature" not in first:
            first["thoughtSignature"] = SKIP_VALIDATION


def _as_base64url(signature: str) -> str | None:
    raw = _decode(signature)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=") if raw else None


def _decode(text: str) -> bytes | None:
    """Base64 in either alphabet (Google accepts both for bytes fields), padded or not."""
    standard = text.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
