"""Run metadata (pyperf-style): what is needed to compare runs and to reproduce one from its manifest."""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.errors import FormatVersionError, RunDirError

__all__ = ["MANIFEST_FORMAT_VERSION", "collect_metadata", "write_json", "read_json"]

MANIFEST_FORMAT_VERSION = 1
_PACKAGES = ("hookbench", "aiohttp", "locust", "pandas", "numpy", "pyarrow", "matplotlib", "standardwebhooks",
             "psutil")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_commit(repo: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def collect_metadata(repo: Path) -> dict[str, Any]:
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "versions": versions,
        "machine": {"cpu_count": os.cpu_count(), "cpu_model": _cpu_model(), "platform": platform.platform(),
                    "hostname": platform.node()},
        "git_commit": _git_commit(repo),
        "command_line": list(sys.argv),
        "started_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    text = json.dumps(_finite(data), indent=2, sort_keys=False, default=_default, allow_nan=False)
    tmp.write_text(text + "\n", encoding="utf-8")
    tmp.replace(path)  # atomic: a reader never sees half a file


def _finite(o: Any) -> Any:
    """NaN and infinities become null: strict JSON readers (browsers, jq) reject them."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


def _default(o: object) -> object:
    if hasattr(o, "item"):  # numpy scalars
        return o.item()  # type: ignore[attr-defined]
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path: Path, known_version: int) -> dict[str, Any]:
    """Read a versioned result file; an unknown format_version is a clear error."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunDirError(f"{path}: not found; is {path.parent} a hookbench run directory?") from None
    except json.JSONDecodeError as e:
        raise RunDirError(f"{path}: not valid JSON ({e})") from None
    version = data.get("format_version") if isinstance(data, dict) else None
    if version != known_version:
        raise FormatVersionError(f"{path}: format_version {version!r} is not supported "
                                 f"(this hookbench reads version {known_version})")
    return data
