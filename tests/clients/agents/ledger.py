"""What the agents' scripts share: the routing case, read from Costr's ledger, and their run
folder, removed once every case passed (kept, and named on stderr, when one failed)."""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]

from client import report  # noqa: E402


class Cases:
    """Reports cases as they finish and notes whether any failed."""

    def __init__(self, prefix: str):
        self.folder = Path(tempfile.mkdtemp(prefix=prefix))
        self.failed = False

    def report(self, case: str, ok: bool, detail: str = "") -> None:
        self.failed |= not ok
        report(case, ok, detail)

    def routing(self, base_url: str, key: str) -> None:
        """routing: every request Costr answered is in its ledger with a routed model and tier."""
        request = urllib.request.Request(f"{base_url}/v1/requests?limit=100",
                                         headers={"Authorization": f"Bearer {key}"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            records = [r for r in json.load(answer)["data"] if r["status"] == 200]
        routed = sorted({f"{r['routed_model']} ({r['tier']})" for r in records if r["tier"]})
        self.report("routing", bool(records) and all(r["routed_model"] and r["tier"] for r in records),
                    f"{len(records)} answered requests in Costr's ledger, routed to {', '.join(routed)}")

    def finish(self) -> int:
        if self.failed:
            print(f"run files kept in {self.folder} (costr.log, the agent's HOME)", file=sys.stderr)
        else:
            remove(self.folder)
        return 0


def remove(folder: Path, attempts: int = 10) -> None:
    """Remove a run folder an agent's last writes (session files as it exits) may still be
    filling."""
    for _ in range(attempts):
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            return
        time.sleep(0.5)
