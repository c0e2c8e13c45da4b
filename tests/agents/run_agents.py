"""Run real coding agents (Claude Code, Hermes Agent, OpenClaw) through Costr against the fake upstream.

    python tests/agents/run_agents.py [--agent claude-code|hermes|openclaw|all]
                                      [--upstream openai|anthropic|gemini|all]
                                      [--claude PATH] [--hermes PATH] [--openclaw PATH] [--timeout S] [--keep]
                                      [--env NAME=VALUE ...] [--quiet]
                                      [--model NAME] [--serve-model NAME[:TIER] ...]
                                      [--record DIR [--record-prefix NAME]]

Installs nothing: see tests/agents/README.md. For each agent and upstream type it starts the
fake upstream (in this process, so what it received can be inspected), `costr serve` with a
temporary providers.yaml whose one provider is that fake, and a small recording relay between
the agent and Costr (to report what the agent itself sent). The agent is configured with
`costr connect AGENT --write`, asked to read notes.txt, and the fake answers with a call to
the agent's own file-reading tool, then, once the tool's result comes back, a final text.
PASS needs: the agent exits 0, prints the final text, and the fake received the tool's result
holding notes.txt's content (so the tool really ran and the result made it back through Costr).
With --record DIR it also writes every request the agent sent, scrubbed of keys and of what
changes from run to run, as one JSON fixture per request (recording.py).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from aiohttp import ClientSession, ClientTimeout, web

from costr.testing._fake_answers import Answer, Ask, ToolCall
from costr.testing import seed_key
from costr.testing.fake_upstream import FakeUpstream, new_event_loop
from recording import (KEYISH_ENV, KEYISH_VALUE, RUN_DIR, SECRET_CODE, Record, agent_version,
                       record_requests, tool_results)

PROMPT = "Read the file notes.txt and tell me what it says"
FINAL = "COSTR-AGENT-CHECK: I read notes.txt through my file tool."
KEY = "cr-test-agents-0123456789abcdefghijklmnopqrstuv"  # seeded into each run's own database


@dataclass
class AgentSpec:
    name: str                                 # as `costr connect` names it
    executable: str
    read_tool: str                            # the agent's own file-reading tool ...
    read_arguments: Callable[[Path], dict]    # ... and its arguments, given notes.txt's path
    command: Callable[[str], list[str]]       # argv, given the executable
    default_paths: list[str]                  # where README's install steps put it
    env: dict = field(default_factory=dict)   # what keeps it offline and non-interactive
    path_dirs: list[str] = field(default_factory=list)  # put first on PATH when they exist (a runtime)


AGENTS = {
    "claude-code": AgentSpec(
        name="claude-code", executable="claude", read_tool="Read", read_arguments=lambda path: {"file_path": str(path)},
        command=lambda exe: [exe, "-p", PROMPT, "--setting-sources", "local"],
        default_paths=["/tmp/agents/node_modules/.bin/claude"],
        env={"DISABLE_TELEMETRY": "1", "DISABLE_AUTOUPDATER": "1", "DISABLE_ERROR_REPORTING": "1",
             "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_BUG_COMMAND": "1"}),
    "hermes": AgentSpec(
        name="hermes", executable="hermes", read_tool="read_file", read_arguments=lambda path: {"path": str(path)},
        command=lambda exe: [exe, "-z", PROMPT],
        default_paths=["/tmp/hermes-venv/bin/hermes"],
        env={"HERMES_ACCEPT_HOOKS": "1"}),
    # OpenClaw needs Node >= 24.16 (README: npm install node@24 into /tmp/node24)
    "openclaw": AgentSpec(
        name="openclaw", executable="openclaw", read_tool="read", read_arguments=lambda path: {"path": str(path)},
        command=lambda exe: [exe, "agent", "--local", "-m", PROMPT],
        default_paths=["/tmp/openclaw/node_modules/.bin/openclaw"],
        env={"OPENCLAW_NO_AUTO_UPDATE": "1", "OPENCLAW_DISABLE_BONJOUR": "1", "OPENCLAW_NO_RESPAWN": "1"},
        path_dirs=["/tmp/node24/node_modules/node/bin"]),
}
# The gemini-type fake is run as Gemini 3, which signs its tool calls and refuses the next step
# unless each call comes back with its thought signature.
GEMINI_MODEL = "gemini-3-flash-preview"
CHAT_PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages",
              "gemini": f"/v1beta/models/{GEMINI_MODEL}:"}


class ToolThenAnswer:
    """The fake's answers for one run: a call to `tool` the first time the agent offers it, the
    final text once that tool's result comes back (the agent's next request that ends with a
    tool result or offers the tool again: OpenClaw appends a turn of its own context after the
    result), and "ok" to anything else (an agent's side requests, such as a title or a quota
    check, so they cannot use up the scripted answers)."""

    def __init__(self, tool: str, arguments: dict):
        self.tool, self.arguments, self.called = tool, arguments, False

    def next_answer(self, ask: Ask) -> Answer:
        offers = any(t.name == self.tool for t in ask.tools)
        if self.called and (ask.last_is_tool_result or offers):
            return Answer(text=FINAL)
        if not self.called and offers:
            self.called = True
            return Answer(tool_calls=[ToolCall(self.tool, self.arguments)])
        return Answer(text="ok")


# -- processes and servers ---------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s")


@contextlib.contextmanager
def costr_serve(tmp: Path, upstream: str, fake_url: str, extra_models: dict[str, str] | None = None):
    """`costr serve` on a free port with one provider of type `upstream` pointing at the fake,
    serving fake-budget, fake-standard and fake-premium, plus `extra_models` ({id: tier})."""
    base_url = {"openai": f"{fake_url}/v1", "gemini": f"{fake_url}/v1beta"}.get(upstream, fake_url)
    upstream_name = f"upstream_name: {GEMINI_MODEL}, " if upstream == "gemini" else ""
    prices = {"budget": (0.1, 0.4), "standard": (1, 4), "premium": (5, 20)}
    served = {f"fake-{tier}": tier for tier in prices} | dict(extra_models or {})
    models = "\n".join(
        f"  - {{id: \"{name}\", provider: fake, tier: {tier}, {upstream_name}"
        f"price: {{input: {prices[tier][0]}, output: {prices[tier][1]}}}, "
        f"context_window: 262144, max_output_tokens: 32000, capabilities: [tools, vision, json_output]}}"
        for name, tier in served.items())
    (tmp / "providers.yaml").write_text(
        "tiers: [budget, standard, premium]\nbaseline: fake-premium\n"
        "routing: {scorer: heuristic, default_policy: balanced}\n"
        f"providers:\n  fake: {{type: {upstream}, base_url: \"{base_url}\"}}\nmodels:\n{models}\n")
    policies = tmp / "routing_policies"
    policies.mkdir()
    (policies / "balanced.yaml").write_text("type: thresholds\nthresholds: {standard: 0.35, premium: 0.7}\n")
    data_dir = tmp / "data"
    asyncio.run(seed_key(None, data_dir, KEY, name="agents", admin=False))
    port = free_port()
    log = open(tmp / "costr.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "costr", "serve", "--port", str(port), "--providers",
         str(tmp / "providers.yaml"), "--policies", str(policies), "--log-level", "debug",
         "--data-dir", str(data_dir)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/v1/router/health", process)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)
        log.close()


def stop(process: subprocess.Popen) -> None:
    """End a process this script started, and whatever it started in its session."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


class RecordingRelay:
    """Relays every request to Costr unchanged, streaming the answer back, and records what the
    agent sent (method, path, headers, JSON body) and the status Costr answered."""

    HOP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}

    def __init__(self, target: str):
        self.target, self.seen = target, []
        self.port = free_port()
        self.loop = new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        self.thread.start()
        asyncio_run(self.loop, self._open())
        return self

    def __exit__(self, *exc):
        asyncio_run(self.loop, self._close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    async def _open(self):
        self.session = ClientSession(auto_decompress=False, timeout=ClientTimeout(total=None))
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._relay)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def _close(self):
        await self.runner.cleanup()
        await self.session.close()

    async def _relay(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        entry = {"method": request.method, "path": request.path_qs, "body": body, "status": None,
                 "headers": {k.lower(): v for k, v in request.headers.items()
                             if k.lower() not in ("authorization", "x-api-key")}}
        self.seen.append(entry)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in self.HOP}
        async with self.session.request(request.method, self.target + request.path_qs,
                                        headers=headers, data=raw) as upstream:
            entry["status"] = upstream.status
            response = web.StreamResponse(status=upstream.status, headers={
                k: v for k, v in upstream.headers.items() if k.lower() not in self.HOP})
            await response.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
            except ConnectionError:
                entry["status"] = f"{upstream.status}, the agent closed the connection mid-answer"
            return response


def asyncio_run(loop, coroutine):
    return asyncio.run_coroutine_threadsafe(coroutine, loop).result(30)


# -- one run ----------------------------------------------------------------------------------

@dataclass
class Outcome:
    agent: str
    upstream: str
    passed: bool
    reason: str
    evidence: list[str]


def run_one(spec: AgentSpec, executable: str, upstream: str, timeout: float, keep: bool,
            extra_env: dict | None = None, record: Record | None = None, model: str = "auto",
            extra_models: dict[str, str] | None = None) -> Outcome:
    tmp = Path(tempfile.mkdtemp(prefix=f"costr-{spec.name}-{upstream}-"))
    try:
        outcome = _run_in(tmp, spec, executable, upstream, timeout, extra_env or {}, record, model,
                          extra_models or {})
    except Exception as exc:  # a harness failure is a FAIL with its reason, not a traceback
        outcome = Outcome(spec.name, upstream, False, f"harness error: {exc!r}", [])
    if keep:
        outcome.evidence.append(f"files kept in {tmp} (agent.out, costr.log, *_requests.json)")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return outcome


def _run_in(tmp: Path, spec: AgentSpec, executable: str, upstream: str, timeout: float,
            extra_env: dict, record: Record | None = None, model: str = "auto",
            extra_models: dict[str, str] | None = None) -> Outcome:
    work, home = tmp / "work", tmp / "home"
    work.mkdir()
    home.mkdir()
    code = secrets.token_hex(4)
    secret = f"The launch code is PELICAN-{code}."
    notes = work / "notes.txt"
    notes.write_text(secret + "\n")
    script = ToolThenAnswer(spec.read_tool, spec.read_arguments(notes))
    with FakeUpstream() as fake:
        fake.script = script
        with costr_serve(tmp, upstream, fake.url, extra_models) as costr, RecordingRelay(costr) as relay:
            env = {**agent_env(spec, executable, home), **extra_env}
            connect = subprocess.run(
                [sys.executable, "-m", "costr", "connect", spec.name, "--base-url", relay.url,
                 "--key", KEY, "--model", model, "--write"],
                cwd=work, env=env, capture_output=True, text=True, timeout=120)
            if connect.returncode != 0:
                return Outcome(spec.name, upstream, False, f"costr connect failed: {connect.stderr.strip()}", [])
            result = run_agent(spec.command(executable), work, env, timeout)
        received = list(fake.requests)
    evidence = describe(relay.seen, received, upstream)
    (tmp / "agent.out").write_text(result.stdout + "\n--- stderr ---\n" + result.stderr)
    (tmp / "agent_requests.json").write_text(json.dumps(relay.seen, indent=1))
    (tmp / "upstream_requests.json").write_text(json.dumps([r._asdict() for r in received], indent=1))
    verdict = judge(spec, result, received, upstream, secret, script.called)
    if record is not None:
        scrubs = {str(path): RUN_DIR for path in {tmp, tmp.resolve()}}
        # Claude Code also names a per-project directory after the working directory's path
        scrubs.update({re.sub(r"[^A-Za-z0-9]", "-", old): re.sub(r"[^A-Za-z0-9]", "-", RUN_DIR)
                       for old in list(scrubs)})
        scrubs.update({code: SECRET_CODE, KEY: "cr-REDACTED", f"127.0.0.1:{relay.port}": "127.0.0.1:8787",
                       f"localhost:{relay.port}": "localhost:8787"})
        env_shown = {name: "REDACTED" if KEYISH_ENV.search(name) or KEYISH_VALUE.search(value) else value
                     for name, value in extra_env.items()}
        meta = {"agent": spec.name, "agent_version": agent_version(executable, env, work),
                "recorded_with": {"argv": [spec.executable, *spec.command(executable)[1:]],
                                  "env": env_shown, "model": model, "upstream": upstream}}
        written = record_requests(record, meta, relay.seen, scrubs)
        evidence.append(f"recorded {len(written)} requests: {', '.join(p.name for p in written)}")
    return Outcome(spec.name, upstream, verdict is None, verdict or "all checks held", evidence)


def agent_env(spec: AgentSpec, executable: str, home: Path) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ANTHROPIC_", "OPENAI_", "CLAUDE_", "HERMES_", "OPENCLAW_", "OPENROUTER_",
                                "COSTR_"))}
    runtimes = [d for d in spec.path_dirs if os.path.isdir(d)]
    env.update(spec.env, HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
               PATH=os.pathsep.join([*runtimes, str(Path(executable).parent),
                                     str(Path(sys.executable).parent), env.get("PATH", "")]))
    return env


def run_agent(argv: list[str], cwd: Path, env: dict, timeout: float) -> subprocess.CompletedProcess:
    process = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(process)
        out, err = process.communicate()
        return subprocess.CompletedProcess(argv, -9, out, err + f"\n[timed out after {timeout:.0f}s]")
    stop(process)  # anything the agent left running in its session
    return subprocess.CompletedProcess(argv, process.returncode, out, err)


def judge(spec, result, received, upstream, secret, called) -> str | None:
    """None when the run passed, else why it did not."""
    if result.returncode != 0:
        return f"agent exited {result.returncode}: {tail(result.stderr or result.stdout)}"
    if not called:
        return (f"the agent never offered its {spec.read_tool!r} tool upstream "
                f"({len(received)} requests reached the fake)")
    if FINAL not in result.stdout:
        return f"the final text is not in the agent's output: {tail(result.stdout)}"
    chat = CHAT_PATHS[upstream]
    results = [text for r in received if r.path.split("?")[0].startswith(chat)
               for text in tool_results(r.body)]
    if not any(secret in text for text in results):
        return f"no request to the fake carried the tool result with notes.txt's content: {results!r:.300}"
    return None


def describe(seen: list[dict], received, upstream: str) -> list[str]:
    lines = [f"agent sent {len(seen)} requests to Costr:"]
    for user_agent in sorted({e["headers"].get("user-agent", "?") for e in seen}):
        paths = sorted({e["path"].split("?")[0] for e in seen if e["headers"].get("user-agent", "?") == user_agent})
        lines.append(f"  user-agent {user_agent!r} on {', '.join(paths)}")
    for e in seen:
        body = e["body"] if isinstance(e["body"], dict) else {}
        line = f"  {e['method']} {e['path']} -> {e['status']}"
        if "messages" in body:
            tools = [t.get("name") or (t.get("function") or {}).get("name") for t in body.get("tools") or []]
            line += (f"  model={body.get('model')} stream={body.get('stream')} "
                     f"messages={len(body['messages'])} max_tokens={body.get('max_tokens')} "
                     f"tools({len(tools)})={','.join(map(str, tools))[:160]}")
            extras = sorted(set(body) - {"model", "stream", "messages", "max_tokens", "tools"})
            line += f"  other keys={','.join(extras)}"
        lines.append(line)
    lines.append(f"Costr sent {len(received)} requests to the {upstream}-type fake:")
    for r in received:
        body = r.body if isinstance(r.body, dict) else {}
        last = (body.get("messages") or [{}])[-1]
        lines.append(f"  POST {r.path} model={body.get('model')} stream={body.get('stream')} "
                     f"max_tokens={body.get('max_tokens')} tools={len(body.get('tools') or [])} "
                     f"messages={len(body.get('messages') or [])} last={json.dumps(last)[:160]}")
    return lines


def tail(text: str, chars: int = 400) -> str:
    text = " ".join((text or "").split())
    return text[-chars:] if text else "(nothing)"


# -- recording (--record) ----------------------------------------------------------------------

def find_executable(name: str, given: str | None) -> str | None:
    if given:
        return given if os.access(given, os.X_OK) else None
    found = shutil.which(AGENTS[name].executable)
    return found or next((p for p in AGENTS[name].default_paths if os.access(p, os.X_OK)), None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agent", choices=[*AGENTS, "all"], default="all")
    parser.add_argument("--upstream", choices=["openai", "anthropic", "gemini", "all"], default="all")
    parser.add_argument("--claude", help="the claude executable (default: PATH, then /tmp/agents)")
    parser.add_argument("--hermes", help="the hermes executable (default: PATH, then /tmp/hermes-venv)")
    parser.add_argument("--openclaw", help="the openclaw executable (default: PATH, then /tmp/openclaw)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per agent run")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="an extra environment variable for the agent (repeatable)")
    parser.add_argument("--keep", action="store_true", help="keep each run's temporary directory")
    parser.add_argument("--quiet", action="store_true", help="print the verdicts only")
    parser.add_argument("--model", default="auto",
                        help="the model the agent is told to ask for (costr connect --model; default auto); "
                             "a name other than auto or fake-* is served too, as a premium-tier model")
    parser.add_argument("--serve-model", action="append", default=[], metavar="NAME[:TIER]",
                        help="also serve model NAME (tier budget, standard or premium; default "
                             "premium) on the fake, e.g. for a name the agent asks for by itself")
    parser.add_argument("--record", metavar="DIR", type=Path,
                        help="write every request the agent sent, scrubbed, as DIR/<prefix>-<nn>-<kind>.json")
    parser.add_argument("--record-prefix", metavar="NAME",
                        help="file name prefix for --record (default: the agent's name, plus the "
                             "upstream type when several are run)")
    args = parser.parse_args(argv)
    names = list(AGENTS) if args.agent == "all" else [args.agent]
    upstreams = ["openai", "anthropic", "gemini"] if args.upstream == "all" else [args.upstream]
    if args.record_prefix and len(names) * len(upstreams) > 1:
        parser.error("--record-prefix names the files of one run: give one --agent and one --upstream")
    extra_models = {}
    for item in args.serve_model:
        name, _, tier = item.partition(":")
        if tier not in ("", "budget", "standard", "premium"):
            parser.error(f"--serve-model {item}: the tier must be budget, standard or premium")
        extra_models[name] = tier or "premium"
    if args.model != "auto" and not args.model.startswith("fake-"):
        extra_models.setdefault(args.model, "premium")
    outcomes = []
    for name in names:
        executable = find_executable(name, {"claude-code": args.claude, "hermes": args.hermes,
                                            "openclaw": args.openclaw}[name])
        for upstream in upstreams:
            if executable is None:
                outcome = Outcome(name, upstream, False, f"{AGENTS[name].executable} not found (see tests/agents/README.md)", [])
            else:
                print(f"running {name} ({executable}) through Costr, {upstream}-type upstream ...", flush=True)
                extra = dict(item.split("=", 1) for item in args.env)
                record = None
                if args.record:
                    prefix = args.record_prefix or (name if len(upstreams) == 1 else f"{name}-{upstream}")
                    record = Record(args.record, prefix)
                outcome = run_one(AGENTS[name], executable, upstream, args.timeout, args.keep, extra, record,
                                  args.model, extra_models)
            outcomes.append(outcome)
            if not args.quiet:
                print("\n".join(outcome.evidence))
            print(f"{'PASS' if outcome.passed else 'FAIL'}: {name} x {upstream} upstream: {outcome.reason}\n",
                  flush=True)
    failed = [o for o in outcomes if not o.passed]
    print(f"{len(outcomes) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
