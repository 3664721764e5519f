"""Counter snapshots ("marks") written to marks.jsonl the moment they are taken: each is fsynced, so the
orchestrator's window marks survive a `kill -9` of the producer (the crash scenarios do exactly that)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["MarkLog"]


class MarkLog:
    """Append-only, durable per line. `path` None: keep the snapshots in memory only (tests, `hookbench serve`)."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self.snapshots: list[dict[str, Any]] = []
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, snap: dict[str, Any]) -> None:
        self.snapshots.append(snap)
        if self.path is None:
            return
        # One short open-append-fsync per mark: there are a handful per run, and each must be on disk at once.
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(snap, separators=(",", ":")) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
