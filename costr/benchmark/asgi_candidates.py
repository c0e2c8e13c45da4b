"""The ways `python -m costr.benchmark.asgi_servers` runs the same Costr app: uvicorn exactly as
`costr serve` runs it (uvloop and httptools, through its DrainingServer), and granian with one
worker and the uvloop loop under several of its runtime options, given the app by
costr/testing/asgi_factory.py. Each gets the same providers file, policies and data directory."""
from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path

from costr.benchmark.run import Child, free_port
from costr.benchmark.servers import child_environment
from costr.testing.asgi_factory import DATA_DIR_ENV, POLICIES_ENV, PROVIDERS_ENV
from costr.testing.fake_upstream import write_gateway_config

GRANIAN_COMMON = ("--interface", "asgi", "--loop", "uvloop", "--workers", "1")
FACTORY = "costr.testing.asgi_factory:app_from_environment"


@dataclass(frozen=True)
class Server:
    """One way to run the app. `granian`: the granian options beyond GRANIAN_COMMON, the
    address and the factory; None means `costr serve`."""
    name: str
    granian: tuple[str, ...] | None = None

    def argv(self, port: int, providers: Path, policies: Path, data_dir: Path) -> list[str]:
        if self.granian is None:
            return [sys.executable, "-m", "costr", "serve", "--host", "127.0.0.1", "--port",
                    str(port), "--providers", str(providers), "--policies", str(policies),
                    "--data-dir", str(data_dir)]
        return [sys.executable, "-m", "granian", *GRANIAN_COMMON, "--host", "127.0.0.1",
                "--port", str(port), *self.granian, "--factory", FACTORY]

    def environment(self, providers: Path, policies: Path, data_dir: Path) -> dict[str, str]:
        env = child_environment()   # no COSTR_* from the shell changes what is measured
        if self.granian is not None:
            env.update({PROVIDERS_ENV: str(providers), POLICIES_ENV: str(policies),
                        DATA_DIR_ENV: str(data_dir)})
        return env

    @property
    def command(self) -> str:
        if self.granian is None:
            return "costr serve (uvicorn with uvloop and httptools)"
        return " ".join(["granian", *GRANIAN_COMMON, *self.granian])


SERVERS = [
    Server("uvicorn"),
    Server("granian-st", ("--runtime-mode", "st", "--runtime-threads", "1")),
    Server("granian-st-rust", ("--runtime-mode", "st", "--runtime-threads", "1",
                               "--task-impl", "rust")),
    Server("granian-st-2", ("--runtime-mode", "st", "--runtime-threads", "2")),
    Server("granian-mt-2", ("--runtime-mode", "mt", "--runtime-threads", "2")),
    Server("granian-mt-2-rust", ("--runtime-mode", "mt", "--runtime-threads", "2",
                                 "--task-impl", "rust")),
]
BY_SERVER = {server.name: server for server in SERVERS}


def granian_installed() -> bool:
    try:
        import granian  # noqa: F401 - only whether it imports
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def running(server: Server, tmp: Path, upstream_url: str, data_dir: Path):
    """`server` serving the app in front of `upstream_url` on a fresh port, stopped on the way
    out; yields (base URL, Child). The Child's pid is the server's own process (granian's
    worker is its child)."""
    port = free_port()
    config = tmp / f"{server.name}-{port}"
    config.mkdir()
    providers, policies = write_gateway_config(config, upstream_url)
    with Child(server.name, server.argv(port, providers, policies, data_dir),
               config / "server.log",
               env=server.environment(providers, policies, data_dir)) as child:
        url = f"http://127.0.0.1:{port}"
        child.wait_ready(f"{url}/v1/router/health")
        yield url, child
