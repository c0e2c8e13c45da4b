"""Connect an agent: copyable settings for the SDKs, curl and each coding agent, filled in with
this host's address as the browser reached it, and one prompt that has an agent set itself up.

The agents' settings come from the same descriptions `costr connect` prints
(costr/config/agent_setups.py), so the page and the command never disagree. The page never
shows a key: Costr keeps only a key's hash, so the settings carry a placeholder where the key
goes, and the page names the signed-in key by its prefix so the user knows which one to paste.
"""
from __future__ import annotations

import functools

from starlette.requests import Request
from starlette.routing import Route

from costr.config.agent_setups import PLACEHOLDER_KEY, Agent, Target, load_agents
from costr.dashboard.web import render, signed_in

MODEL = "auto"


@functools.cache
def agents() -> dict[str, Agent]:
    """The shipped agent descriptions, read once: they change only with the package."""
    return load_agents()


def gateway_root(request: Request) -> str:
    """This Costr host as the browser reached it, without /v1: the host and scheme a proxy
    in front reports (X-Forwarded-Host, X-Forwarded-Proto), else the request's own Host and
    scheme; and the root path the app is served under behind a proxy that adds a prefix (not
    the dashboard's own mount path)."""
    base = request.base_url   # scheme://host/ plus the app's root path, whatever it mounts
    scheme = _first(request.headers.get("x-forwarded-proto", "")).lower()
    host = _first(request.headers.get("x-forwarded-host", ""))
    changes = {"scheme": scheme if scheme in ("http", "https") else base.scheme}
    if host and not any(c in host for c in "/\\@ "):
        changes["netloc"] = host
    return str(base.replace(**changes)).rstrip("/")


def _first(header: str) -> str:
    """The first value of a forwarded header (each proxy on the way appends its own)."""
    return header.split(",")[0].strip()


async def connect_page(request: Request):
    key = await signed_in(request)
    target = Target(gateway_root(request), PLACEHOLDER_KEY, MODEL)
    setups = [{"name": name, "title": agent.title, "text": agent.text(target)}
              for name, agent in agents().items()]
    return render(request, "connect.html", root=target.root,
                  v1_url=f"{target.root}/v1", placeholder=PLACEHOLDER_KEY, model=MODEL,
                  prefix=key.prefix, agents=setups)


ROUTES = [Route("/connect", connect_page, methods=["GET"])]
