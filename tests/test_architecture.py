"""The shape of the code: the core names no provider, built-ins are ordinary plugins, modules
stay small."""
from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORE = REPO / "costr"
PROVIDER_NAMES = re.compile(r"openai|anthropic|gemini|google|claude|ollama", re.I)
BUILT_INS = {"openai", "anthropic", "gemini", "heuristic", "thresholds", "memory_cache",
             "sqlite_cache", "redis_cache"}
MAX_LINES = 400


def core_modules() -> list[Path]:
    """costr/*.py, excluding costr/testing/ (the fake upstream speaks every provider's wire)."""
    return sorted(CORE.glob("*.py"))


def docstring_nodes(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                found.add(id(body[0].value))
    return found


def names_in(node: ast.AST) -> list[str]:
    """The identifiers and string literals a node spells out."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        return [node.attr]
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, ast.arg):
        return [node.arg]
    if isinstance(node, ast.keyword):
        return [node.arg or ""]
    if isinstance(node, ast.alias):
        return [node.name, node.asname or ""]
    if isinstance(node, ast.ImportFrom):
        return [node.module or ""]
    if isinstance(node, ast.Global | ast.Nonlocal):
        return list(node.names)
    return []


def provider_mentions(path: Path) -> list[str]:
    """`line: 'text'` for each identifier or string (not a docstring) naming a provider."""
    tree = ast.parse(path.read_text(), filename=str(path))
    docstrings = docstring_nodes(tree)
    return [f"{getattr(node, 'lineno', '?')}: {text[:80]!r}"
            for node in ast.walk(tree) if id(node) not in docstrings
            for text in names_in(node) if PROVIDER_NAMES.search(text)]


def test_the_checker_finds_names_in_code_but_not_in_comments_or_docstrings(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('"""Talks to OpenAI."""\n# Anthropic too\n'
                      'def f(gemini_key):\n    """Google."""\n    return f"{x}claude"\n'
                      'import ollama_client\n')
    assert sorted(provider_mentions(sample)) == ["3: 'gemini_key'", "5: 'claude'",
                                                 "6: 'ollama_client'"]


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: p.name)
def test_core_module_names_no_provider(path):
    assert provider_mentions(path) == []


def test_built_in_plugins_are_entry_points_of_the_costr_group():
    entry_points = importlib.metadata.entry_points(group="costr")
    assert BUILT_INS <= {ep.name for ep in entry_points}
    for ep in entry_points:
        if ep.name in BUILT_INS:
            assert ep.value == f"costr_{ep.name}" and ep.dist.name == "costr"


def parse_plugins_listing(text: str) -> dict[str, tuple[str, dict[str, list[str]]]]:
    """`name  (distribution version)` lines, each followed by `    kind: a, b` lines."""
    plugins: dict = {}
    current = None
    for line in text.splitlines():
        if not line.strip():
            continue
        if not line.startswith(" "):
            name, _, origin = line.partition("  (")
            current = plugins[name.strip()] = (origin.rstrip(")"), {})
        else:
            kind, _, names = line.strip().partition(": ")
            current[1][kind] = names.split(", ")
    return plugins


def test_costr_plugins_lists_what_each_built_in_registers_and_where_from():
    env = {k: v for k, v in os.environ.items() if k != "COSTR_LOAD_PLUGINS"}
    result = subprocess.run([sys.executable, "-m", "costr", "plugins"], capture_output=True,
                            text=True, cwd=REPO, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    plugins = parse_plugins_listing(result.stdout)
    assert BUILT_INS <= set(plugins)
    version = importlib.metadata.version("costr")
    for name in BUILT_INS:
        assert plugins[name][0] == f"costr {version}", (name, plugins[name])
    registered = {name: plugins[name][1] for name in BUILT_INS}
    assert registered["openai"]["provider type"] == ["openai"]
    assert registered["openai"]["API format"] == ["openai-chat"]
    assert registered["anthropic"]["provider type"] == ["anthropic"]
    assert registered["anthropic"]["API format"] == ["anthropic-messages"]
    assert registered["gemini"]["provider type"] == ["gemini"]
    assert registered["heuristic"] == {"scorer": ["heuristic"]}
    assert registered["thresholds"] == {"policy type": ["thresholds"]}
    assert registered["memory_cache"] == {"cache backend": ["memory"]}


def test_costr_plugins_honours_costr_load_plugins():
    env = {**os.environ, "COSTR_LOAD_PLUGINS": "heuristic,thresholds"}
    result = subprocess.run([sys.executable, "-m", "costr", "plugins"], capture_output=True,
                            text=True, cwd=REPO, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert set(parse_plugins_listing(result.stdout)) == {"heuristic", "thresholds"}


def test_modules_stay_under_400_lines():
    sources = [p for root in (CORE, REPO / "plugins") for p in root.rglob("*.py")
               if not p.name.startswith("test_") and "egg-info" not in str(p)]
    assert sources
    too_long = {str(p.relative_to(REPO)): n for p in sources
                if (n := len(p.read_text().splitlines())) >= MAX_LINES}
    assert not too_long, f"modules at or over {MAX_LINES} lines: {too_long}"
