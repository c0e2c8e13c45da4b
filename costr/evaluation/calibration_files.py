"""Writing calibrated values into the operator's YAML files as small text edits, so comments and
layout survive: a policy's `thresholds:` line, and `routing.confidence` in providers.yaml. Each
edit is checked by parsing the result: everything but the edited key must read back unchanged,
else `CannotEdit` is raised and nothing should be written.
"""
from __future__ import annotations

import re

import yaml


class CannotEdit(Exception):
    """The file's layout is not one these edits understand; the caller prints what to paste."""


def yaml_number(value: float) -> str:
    text = f"{value:.4f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def _key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z_][\w-]*", name) else '"' + name.replace('"', '\\"') + '"'


def thresholds_line(thresholds: dict[str, float]) -> str:
    return f"thresholds: {_flow_mapping(thresholds)}"


def form_thresholds_line(by_form: dict[str, dict[str, float]]) -> str:
    pairs = ", ".join(f"{_key(form)}: {_flow_mapping(own)}" for form, own in by_form.items())
    return f"form_thresholds: {{{pairs}}}"


def _flow_mapping(thresholds: dict[str, float]) -> str:
    return "{" + ", ".join(f"{_key(t)}: {yaml_number(v)}" for t, v in thresholds.items()) + "}"


def set_policy_thresholds(text: str, thresholds: dict[str, float],
                          by_form: dict[str, dict[str, float]] | None = None) -> str:
    """`text` of a policy file with its top-level `thresholds:` replaced by one flow-style line
    (a comment after the old value is kept), or appended when there was none; and likewise its
    `form_thresholds:`, which is removed when `by_form` is empty."""
    out = _set_line(text, "thresholds", thresholds_line(thresholds))
    out = _set_line(out, "form_thresholds", form_thresholds_line(by_form) if by_form else None)
    _reads_as(text, out, {"thresholds": thresholds, "form_thresholds": by_form or None})
    return out


def _set_line(text: str, key: str, new: str | None) -> str:
    """`text` with the top-level `key:` (and a block value under it) replaced by the line `new`,
    appended when absent, or removed when `new` is None."""
    lines = text.splitlines(keepends=True)
    at = next((i for i, line in enumerate(lines) if re.match(rf"{key}\s*:", line)), None)
    if at is None:
        if new is None:
            return text
        return text + ("" if not text or text.endswith("\n") else "\n") + new + "\n"
    comment = re.search(r"(^|\s)#.*$", lines[at].rstrip("\n").split(":", 1)[1])
    tail = "   " + comment.group(0).strip() if comment else ""
    end = at + 1
    while end < len(lines) and lines[end][:1] in (" ", "\t"):
        end += 1   # a block mapping's entries or a flow mapping's continuation
    middle = "" if new is None else new + tail + "\n"
    return "".join(lines[:at]) + middle + "".join(lines[end:])


def confidence_lines(scorer: str, scores: list[float], values: list[float],
                     indent: str = "  ", width: int = 96) -> list[str]:
    """`confidence:` and its entries, at `indent` (a child of `routing:`), lists wrapped."""
    inner = indent * 2
    return ([f"{indent}confidence:   # P(the budget tier suffices | score), from costr calibrate\n",
             f"{inner}scorer: {_key(scorer)}\n"]
            + _flow_list(f"{inner}scores: ", scores, width)
            + _flow_list(f"{inner}budget_suffices: ", values, width))


def _flow_list(head: str, values: list[float], width: int) -> list[str]:
    lines, current = [], head + "["
    pad = " " * len(current)
    for i, v in enumerate(values):
        item = yaml_number(v) + ("," if i + 1 < len(values) else "]")
        if len(current) + len(item) + 1 > width and not current.endswith("["):
            lines.append(current.rstrip() + "\n")
            current = pad
        current += item + ("" if i + 1 == len(values) else " ")
    return lines + [current + "\n"]


def set_routing_confidence(text: str, scorer: str, scores: list[float],
                           values: list[float]) -> str:
    """`text` of providers.yaml with `routing.confidence` replaced or added at the end of the
    block-style `routing:` mapping (appended as a new `routing:` block when there is none)."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if re.match(r"routing\s*:", line)), None)
    table = {"scorer": scorer, "scores": scores, "budget_suffices": values}
    if start is None:
        body = "".join(confidence_lines(scorer, scores, values))
        out = text + ("" if not text or text.endswith("\n") else "\n") + "\nrouting:\n" + body
        _same_but(text, out, ("routing", "confidence"), table)
        return out
    if not re.fullmatch(r"routing\s*:\s*(#.*)?", lines[start].strip()):
        raise CannotEdit("routing: is written in flow style ({...})")
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or lines[end][:1] in (" ", "\t")):
        end += 1
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1   # leave the blank lines before the next section where they are
    children = [ln for ln in lines[start + 1:end] if ln.strip() and not ln.lstrip().startswith("#")]
    indent = re.match(r"[ \t]*", children[0]).group(0) if children else "  "
    at, drop = end, 0
    for i in range(start + 1, end):
        if re.match(re.escape(indent) + r"confidence\s*:", lines[i]):
            at, drop = i, 1
            while at + drop < end and (not lines[at + drop].strip()
                                       or len(re.match(r"[ \t]*", lines[at + drop]).group(0))
                                       > len(indent)):
                drop += 1
            break
    out = "".join(lines[:at] + confidence_lines(scorer, scores, values, indent)
                  + lines[at + drop:])
    _same_but(text, out, ("routing", "confidence"), table)
    return out


def _reads_as(before: str, after: str, changes: dict) -> None:
    """Raise CannotEdit unless `after` reads as `before` with each top-level key of `changes`
    set to its value (removed where the value is None)."""
    old, new = _both_read(before, after)
    expected = {k: v for k, v in old.items() if k not in changes or changes[k] is not None}
    expected.update({k: v for k, v in changes.items() if v is not None})
    if new != expected:
        raise CannotEdit("the edit would change more than " + " and ".join(changes))


def _both_read(before: str, after: str) -> tuple[dict, dict]:
    """The two texts as YAML mappings; CannotEdit when either is not one."""
    try:
        old, new = yaml.safe_load(before) or {}, yaml.safe_load(after)
    except yaml.YAMLError as exc:
        raise CannotEdit(f"the edit would not be valid YAML: {exc}") from None
    if not isinstance(old, dict) or not isinstance(new, dict):
        raise CannotEdit("expected a mapping at the top level")
    return old, new


def _same_but(before: str, after: str, path: tuple[str, ...], value) -> None:
    """Raise CannotEdit unless `after` reads as `before` with `path` set to `value`."""
    old, new = _both_read(before, after)
    expected = old
    node = expected
    for key in path[:-1]:
        if not isinstance(node.get(key, {}), dict):
            raise CannotEdit(f"{key} is not a mapping")
        node = node.setdefault(key, {})
    node[path[-1]] = value
    if new != expected:
        raise CannotEdit("the edit would change more than " + ".".join(path))
