"""JSON Schema to the OpenAPI 3.0 subset Gemini accepts in function declarations and
`responseSchema`.

Gemini answers 400 to `$ref`, `$defs`, `additionalProperties`, `$schema` and most other JSON
Schema keywords, and to string formats other than `enum` and `date-time`. Clients (MCP servers,
Pydantic models) send all of them, so every schema is rewritten before it goes upstream: local
references are inlined, JSON-Schema-only spellings become their OpenAPI equivalents, and what
has no equivalent is dropped.
"""
from __future__ import annotations

from typing import Any

# Keywords Gemini's Schema object accepts and that carry over from JSON Schema unchanged.
_KEPT = frozenset({
    "title", "description", "minItems", "maxItems", "minProperties", "maxProperties",
    "minLength", "maxLength", "pattern", "minimum", "maximum", "propertyOrdering",
})
_FORMATS = {
    "string": frozenset({"enum", "date-time"}),
    "number": frozenset({"float", "double"}),
    "integer": frozenset({"int32", "int64"}),
}


def sanitise_schema(schema: Any) -> dict:
    """A copy of `schema` that Gemini's Schema object accepts."""
    if not isinstance(schema, dict):
        return {}
    return _clean(schema, schema, frozenset())


def _clean(node: Any, root: dict, seen: frozenset[str]) -> dict:
    if not isinstance(node, dict):  # `true` / `{}` schemas: anything goes
        return {}
    if "$ref" in node:
        return _inline_ref(node, root, seen)
    node = _flatten_all_of(node)
    out: dict = {}
    _copy_type(node, out)
    _copy_alternatives(node, out, root, seen)
    if "enum" in node or "const" in node:
        _copy_enum(node, out)
    fmt = node.get("format")
    if isinstance(fmt, str) and fmt in _FORMATS.get(str(out.get("type", "")).lower(), ()):
        out["format"] = fmt
    if isinstance(node.get("properties"), dict):
        out["properties"] = {name: _clean(sub, root, seen)
                             for name, sub in node["properties"].items()}
    if isinstance(node.get("required"), list):
        # Gemini rejects a required name that is not among the properties.
        known = out.get("properties", {})
        required = [name for name in node["required"] if name in known]
        if required:
            out["required"] = required
    items = node.get("items")
    if isinstance(items, list):  # tuple form: Gemini has one item schema
        items = items[0] if items else {}
    if items is not None:
        out["items"] = _clean(items, root, seen)
    for key in _KEPT & node.keys():
        out[key] = node[key]
    return out


def _inline_ref(node: dict, root: dict, seen: frozenset[str]) -> dict:
    ref = node["$ref"]
    target = _resolve(ref, root) if isinstance(ref, str) else None
    siblings = {k: v for k, v in node.items() if k != "$ref"}
    if target is None or ref in seen:
        # A remote or recursive reference cannot be inlined; an untyped object keeps the
        # tool usable where refusing the whole declaration would not.
        return _clean({"type": "object", **siblings}, root, seen)
    return _clean({**target, **siblings}, root, seen | {ref})


def _resolve(ref: str, root: dict) -> dict | None:
    if not ref.startswith("#"):
        return None
    node: Any = root
    for token in ref[1:].lstrip("/").split("/") if ref != "#" else []:
        token = token.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or token not in node:
            return None
        node = node[token]
    return node if isinstance(node, dict) else None


def _flatten_all_of(node: dict) -> dict:
    """Merge `allOf` members into the node: Gemini has no `allOf`, and Pydantic emits a
    one-member `allOf` around every referenced model that carries a description."""
    members = node.get("allOf")
    if not isinstance(members, list):
        return node
    merged = {k: v for k, v in node.items() if k != "allOf"}
    for member in members:
        if not isinstance(member, dict):
            continue
        for key, value in member.items():
            if key == "properties" and isinstance(value, dict):
                merged["properties"] = {**merged.get("properties", {}), **value}
            elif key == "required" and isinstance(value, list):
                merged["required"] = [*merged.get("required", []), *value]
            else:
                merged.setdefault(key, value)
    return merged


def _copy_type(node: dict, out: dict) -> None:
    kind = node.get("type")
    if isinstance(kind, list):  # ["string", "null"] is OpenAPI's nullable string
        if "null" in kind:
            out["nullable"] = True
        kinds = [k for k in kind if k != "null"]
        if len(kinds) == 1:
            out["type"] = kinds[0]
        elif kinds:
            out["anyOf"] = [{"type": k} for k in kinds]
    elif kind == "null":
        out["nullable"] = True
    elif isinstance(kind, str):
        out["type"] = kind
    if node.get("nullable") is True:
        out["nullable"] = True


def _copy_alternatives(node: dict, out: dict, root: dict, seen: frozenset[str]) -> None:
    options = node.get("anyOf") if isinstance(node.get("anyOf"), list) else node.get("oneOf")
    if not isinstance(options, list):
        return
    cleaned = []
    for option in options:
        if isinstance(option, dict) and option.get("type") == "null":
            out["nullable"] = True  # Optional[X] arrives as anyOf [X, null]
        else:
            cleaned.append(_clean(option, root, seen))
    if len(cleaned) == 1:
        for key, value in cleaned[0].items():
            out.setdefault(key, value)
    elif cleaned:
        out["anyOf"] = cleaned


def _copy_enum(node: dict, out: dict) -> None:
    values = node["enum"] if isinstance(node.get("enum"), list) else [node.get("const")]
    if None in values:
        out["nullable"] = True
    # Gemini's enum is a list of strings, whatever the type it constrains.
    strings = [v if isinstance(v, str) else str(v) for v in values if v is not None]
    if strings:
        out["enum"] = strings
        out.setdefault("type", "string")
        if out["type"] == "string":
            out["format"] = "enum"
