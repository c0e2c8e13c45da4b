"""The fault drill's deployment: three `costr serve` instances on one PostgreSQL and one Redis,
behind nginx running deploy/nginx.conf, with two fake upstreams serving one budget model each.

Every part is a child process of the drill on 127.0.0.1, so each can be killed, hung, stopped
and restarted: the fake upstreams (`python -m costr.testing.fake_upstream`, whose faults are
set through `POST /_fault`), the instances, nginx, and PostgreSQL itself (by default a cluster
of its own in a temporary folder, made with the installed server's initdb, so restarting it
disturbs nobody else; `--postgres-url` drills an existing server instead).
"""
from __future__ import annotations

import asyncio
import glob
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from costr.testing.fake_upstream import PROVIDER_TYPE

REPO = Path(__file__).resolve().parents[2]
NGINX_CONF = REPO / "deploy" / "nginx.conf"
PROVIDERS = """\
# Written by the fault drill: two upstreams, one budget model each, at the same price, so
# up-a (listed first) takes the traffic and up-b is its fallback.
tiers: [budget]
baseline: drill-b
routing:
  scorer: heuristic
  default_policy: balanced
  max_attempts: 2
  deadline_seconds: {deadline}
  breaker: {{failures: 3, failure_rate: 0.5, min_calls: 10, window_seconds: 10,
            cooldown_seconds: {cooldown}}}
providers:
  up-a: {{type: {wire}, base_url: "{a}/v1", timeouts: {{connect: 1, read: 30}}}}
  up-b: {{type: {wire}, base_url: "{b}/v1", timeouts: {{connect: 1, read: 30}}}}
models:
  - {{id: drill-a, provider: up-a, tier: budget, price: {{input: 1.0, output: 4.0}},
     context_window: 128000, max_output_tokens: 4096}}
  - {{id: drill-b, provider: up-b, tier: budget, price: {{input: 1.0, output: 4.0}},
     context_window: 128000, max_output_tokens: 4096}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float | None:
    """A process's resident memory in MB, from /proc; None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@dataclass
class Child:
    """A child process with its output in a log file; started again with the same command."""
    name: str
    command: list[str]
    log: Path
    env: dict | None = None
    proc: subprocess.Popen | None = None

    def start(self) -> "Child":
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=self.env)
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.running:
            self.proc.send_signal(sig)

    def stop(self, timeout: float = 15) -> int | None:
        if self.proc is None:
            return None
        if self.running:
            self.proc.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


async def wait_http(url: str, timeout: float, ok=(200,)) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
                    if response.status in ok:
                        return
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer within {timeout:g} s")
            await asyncio.sleep(0.1)


class PrivatePostgres:
    """A PostgreSQL cluster of the drill's own, in `folder`, on a free port (trust auth)."""

    def __init__(self, folder: Path):
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            raise RuntimeError("no PostgreSQL server is installed (/usr/lib/postgresql/*/bin); "
                               "install postgresql, or give --postgres-url")
        self.bin = Path(found[-1]).parent
        self.folder, self.port = folder, free_port()
        self.data = folder / "data"
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self.as_postgres, *args], capture_output=True, text=True,
                              timeout=120)
        if done.returncode:
            raise RuntimeError(f"{Path(args[0]).name} failed: {done.stderr.strip()[-500:]}")

    def start(self) -> str:
        self.folder.mkdir()
        if self.as_postgres:
            shutil.chown(self.folder, "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                  "--auth=trust", "--no-sync")
        self.up()
        return self.url

    def up(self) -> None:
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder} "
                   "-c fsync=off -c max_connections=200")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l",
                  str(self.folder / "server.log"), "-o", options, "-w", "start")

    def down(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def close(self) -> None:
        try:
            self.down()
        except RuntimeError:
            pass


class SharedPostgres:
    """An existing server: a fresh database costr_drill_<random> on it, dropped at the end;
    `restart` is the operator's command that restarts it (pg_ctlcluster VERSION main restart)."""

    def __init__(self, admin_url: str, restart: str):
        self.admin_url, self.restart_command = admin_url, restart
        self.name = f"costr_drill_{secrets.token_hex(4)}"
        base, _, _ = admin_url.rpartition("/")
        self.url = f"{base}/{self.name}"

    async def _admin(self, sql: str) -> None:
        import asyncpg
        conn = await asyncpg.connect(self.admin_url, timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def start(self) -> str:
        asyncio.run(self._admin(f"CREATE DATABASE {self.name}"))
        return self.url

    def down(self) -> None:
        subprocess.run(self.restart_command.replace("restart", "stop").split(), check=True,
                       capture_output=True, timeout=60)

    def up(self) -> None:
        subprocess.run(self.restart_command.replace("restart", "start").split(), check=True,
                       capture_output=True, timeout=60)

    def close(self) -> None:
        asyncio.run(self._admin(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)"))


@dataclass
class Cluster:
    """Everything the drill runs, started by `start()` and stopped by `close()`."""
    folder: Path
    deadline: float = 3.0
    cooldown: float = 8.0
    drain: float = 5.0
    redis_url: str = "redis://127.0.0.1:6379"
    redis_db: int = 12
    postgres_url: str | None = None
    postgres_restart: str | None = None
    fakes: dict[str, Child] = field(default_factory=dict)
    fake_urls: dict[str, str] = field(default_factory=dict)
    instances: list[Child] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)
    nginx: Child | None = None
    url: str = ""

    def start(self) -> "Cluster":
        self.folder.chmod(0o755)   # PostgreSQL and nginx's workers run as other users
        self.postgres = (SharedPostgres(self.postgres_url, self.postgres_restart)
                         if self.postgres_url else PrivatePostgres(self.folder / "postgres"))
        self.database = self.postgres.start()
        asyncio.run(self._flush_redis())
        for name in ("up-a", "up-b"):
            port = free_port()
            self.fake_urls[name] = f"http://127.0.0.1:{port}"
            self.fakes[name] = Child(name, [sys.executable, "-m", "costr.testing.fake_upstream",
                                            "--port", str(port)], self.folder / f"{name}.log")
            self.fakes[name].start()
        providers = self.folder / "providers.yaml"
        providers.write_text(PROVIDERS.format(a=self.fake_urls["up-a"], b=self.fake_urls["up-b"],
                                              wire=PROVIDER_TYPE, deadline=self.deadline,
                                              cooldown=self.cooldown))
        policies = self.folder / "routing_policies"
        policies.mkdir()
        (policies / "balanced.yaml").write_text("type: thresholds\nthresholds: {}\n")
        self.key = self._create_key("drill", "--credits", "1000")
        self.admin_key = self._create_key("drill-admin", "--admin")
        self.ports = [free_port() for _ in range(3)]
        self.instances = [self._instance(i, port, providers, policies)
                          for i, port in enumerate(self.ports)]
        for instance in self.instances:
            instance.start()
        self.nginx = self._nginx()
        self.nginx.start()
        asyncio.run(self._wait_ready())
        return self

    async def _flush_redis(self) -> None:
        """The limits' (and shared breakers') Redis database starts empty: a breaker left open
        by an earlier drill would skew this one."""
        import redis.asyncio as redis
        client = redis.from_url(f"{self.redis_url}/{self.redis_db}", socket_connect_timeout=3)
        try:
            await client.flushdb()
        finally:
            await client.aclose()

    def _create_key(self, name: str, *options: str) -> str:
        done = subprocess.run([sys.executable, "-m", "costr", "keys", "create", "--name", name,
                               *options, "--database", self.database],
                              capture_output=True, text=True, timeout=60)
        if done.returncode:
            raise RuntimeError(f"costr keys create failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def _instance(self, i: int, port: int, providers: Path, policies: Path) -> Child:
        cache = f"{self.redis_url}/{self.redis_db - 1}?prefix=drill-{secrets.token_hex(3)}:"
        command = [sys.executable, "-m", "costr", "serve", "--host", "127.0.0.1",
                   "--port", str(port), "--providers", str(providers), "--policies",
                   str(policies), "--database", self.database, "--limits",
                   f"{self.redis_url}/{self.redis_db}", "--cache", cache, "--no-dashboard",
                   "--drain-seconds", f"{self.drain:g}", "--log-level", "warning"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("COSTR_")}
        return Child(f"costr-{i + 1}", command, self.folder / f"costr-{i + 1}.log", env)

    def _nginx(self) -> Child:
        """nginx running deploy/nginx.conf as it is, with the drill's costr.d/ beside it."""
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        conf = self.folder / "nginx"
        (conf / "costr.d").mkdir(parents=True)
        (conf / "temp").mkdir()
        shutil.copyfile(NGINX_CONF, conf / "nginx.conf")
        (conf / "costr.d" / "upstreams.conf").write_text("".join(
            f"server 127.0.0.1:{port} max_fails=3 fail_timeout=5s;\n" for port in self.ports))
        port = free_port()
        (conf / "costr.d" / "listen.conf").write_text(f"listen 127.0.0.1:{port};\n")
        self.url = f"http://127.0.0.1:{port}"
        for folder in (conf, conf / "temp"):   # nginx's workers are not root
            folder.chmod(0o755)
        error_log = conf / "error.log"
        main = f"daemon off; pid {conf / 'nginx.pid'}; error_log {error_log} warn;"
        return Child("nginx", [binary, "-p", f"{conf}/", "-c", str(conf / "nginx.conf"),
                               "-e", str(error_log), "-g", main],
                     self.folder / "nginx-access.log")

    async def _wait_ready(self) -> None:
        for name, fake in self.fake_urls.items():
            await wait_http(f"{fake}/_fault", 20)
        for port in self.ports:
            await wait_http(f"http://127.0.0.1:{port}/v1/router/health", 60)
        await wait_http(f"{self.url}/v1/router/health", 20)

    # -- what the scenarios do -----------------------------------------------------------------

    async def set_fault(self, upstream: str, mode: str, **options) -> dict:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{self.fake_urls[upstream]}/_fault",
                                 json={"mode": mode, **options}) as response:
                return await response.json()

    def kill_upstream(self, name: str) -> None:
        fake = self.fakes[name]
        fake.signal(signal.SIGKILL)
        fake.proc.wait(10)

    async def restart_upstream(self, name: str) -> None:
        self.fakes[name].start()
        await wait_http(f"{self.fake_urls[name]}/_fault", 20)

    async def restart_instance(self, i: int) -> None:
        self.instances[i].start()
        await wait_http(f"http://127.0.0.1:{self.ports[i]}/v1/router/health", 60)

    async def instance_health(self) -> list[dict]:
        """Each running instance's admin health detail, asked directly (not through nginx)."""
        details = []
        async with aiohttp.ClientSession() as http:
            for port, instance in zip(self.ports, self.instances):
                if instance.running:
                    async with http.get(f"http://127.0.0.1:{port}/v1/router/health", headers={
                            "authorization": f"Bearer {self.admin_key}"}) as r:
                        details.append(await r.json(content_type=None))
        return details

    async def health_detail(self) -> dict:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{self.url}/v1/router/health",
                                headers={"authorization": f"Bearer {self.admin_key}"}) as r:
                return await r.json(content_type=None)

    def close(self) -> None:
        for child in [self.nginx, *self.instances, *self.fakes.values()]:
            if child is not None:
                child.stop()
        if hasattr(self, "postgres"):
            self.postgres.close()
