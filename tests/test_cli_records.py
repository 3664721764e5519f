"""The terminal's records check (`hookbench load`, `hookbench run --master`): every worker the summary names is
printed with its reason, a surplus as well as a deficit."""

from __future__ import annotations

import pytest

from bench.cli import _print_records
from bench.results import Summary


def test_every_named_worker_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    s = Summary.from_dict({"records": {
        "rows": 12, "files": 2, "per_worker": {"0": 7, "1": 5}, "locust_requests": 10, "complete": False, "lost": [],
        "surplus": [{"worker": 1, "extra": 2, "reason": "worker 1 (pid 12 on b) sent 5 rows, Locust counted 3 of "
                                                        "its requests: 2 extra"}],
        "unacknowledged": [{"worker": 0, "final_totals": False, "reason": "worker 0 (pid 11 on a) did not answer "
                                                                          "the master's end-of-run request"}]}})
    _print_records(s)
    out = capsys.readouterr().out
    assert "records: 12 requests in 2 file(s) (worker 0: 7, worker 1: 5); Locust counted 10" in out
    assert "RECORDS NOT COMPLETE" in out
    assert "  surplus: worker 1 (pid 12 on b) sent 5 rows, Locust counted 3 of its requests: 2 extra" in out
    assert "  end of run: worker 0 (pid 11 on a) did not answer" in out


def test_a_complete_check_prints_no_warning(capsys: pytest.CaptureFixture[str]) -> None:
    _print_records(Summary.from_dict({"records": {"rows": 4, "files": 1, "per_worker": {"0": 4}, "locust_requests": 4,
                                                  "complete": True, "lost": [], "surplus": [], "unacknowledged": []}}))
    out = capsys.readouterr().out
    assert "Locust counted 4" in out and "warning" not in out and "surplus:" not in out
