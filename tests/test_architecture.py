"""The shape of the code: costr/ is a few parts whose imports point one way, the core names no
provider, built-ins are ordinary plugins, modules stay small."""
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
    """Every module under costr/, excluding costr/testing/ (the fake upstream speaks every
    provider's wire)."""
    return sorted(p for p in CORE.rglob("*.py") if "testing" not in p.relative_to(CORE).parts)


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


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: str(p.relative_to(CORE)))
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
    assert registered["openai"]["API format"] == ["openai-chat", "openai-responses"]
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


# -- the parts of costr/ and the direction of their imports ---------------------------------------

SEAMS = {"__init__.py", "__main__.py", "errors.py", "hookspecs.py", "plugins.py"}
# What each part may import besides itself. The top-level seams are parts of their own:
# "errors" and "hookspecs" import nothing of Costr's, "plugins" only the hook specifications.
MAY_IMPORT = {
    "errors": set(),
    "hookspecs": set(),
    "plugins": {"hookspecs"},
    "wire": {"errors"},
    "config": {"wire", "errors", "plugins", "hookspecs"},
    "routing": {"config", "wire", "errors", "plugins", "hookspecs"},
    "accounts": {"routing", "config", "wire", "errors"},
    "cache": {"routing", "wire", "errors", "plugins"},
    "dashboard": {"accounts", "cache", "routing", "config", "wire", "errors", "plugins"},
    "server": {"dashboard", "accounts", "cache", "routing", "config", "wire", "errors", "plugins",
               "hookspecs"},
    "evaluation": {"routing", "config", "wire", "errors", "plugins"},
    "testing": {"server", "dashboard", "accounts", "cache", "routing", "config", "wire", "errors", "plugins",
                "hookspecs"},
    "benchmark": {"testing", "errors"},
    "cli": {"server", "dashboard", "evaluation", "benchmark", "accounts", "cache", "routing", "config", "wire",
            "errors", "plugins", "hookspecs"},
    "__main__": {"cli"},
}


def module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(root: Path, path: Path) -> set[str]:
    """The modules of `root`'s package that `path` imports, anywhere in it (inside functions and
    `if TYPE_CHECKING:` too: an import hidden there is still a dependency), as dotted names."""
    package = root.name
    modules = {module_name(root, p) for p in root.rglob("*.py")}
    here = module_name(root, path)
    base = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == package}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base.split(".")[: len(base.split(".")) - (node.level - 1)]
                module = ".".join(anchor + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] != package:
                continue
            submodules = {f"{module}.{a.name}" for a in node.names} & modules
            found |= submodules or {module}   # `from pkg import module` uses the module
    return {m for m in found if m in modules and m != here}


def import_graph(root: Path) -> dict[str, set[str]]:
    return {module_name(root, p): imports_of(root, p) for p in sorted(root.rglob("*.py"))}


def part_of(module: str) -> str:
    bits = module.split(".")
    return bits[1] if len(bits) > 1 else "__init__"


def forbidden_imports(graph: dict[str, set[str]]) -> list[str]:
    """`a -> b` for each import of a part that its part may not use. The package's __init__
    re-exports the public names, lazily, and so may name any part."""
    wrong = []
    for module, used in sorted(graph.items()):
        part = part_of(module)
        if part == "__init__":
            continue
        allowed = MAY_IMPORT.get(part)
        for target in sorted(used):
            other = part_of(target)
            if other != part and (allowed is None or other not in allowed):
                wrong.append(f"{module} -> {target}")
    return wrong


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of two or more modules (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_costr_shows_its_parts_each_saying_what_it_is_and_may_import():
    assert {p.name for p in CORE.glob("*.py")} == SEAMS
    parts = sorted(p for p in CORE.iterdir() if p.is_dir() and (p / "__init__.py").exists())
    assert {p.name for p in parts} == set(MAY_IMPORT) - {"errors", "hookspecs", "plugins",
                                                         "__main__"}
    for part in parts:
        doc = ast.get_docstring(ast.parse((part / "__init__.py").read_text())) or ""
        summary = doc.split("\n\n")[0]
        assert summary and "\n" not in summary, f"{part.name}/__init__.py: a one-line summary"
        assert "import" in summary, f"{part.name}/__init__.py: say what the part may import"


def test_each_part_imports_only_the_parts_below_it():
    assert forbidden_imports(import_graph(CORE)) == []


def test_no_module_imports_itself_round_a_cycle():
    assert import_cycles(import_graph(CORE)) == []


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "costr" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "costr"


def test_the_checks_catch_a_forbidden_import_and_a_cycle_however_hidden(tmp_path):
    core = write_tree(tmp_path, {
        "__init__.py": "", "errors.py": "",
        "routing/__init__.py": "", "server/__init__.py": "",
        "routing/route.py": "def f():\n    from costr.server import app\n",
        "server/app.py": "from ..routing import route\n",
        "wire/__init__.py": "", "wire/sse.py": "from . import codec\n",
        "wire/codec.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                         "    from costr.wire.sse import read\n",
    })
    graph = import_graph(core)
    assert forbidden_imports(graph) == ["costr.routing.route -> costr.server.app"]
    assert import_cycles(graph) == [["costr.routing.route", "costr.server.app"],
                                    ["costr.wire.codec", "costr.wire.sse"]]


def test_every_public_name_resolves_from_costr_itself():
    import costr
    assert costr.__all__
    for name in costr.__all__:
        assert getattr(costr, name) is not None, name
    with pytest.raises(AttributeError):
        costr.NoSuchName  # noqa: B018


def test_the_example_plugin_imports_only_costrs_public_names():
    example = REPO / "plugins" / "costr-ollama"
    used = set()
    for path in example.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                used.add(node.module)
            elif isinstance(node, ast.Import):
                used |= {a.name for a in node.names}
    assert {m for m in used if m.split(".")[0] == "costr"} <= {"costr", "costr.testing"}
