"""The import rules of docs/architecture.md, checked on the source (every import, lazy ones included).

- bench's core (bench/*.py but the CLI) imports no bench subpackage; analysis builds on the core only;
  simulation on the core and analysis; orchestration on those; the benchmark on the core and orchestration;
  the CLI (the composition root) on all of them, servers (`hookbench serve`) and reports.
- Nothing in bench but the CLI imports servers, scenarios or reports.
- servers and scenarios import only bench's core (and themselves); never reports, never each other.
- reports import bench's core and analysis, never orchestration, simulation, the benchmark, servers or scenarios.
- aiohttp only in servers and the harness's benchmark (bench/perf); locust only in scenarios.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "servers", "scenarios", "reports")
SUBPACKAGES = ("bench.analysis", "bench.simulation", "bench.orchestration", "bench.perf")


def _module(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of every module `path` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _module(path) if path.name == "__init__.py" else _module(path).rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")
                up = up[: len(up) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)  # `from bench import claims` imports bench.claims
    return out


def _sources() -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")]
    return {_module(p): _imports(p) for p in files}


SOURCES = _sources()


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _layer(module: str) -> str:
    """Which layer of the architecture a module belongs to."""
    if module == "bench.cli":
        return "cli"
    for sub in SUBPACKAGES:
        if _within(module, (sub,)):
            return sub
    return module.split(".")[0] if not module.startswith("bench") else "bench core"


# layer -> what it may import of ours (besides itself)
ALLOWED: dict[str, tuple[str, ...]] = {
    "bench core": (),
    "bench.analysis": ("bench core",),
    "bench.simulation": ("bench core", "bench.analysis"),
    "bench.orchestration": ("bench core", "bench.analysis", "bench.simulation"),
    "bench.perf": ("bench core", "bench.orchestration"),
    "servers": ("bench core",),
    "scenarios": ("bench core",),
    "reports": ("bench core", "bench.analysis"),
    "cli": ("bench core", "bench.analysis", "bench.simulation", "bench.orchestration", "reports", "servers"),
}


def _ours(name: str) -> bool:
    return _within(name, PACKAGES) and name not in PACKAGES  # `import bench` alone names the package


def test_the_scan_sees_the_whole_tree() -> None:
    assert {"bench.modes", "bench.analysis.summary", "servers.producer.app", "reports.run_report",
            "scenarios.pollers", "bench.cli"} <= set(SOURCES)
    assert "bench.analysis.summary" in SOURCES["bench.orchestration.runner"]


@pytest.mark.parametrize("module", sorted(SOURCES))
def test_imports_follow_the_layers(module: str) -> None:
    layer = _layer(module)
    allowed = ALLOWED[layer]
    bad = sorted(name for name in SOURCES[module] if _ours(name) and name in SOURCES
                 and _layer(name) != layer and _layer(name) not in allowed)
    assert not bad, f"{module} ({layer}) imports {bad}; it may import only {allowed or 'its own layer'}"


@pytest.mark.parametrize("module", sorted(SOURCES))
def test_aiohttp_only_in_servers_and_the_benchmark_locust_only_in_scenarios(module: str) -> None:
    names = SOURCES[module]
    if any(_within(n, ("aiohttp",)) for n in names):
        assert _layer(module) in ("servers", "bench.perf"), f"{module} imports aiohttp"
    if any(_within(n, ("locust", "gevent")) for n in names):
        assert _layer(module) == "scenarios", f"{module} imports locust/gevent (it gevent-patches the process)"
