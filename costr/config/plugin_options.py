"""The options a plugin declares it reads, and the check of what an operator wrote against them.

A declaration maps each option's name to a type annotation (`{"bias": float}`,
`{"thinking": Literal["adaptive", "enabled"]}`), which pydantic checks strictly: YAML already
gives numbers, booleans and lists their own types, so a string "yes" where a boolean belongs is
a mistake to report, not a yes to guess at. `None` instead of a mapping means the plugin does
not say, and anything is accepted, so plugins written before declarations existed keep working.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError

Declared = Mapping[str, Any] | None   # option name -> type annotation, or None: not said


def option_problems(options: Mapping, declared: Declared, owner: str) -> list[tuple[tuple, str]]:
    """`(key path, reason)` for each option that `declared` does not name or whose value does
    not fit its type; `owner` names whose options they are ("scorer 'learned'")."""
    if declared is None:
        return []
    problems: list[tuple[tuple, str]] = []
    for key, value in options.items():
        if key not in declared:
            known = f"known: {', '.join(sorted(declared))}" if declared else "it takes no options"
            problems.append(((key,), f"unknown option for {owner} ({known})"))
            continue
        try:
            TypeAdapter(declared[key]).validate_python(value, strict=True)
        except ValidationError as exc:
            reasons: dict[tuple, list[str]] = {}
            for err in exc.errors():
                reasons.setdefault((key, *_path_in(value, err["loc"])), []).append(err["msg"])
            problems += [(loc, "; ".join(dict.fromkeys(msgs))) for loc, msgs in reasons.items()]
    return problems


def _path_in(value: Any, loc: tuple) -> tuple:
    """The part of a pydantic error's location that indexes into `value`: the names pydantic
    adds for a union's members (`str`, `int`) mean nothing to an operator, so they go."""
    path = []
    for part in loc:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            break
        path.append(part)
    return tuple(path)


def check_options(options: Mapping, declared: Declared, owner: str) -> None:
    """Raise ValueError("key: reason") for the first problem `option_problems` finds: the
    complaint a scorer or policy factory raises, which `costr check` reports at the key's line."""
    problems = option_problems(options, declared, owner)
    if problems:
        loc, reason = problems[0]
        raise ValueError(f"{dotted_key(loc)}: {reason}")


def dotted_key(loc: tuple) -> str:
    """`models[3].options.thinking` for ("models", 3, "options", "thinking")."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
