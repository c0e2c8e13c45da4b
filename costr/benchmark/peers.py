"""The peers `costr bench --peer` measures beside Costr, against the same fake upstream.

`litellm`: LiteLLM's proxy, when it is installed (nothing here installs it); started with a
config naming the fake's models, the bundled cost map (LITELLM_LOCAL_MODEL_COST_MAP) and its
telemetry off, so it reaches nothing outside this machine, and its log at ERROR (no line per
request, as Costr logs none). `relay`: costr/benchmark/bare_relay.py, the bare Starlette +
uvicorn + aiohttp stack Costr is built on."""
from __future__ import annotations

import contextlib
import secrets
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from costr.benchmark.processes import Child, free_port
from costr.benchmark.servers import child_environment
from costr.testing.fake_upstream import DEFAULT_MODELS, PROVIDER_TYPE

PEERS = ("litellm", "relay")
PEER_PATHS = {"litellm": ("miss", "stream"), "relay": ("unlimited", "stream")}
PEER_SHARE = {"litellm": 1 / 5, "relay": 1.0}   # of --requests: LiteLLM takes ~20 ms of CPU each
LITELLM_MODEL = DEFAULT_MODELS[1]


@dataclass
class RunningPeer:
    name: str
    url: str
    child: Child
    key: str = "not-needed"
    model: str = "auto"


def find_litellm(given: str | None) -> tuple[str | None, str]:
    """The `litellm` executable to run, or None and why not: the path given, else the one
    next to this Python, else the first on PATH."""
    if given:
        found = Path(given)
        return (str(found), "") if found.is_file() else (None, f"no LiteLLM at {given}")
    beside = Path(sys.executable).parent / "litellm"
    if beside.is_file():
        return str(beside), ""
    on_path = shutil.which("litellm")
    if on_path:
        return on_path, ""
    return None, "LiteLLM is not installed (no litellm executable beside this Python or on PATH)"


def litellm_config(fake_url: str, master_key: str) -> str:
    """The proxy's config.yaml: each fake model reached through LiteLLM's provider for the
    fake's own wire format, and a master key (it refuses to start without one), which the
    benchmark's requests send, as Costr's send a key."""
    lines = ["general_settings:", f"  master_key: {master_key}", "model_list:"]
    for model in DEFAULT_MODELS:
        lines += [f"  - model_name: {model}", "    litellm_params:",
                  f"      model: {PROVIDER_TYPE}/{model}", f"      api_base: {fake_url}/v1",
                  "      api_key: not-needed"]
    return "\n".join(lines) + "\n"


def start_litellm(stack: contextlib.ExitStack, tmp: Path, fake_url: str,
                  executable: str) -> RunningPeer:
    config, master_key = tmp / "litellm.yaml", f"sk-{secrets.token_hex(32)}"
    config.write_text(litellm_config(fake_url, master_key))
    env = {**child_environment(), "LITELLM_LOCAL_MODEL_COST_MAP": "True",
           "LITELLM_TELEMETRY_DISABLED": "true", "LITELLM_LOG": "ERROR",
           "NO_PROXY": "127.0.0.1,localhost"}
    port = free_port()
    child = stack.enter_context(Child("LiteLLM's proxy", [
        executable, "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
        "--num_workers", "1"], tmp / "litellm.log", env=env))
    url = f"http://127.0.0.1:{port}"
    child.wait_ready(f"{url}/health/liveliness", timeout=120)   # it imports a great deal
    return RunningPeer("litellm", url, child, key=master_key, model=LITELLM_MODEL)


def start_relay(stack: contextlib.ExitStack, tmp: Path, fake_url: str) -> RunningPeer:
    port = free_port()
    child = stack.enter_context(Child("the bare relay", [
        sys.executable, "-m", "costr.benchmark.bare_relay", "--port", str(port),
        "--upstream", fake_url], tmp / "relay.log", env=child_environment()))
    child.wait_listening(port)
    return RunningPeer("relay", f"http://127.0.0.1:{port}", child)
