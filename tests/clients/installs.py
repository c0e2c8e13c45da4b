"""Installing the clients into a cache folder outside the repository, once per pinned set.

Each install writes a stamp of what it installed from; while the stamp matches, nothing is
reinstalled, so a second run of the matrix installs nothing. Every failure to install raises
Unavailable with the tool's last words, so the rows are skipped saying why.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from client import Unavailable

HERE = Path(__file__).resolve().parent
NODE24_SPEC = "node@24"
INSTALL_TIMEOUT = 900


def cache_dir() -> Path:
    """$COSTR_CLIENTS_CACHE, else ~/.cache/costr-clients."""
    return Path(os.environ.get("COSTR_CLIENTS_CACHE") or Path.home() / ".cache" / "costr-clients")


def npm_packages(cache: Path, manifest: Path, folder: str = "npm", node_bin: Path | None = None) -> Path:
    """`npm install` the dependencies of `manifest` (a package.json with exact versions) into
    cache/<folder>; returns that folder (its node_modules resolves the scripts copied there).
    `node_bin`: a folder put first on PATH for the install (a newer Node)."""
    target = cache / folder
    manifest = manifest.resolve()
    stamp = _digest(manifest.read_bytes() + str(node_bin).encode())
    if _stamped(target, stamp) and (target / "node_modules").is_dir():
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise Unavailable("npm is not installed (Node.js and npm are needed for the JavaScript clients)")
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(manifest, target / "package.json")
    _run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error"], target,
         env=_with_path(node_bin), what=f"npm install in {target}")
    _stamp(target, stamp)
    return target


def npm_version(folder: Path, package: str) -> str:
    """The version of `package` installed under folder/node_modules."""
    meta = folder / "node_modules" / package / "package.json"
    try:
        return json.loads(meta.read_text())["version"]
    except (OSError, ValueError, KeyError):
        raise Unavailable(f"{package} is not installed in {folder}") from None


def node24(cache: Path) -> Path:
    """A Node 24 binary from the npm registry (`npm install node@24`); returns its bin folder."""
    target = cache / "node24"
    bin_dir = target / "node_modules" / "node" / "bin"
    if not (bin_dir / "node").exists():
        npm = shutil.which("npm")
        if npm is None:
            raise Unavailable("npm is not installed")
        target.mkdir(parents=True, exist_ok=True)
        (target / "package.json").write_text('{"private": true}\n')
        _run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error", NODE24_SPEC], target,
             what="npm install node@24")
    return bin_dir


def python_env(cache: Path, requirements: Path, folder: str = "venv") -> Path:
    """A virtualenv in cache/<folder> with `requirements` (exact pins) installed; returns its
    python."""
    target = cache / folder
    python = target / "bin" / "python"
    requirements = requirements.resolve()
    stamp = _digest(requirements.read_bytes() + sys.version.encode())
    if _stamped(target, stamp) and python.exists():
        return python
    if not python.exists():
        _run([sys.executable, "-m", "venv", str(target)], cache, what="python -m venv")
    _run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r",
          str(requirements)], target, what=f"pip install -r {requirements.name}")
    _stamp(target, stamp)
    return python


def pip_version(python: Path, distribution: str) -> str:
    out = subprocess.run([str(python), "-c", "import importlib.metadata as m, sys; "
                          "print(m.version(sys.argv[1]))", distribution],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise Unavailable(f"{distribution} is not installed in {python.parent.parent}")
    return out.stdout.strip()


def _run(argv: list[str], cwd: Path, what: str, env: dict | None = None) -> None:
    try:
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=INSTALL_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise Unavailable(f"{what} did not finish within {INSTALL_TIMEOUT} s") from None
    if done.returncode != 0:
        last = " ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise Unavailable(f"{what} failed: {last[-400:]}")


def _with_path(bin_dir: Path | None) -> dict | None:
    if bin_dir is None:
        return None
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _stamped(target: Path, stamp: str) -> bool:
    try:
        return (target / ".costr-stamp").read_text().strip() == stamp
    except OSError:
        return False


def _stamp(target: Path, stamp: str) -> None:
    (target / ".costr-stamp").write_text(stamp + "\n")
