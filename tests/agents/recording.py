"""`run_agents.py --record DIR`: each request an agent sent, as one JSON fixture, with keys
dropped and what changes from run to run (temporary paths, the test secret, random ids)
replaced by stable placeholders."""
from __future__ import annotations

import contextlib
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Record:
    """Where --record writes this run's requests: DIR/<prefix>-<nn>-<kind>.json."""
    directory: Path
    prefix: str


RUN_DIR = "/tmp/costr-agent-run"   # stands for the run's temporary directory (work/, home/ ...)
SECRET_CODE = "SECRET00"           # stands for notes.txt's random code (PELICAN-<code>)
# Transport details of the relay hop, not the agent's choice (host also carries a random port).
TRANSPORT_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}
KEY_HEADERS = {"authorization", "proxy-authorization", "x-api-key", "api-key", "x-goog-api-key",
               "cookie", "set-cookie"}
KEYISH_NAME = re.compile(r"key|token|secret|password|auth|cookie", re.IGNORECASE)
KEYISH_ENV = re.compile(r"key|secret|password|auth|credential|cookie", re.IGNORECASE)
KEYISH_VALUE = re.compile(r"\b(bearer|basic)\s|\b(sk|cr|pk|rk)-[A-Za-z0-9_-]{8,}", re.IGNORECASE)
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)
HEX = re.compile(r"^[0-9a-f]{16,}$", re.IGNORECASE)
# A session id written into prompt text (OpenClaw's "Runtime: ... | sessionId=<uuid> | ...")
SESSION_IN_TEXT = re.compile(r"session_?id[\"']?\s*[=:]\s*[\"']?"
                             r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})", re.IGNORECASE)
# Identifiers minted afresh each run: the agent's session and device, and tool-call ids.
RANDOM_ID_KEYS = {"session_id", "device_id", "user_id", "account_uuid", "conversation_id", "sessionId",
                  "tool_use_id", "tool_call_id", "call_id"}
SIDE_CALLS = [("title", "title"), ("summar", "summary"), ("topic", "topic"), ("quota", "quota"),
              ("compact", "compact"), ("memor", "memory"), ("classif", "classifier"),
              ("suggest", "suggestion")]


def agent_version(executable: str, env: dict, cwd: Path) -> str:
    """`<agent> --version`, reduced to its version number (the whole first line if it has none)."""
    try:
        out = subprocess.run([executable, "--version"], check=False, cwd=cwd, env=env,
                             stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    line = (out.stdout or out.stderr).strip().splitlines()[:1]
    found = re.search(r"\d+\.\d+(?:\.\d+)?(?:[-.][0-9A-Za-z.]+)?", line[0]) if line else None
    return found.group(0) if found else (line[0] if line else "unknown")


def record_requests(record: Record, meta: dict, seen: list[dict], scrubs: dict[str, str]) -> list[Path]:
    """Write each request the agent sent as DIR/<prefix>-<nn>-<kind>.json: `meta` (agent,
    agent_version, recorded_with), then method, path, headers and the parsed JSON body, as sent,
    except: headers that carry a key (or only describe the relay hop) are dropped; the run's
    temporary directory, notes.txt's code, the key and the relay's port become fixed
    placeholders (`scrubs`); and ids minted afresh each run (session, device, tool calls)
    become stable ones, the same value always the same placeholder. Earlier files of the same
    prefix are removed first, so a re-recording replaces them."""
    record.directory.mkdir(parents=True, exist_ok=True)
    for old in record.directory.glob(f"{record.prefix}-[0-9][0-9]-*.json"):
        old.unlink()
    scrubs = dict(scrubs)
    ids: dict[str, str] = {}
    for entry in seen:
        collect_random_ids(entry, ids)
    scrubs.update(ids)
    written = []
    for number, entry in enumerate(seen, 1):
        headers = {name: value for name, value in entry["headers"].items() if keep_header(name, value)}
        fixture = {**meta, "method": entry["method"], "path": entry["path"], "headers": headers,
                   "body": entry["body"]}
        fixture = replace_strings(fixture, scrubs)
        path = record.directory / f"{record.prefix}-{number:02d}-{short_kind(fixture)}.json"
        path.write_text(json.dumps(fixture, indent=1, ensure_ascii=False) + "\n")
        written.append(path)
    return written


def keep_header(name: str, value: str) -> bool:
    name = name.lower()
    if name in TRANSPORT_HEADERS or name in KEY_HEADERS or KEYISH_VALUE.search(value):
        return False
    # x-*-session-id is an identifier, not a credential; any other key-like name is dropped
    return not KEYISH_NAME.search(name.replace("session-id", ""))


def collect_random_ids(entry: dict, ids: dict[str, str]) -> None:
    """Map each per-run identifier found in `entry` to a stable placeholder, in order of appearance."""
    def note(value):
        if isinstance(value, str) and len(value) >= 8 and value not in ids:
            ids[value] = placeholder(value, len(ids) + 1)

    def walk(node, key=None):
        if isinstance(node, dict):
            if node.get("type") in ("tool_use", "function_call", "server_tool_use") or "function" in node:
                note(node.get("id"))
            for k, v in node.items():
                if k in RANDOM_ID_KEYS and isinstance(v, str) and not v.startswith("{"):
                    note(v)
                walk(v, k)
        elif isinstance(node, list):
            for item in node:
                walk(item, key)
        elif isinstance(node, str):
            for match in SESSION_IN_TEXT.finditer(node):
                note(match.group(1))
            if key in ("user_id", "metadata") and node.startswith("{"):
                with contextlib.suppress(ValueError):
                    walk(json.loads(node))   # Claude Code's metadata.user_id is a JSON string

    for name, value in entry["headers"].items():
        if name.lower() == "traceparent":     # W3C trace context: version-traceid-spanid-flags
            for part in value.split("-")[1:3]:
                note(part)
        elif UUID.match(value) or (name.lower().endswith("-id") and HEX.match(value)):
            note(value)
    walk(entry["body"])


def placeholder(value: str, n: int) -> str:
    """A stand-in for a random `value`, of the same shape."""
    if UUID.match(value):
        return f"00000000-0000-4000-8000-{n:012d}"
    if HEX.match(value):
        return f"{n:0{len(value)}x}"
    head, sep, rest = value.partition("_")     # keep a type prefix: toolu_, call_, msg_ ...
    prefix = head + sep if sep and head.isalpha() and len(head) <= 8 else ""
    rest = value[len(prefix):]
    lead = "01Fixture" if re.fullmatch(r"01[A-Za-z0-9]{20,}", rest) else "fixture"  # toolu_01...
    return f"{prefix}{lead}{n:0{min(max(len(rest) - len(lead), 2), 24)}d}"


def replace_strings(node, scrubs: dict[str, str]):
    if isinstance(node, str):
        for old in sorted(scrubs, key=len, reverse=True):
            if old in node:
                node = node.replace(old, scrubs[old])
        return node
    if isinstance(node, dict):
        return {replace_strings(k, scrubs): replace_strings(v, scrubs) for k, v in node.items()}
    if isinstance(node, list):
        return [replace_strings(item, scrubs) for item in node]
    return node


def short_kind(fixture: dict) -> str:
    """What the call is, judged from its path, model and body: main-turn, tool-result,
    background-<what> (a side call offering no tools), count-tokens, or get-<path> for a probe."""
    path = fixture["path"].split("?")[0]
    body = fixture["body"] if isinstance(fixture["body"], dict) else None
    slug = re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-") or "root"
    if body is None:
        return f"{fixture['method'].lower()}-{slug}"
    if "count_tokens" in path or path.endswith(":countTokens"):
        return "count-tokens"
    messages = body.get("messages") or body.get("input") or body.get("contents") or []
    if not body.get("tools"):
        text = json.dumps([body.get("system"), body.get("instructions"), messages[:1], messages[-1:]]).lower()
        model = str(body.get("model", "")).lower()
        what = next((kind for word, kind in SIDE_CALLS if word in text),
                    "haiku" if "haiku" in model else "call")
        return f"background-{what}"
    # a tool result since the model last spoke (OpenClaw appends a context turn after it)
    spoke = [i for i, m in enumerate(messages)
             if isinstance(m, dict) and m.get("role") in ("assistant", "model")]
    if tool_results(messages[spoke[-1] + 1:] if spoke else messages):
        return "tool-result"
    return "main-turn"


def tool_results(body) -> list[str]:
    """Each tool result a request (or a list of messages) carries, wherever it sits, as
    JSON text: an OpenAI `tool` message, an Anthropic `tool_result` block, a Gemini
    `functionResponse` part."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            if (node.get("role") in ("tool", "function") and "content" in node
                    or node.get("type") == "tool_result" or "functionResponse" in node
                    or "function_response" in node):
                found.append(json.dumps(node))
                return
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk((body.get("messages") or body.get("contents") or []) if isinstance(body, dict) else body)
    return found
