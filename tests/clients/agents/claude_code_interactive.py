"""Claude Code in interactive mode against Costr, driven through tmux as a person at the
keyboard would: `python claude_code_interactive.py` (the project's Python; the upstream wire
type from COSTR_UPSTREAM).

Configured exactly as the seed's "Temporary configuration" block (ANTHROPIC_BASE_URL,
ANTHROPIC_AUTH_TOKEN, ANTHROPIC_MODEL=auto, ANTHROPIC_CUSTOM_MODEL_OPTION=auto,
ANTHROPIC_CUSTOM_MODEL_OPTION_NAME="Costr Auto", then `claude --setting-sources local`) in a
fresh HOME, so its first-run screens (text style, security notes, trusting the folder) are
answered with the keys a new user presses. Cases:

turn        one prompt: Claude Code runs its Read tool on notes.txt and its answer appears in
            the pane (the upstream received the tool's result holding the file's secret)
model-menu  `/model` lists "Costr Auto" as the chosen model
routing     Costr's ledger (GET /v1/requests) has the session's requests routed, with tier
"""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parents[1] / "agents")]

from ledger import Cases  # noqa: E402
from recording import tool_results  # noqa: E402
from run_agents import AGENTS, FINAL, KEY, PROMPT, ToolThenAnswer, agent_env, costr_serve  # noqa: E402

from costr.testing.fake_upstream import FakeUpstream  # noqa: E402

CACHE = Path(os.environ["COSTR_CLIENTS_CACHE"])
UPSTREAM = os.environ.get("COSTR_UPSTREAM", "anthropic")
CLAUDE = CACHE / "claude-code" / "node_modules" / ".bin" / "claude"
SPEC = AGENTS["claude-code"]
# The first-run screens of a fresh HOME, and the key a new user presses on each.
SCREENS = [("Choose the text style", ["Enter"]),
           ("Press Enter to continue", ["Enter"]),
           ("Yes, I trust this folder", ["Down", "Enter"]),   # the cursor starts on "No, exit"
           ("Do you want to use this API key", ["Up", "Enter"])]
READY = ("shift+tab to cycle", "? for shortcuts")


class Pane:
    """A tmux session on its own server socket, running one command."""

    def __init__(self, command: str, cwd: Path, env: dict):
        self.socket = f"costr-claude-{secrets.token_hex(4)}"
        self.answered: list[str] = []     # the first-run screens answered, in order
        subprocess.run(["tmux", "-L", self.socket, "new-session", "-d", "-s", "claude", "-x", "160",
                        "-y", "50", "-c", str(cwd), command], env=env, check=True)
        shown = subprocess.run(["tmux", "-L", self.socket, "display-message", "-p", "-t", "claude",
                                "#{pane_pid}"], capture_output=True, text=True)
        self.pid = int(shown.stdout.strip() or 0)   # the agent's process

    def text(self) -> str:
        done = subprocess.run(["tmux", "-L", self.socket, "capture-pane", "-p", "-t", "claude",
                               "-S", "-200"], capture_output=True, text=True)
        return done.stdout

    def keys(self, *keys: str, literal: bool = False) -> None:
        for key in keys:
            subprocess.run(["tmux", "-L", self.socket, "send-keys", "-t", "claude",
                            *(["-l"] if literal else []), key], check=True)
            time.sleep(0.4)

    def wait_for(self, wanted, timeout: float, answer_screens: bool = False) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.text()
            if any(w in text for w in ([wanted] if isinstance(wanted, str) else wanted)):
                return text
            for marker, keys in SCREENS if answer_screens else []:
                if marker in text and marker not in self.answered:
                    self.answered.append(marker)
                    self.keys(*keys)
                    break
            time.sleep(0.5)
        raise TimeoutError(f"waited {timeout:.0f} s for {wanted!r}; the pane shows:\n{_last(self.text())}")

    def close(self) -> None:
        """End the tmux server, then make sure the agent it ran has ended too."""
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)
        deadline = time.monotonic() + 10
        while self.pid and _alive(self.pid):
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                break
            time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _last(text: str, lines: int = 25) -> str:
    return "\n".join([line for line in text.splitlines() if line.strip()][-lines:])


def seed_environment(base_url: str, home: Path) -> dict:
    env = agent_env(SPEC, str(CLAUDE), home)
    env.update(ANTHROPIC_BASE_URL=base_url, ANTHROPIC_AUTH_TOKEN=KEY, ANTHROPIC_MODEL="auto",
               ANTHROPIC_CUSTOM_MODEL_OPTION="auto", ANTHROPIC_CUSTOM_MODEL_OPTION_NAME="Costr Auto",
               TERM="xterm-256color")
    return env


def turn(pane: Pane, fake: FakeUpstream, script: ToolThenAnswer, secret: str) -> str:
    """The first-run screens, then one prompt; returns the case's detail, or raises."""
    pane.wait_for(READY, 90, answer_screens=True)
    screens = "; ".join(pane.answered) or "none"
    pane.keys(PROMPT, literal=True)
    pane.keys("Enter")
    pane.wait_for(FINAL, 120)
    results = [text for r in fake.requests for text in tool_results(r.body)]
    if not (script.called and any(secret in text for text in results)):
        raise RuntimeError(f"no tool result with the secret reached the upstream: {results!r:.300}"
                           f"; the pane shows:\n{_last(pane.text())}")
    return (f"first-run screens answered by keys: {screens}; ran Read on notes.txt; the secret "
            "reached the upstream; the answer is in the pane")


def model_menu(pane: Pane) -> tuple[bool, str]:
    pane.keys("/model", literal=True)
    time.sleep(1)
    pane.keys("Enter")
    menu = pane.wait_for("Select model", 30)
    pane.keys("Escape")
    chosen = [line for line in menu.splitlines() if "Costr Auto" in line]
    if not chosen:
        return False, f"no Costr Auto in /model; the pane shows:\n{_last(menu)}"
    return "\u2714" in chosen[0], f"/model shows: {' '.join(chosen[0].split())}"


def main() -> int:
    cases = Cases(f"costr-claude-tmux-{UPSTREAM}-")
    if not CLAUDE.exists():
        for case in ("turn", "model-menu", "routing"):
            cases.report(case, False, f"Claude Code is not installed at {CLAUDE}")
        return 1
    tmp = cases.folder
    home, work = tmp / "home", tmp / "work"
    home.mkdir()
    work.mkdir()
    secret = f"The launch code is PELICAN-{secrets.token_hex(4)}."
    (work / "notes.txt").write_text(secret + "\n")
    with FakeUpstream() as fake, costr_serve(tmp, UPSTREAM, fake.url) as base_url:
        fake.script = script = ToolThenAnswer(SPEC.read_tool, SPEC.read_arguments(work / "notes.txt"))
        pane = Pane(f"{CLAUDE} --setting-sources local", work, seed_environment(base_url, home))
        try:
            try:
                cases.report("turn", True, turn(pane, fake, script, secret))
            except (TimeoutError, RuntimeError) as exc:
                cases.report("turn", False, str(exc))
            try:
                cases.report("model-menu", *model_menu(pane))
            except TimeoutError as exc:
                cases.report("model-menu", False, str(exc))
        finally:
            pane.close()
        cases.routing(base_url, KEY)
    return cases.finish()


if __name__ == "__main__":
    sys.exit(main())
