"""The repository keeps its promises: every example scenario and notebook is exercised by some test."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def _test_sources() -> str:
    return "\n".join(p.read_text() for p in TESTS.rglob("test_*.py") if p.name != Path(__file__).name)


def test_every_scenario_file_is_run_by_a_test() -> None:
    sources = _test_sources()
    scenarios = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "scenarios").rglob("*.toml"))
    assert scenarios, "no scenarios found"
    missing = [s for s in scenarios if f'"{s}"' not in sources]
    assert not missing, f"scenario files no test runs (name them in a test that runs them): {missing}"


def test_every_notebook_is_executed_by_a_test() -> None:
    sources = _test_sources()
    notebooks = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "notebooks").rglob("*.ipynb")
                       if ".ipynb_checkpoints" not in p.parts)
    missing = [n for n in notebooks if f'"{n}"' not in sources]
    assert not missing, f"notebooks no test executes: {missing}"


def test_product_code_never_needs_shared() -> None:
    for package in ("bench", "servers", "scenarios", "reports"):
        for path in (REPO / package).rglob("*.py"):
            assert "../shared" not in path.read_text(), path


def test_no_merge_conflict_markers_are_committed() -> None:
    markers = ("<<<<<<< ", ">>>>>>> ")
    tracked = [p for top in ("bench", "servers", "scenarios", "reports", "docs", "tests", "notebooks")
               for p in (REPO / top).rglob("*") if p.is_file() and p.suffix in {".py", ".md", ".toml", ".ipynb"}]
    tracked += [REPO / "README.md", REPO / "pyproject.toml", REPO / "Makefile"]
    found = [str(p.relative_to(REPO)) for p in tracked
             if any(line.startswith(markers) for line in p.read_text(encoding="utf-8").splitlines())]
    assert not found, f"merge conflict markers left in: {found}"
