"""The receiver app from its real factory on 127.0.0.1: verification, dedup, the arrival record."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bench.protocol import H_ID, H_SIGNATURE, H_TIMESTAMP, change_event, encode_event
from bench.signing import Signer, new_secret
from servers.receiver import create_app

SECRET = new_secret()
ARRIVAL_KEYS = {"t_obs_ns", "webhook_id", "change_id", "status", "verdict", "reason"}

Request = tuple[bytes, dict[str, str]]
Answer = tuple[int, str]


def event_body(change_id: str = "ch1") -> str:
    return encode_event(change_event(change_id, 3, 1, 1, time.time_ns()))


def signed(body: str | bytes, msg_id: str = "msg_ch1", secret: str = SECRET, ts: int | None = None) -> Request:
    """A request as the dispatcher sends it: the signature covers exactly these bytes."""
    raw = body.encode() if isinstance(body, str) else body
    headers = Signer(secret).headers(msg_id, raw.decode(), int(time.time()) if ts is None else ts)
    return raw, headers


def exchange(tmp_path: Path, requests: list[Request]) -> tuple[list[Answer], list[dict[str, Any]], dict[str, Any]]:
    """POST each request to a fresh receiver; return the answers, arrivals.jsonl (read after cleanup), /health."""

    async def run() -> tuple[list[Answer], dict[str, Any]]:
        app = create_app(SECRET, records_dir=tmp_path)
        async with TestClient(TestServer(app)) as client:  # leaving closes the app and flushes its records
            answers = []
            for body, headers in requests:
                resp = await client.post("/hooks", data=body, headers=headers)
                answers.append((resp.status, await resp.text()))
            health = await (await client.get("/health")).json()
        return answers, health

    answers, health = asyncio.run(run())
    lines = (tmp_path / "arrivals.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    for row in rows:
        assert set(row) == ARRIVAL_KEYS
        assert isinstance(row["t_obs_ns"], int) and row["t_obs_ns"] > 0
    return answers, rows, health


def test_valid_delivery_accepted_then_duplicate(tmp_path: Path) -> None:
    first = signed(event_body("ch1"), "msg_ch1")
    retry = signed(event_body("ch1"), "msg_ch1", ts=int(time.time()) - 5)  # a retry: same id, its own timestamp
    other = signed(event_body("ch2"), "msg_ch2")
    answers, rows, health = exchange(tmp_path, [first, first, retry, other])
    assert [status for status, _ in answers] == [204, 204, 204, 204]
    assert [(r["webhook_id"], r["change_id"], r["status"], r["verdict"], r["reason"]) for r in rows] == [
        ("msg_ch1", "ch1", 204, "accepted", None),
        ("msg_ch1", "ch1", 204, "duplicate", None),
        ("msg_ch1", "ch1", 204, "duplicate", None),
        ("msg_ch2", "ch2", 204, "accepted", None),
    ]
    assert rows == sorted(rows, key=lambda r: r["t_obs_ns"])
    assert health["counts"] == {"accepted": 2, "duplicate": 2}


def test_bad_signatures_are_401_with_reason(tmp_path: Path) -> None:
    body, headers = signed(event_body())
    wrong_key = signed(event_body(), secret=new_secret())
    tampered = (body.replace(b'"resource_id":3', b'"resource_id":4'), headers)
    stale = signed(event_body(), ts=int(time.time()) - 400)
    garbage = (body, {**headers, H_SIGNATURE: "v1,g0hM9Ss"})
    not_utf8 = (b"\xff\xfe" + body, headers)  # cannot be what was signed; must be refused, not crash
    answers, rows, health = exchange(tmp_path, [wrong_key, tampered, stale, garbage, not_utf8])
    assert tampered[0] != body
    for (status, text), row in zip(answers, rows, strict=True):
        assert status == 401
        assert text.startswith("signature: ")
        assert (row["status"], row["verdict"], row["change_id"]) == (401, "rejected", None)
        assert row["webhook_id"] == "msg_ch1" and row["reason"] == text
    assert "No matching signature" in answers[0][1] and "No matching signature" in answers[1][1]
    assert "too old" in answers[2][1]
    assert health["counts"] == {"rejected": 5}


@pytest.mark.parametrize("missing", [H_ID, H_TIMESTAMP, H_SIGNATURE, "all"])
def test_missing_headers_are_401(tmp_path: Path, missing: str) -> None:
    body, headers = signed(event_body())
    headers = {} if missing == "all" else {k: v for k, v in headers.items() if k != missing}
    answers, rows, _ = exchange(tmp_path, [(body, headers)])
    assert answers[0][0] == 401 and "Missing required headers" in answers[0][1]
    (row,) = rows
    assert (row["status"], row["verdict"]) == (401, "rejected")
    assert row["webhook_id"] == headers.get(H_ID)


@pytest.mark.parametrize("body", [b"not json", b"", b'{"type":"resource.changed","data":{}}', b'{"data":"ch1"}',
                                  b"[1,2,3]", b'{"change_id":"ch1"}', b"null"])
def test_validly_signed_non_event_body_is_400(tmp_path: Path, body: bytes) -> None:
    answers, rows, _ = exchange(tmp_path, [signed(body, "msg_odd")])
    status, text = answers[0]
    assert status == 400 and "not a JSON change event" in text
    (row,) = rows
    assert (row["webhook_id"], row["change_id"], row["status"], row["verdict"]) == ("msg_odd", None, 400, "rejected")
    assert row["reason"] == "body is not a JSON change event"


def test_rejected_requests_do_not_poison_dedup(tmp_path: Path) -> None:
    # A forged or malformed request carrying a real id must not make the genuine delivery look like a duplicate.
    body, headers = signed(event_body("ch9"), "msg_ch9")
    forged = (body, {**headers, H_SIGNATURE: signed(body, "msg_ch9", secret=new_secret())[1][H_SIGNATURE]})
    malformed = signed(b"not json", "msg_ch9")
    answers, rows, _ = exchange(tmp_path, [forged, malformed, (body, headers)])
    assert [a[0] for a in answers] == [401, 400, 204]
    assert [r["verdict"] for r in rows] == ["rejected", "rejected", "accepted"]


def test_header_names_are_case_insensitive(tmp_path: Path) -> None:
    body, headers = signed(event_body("ch5"), "msg_ch5")
    answers, rows, _ = exchange(tmp_path, [(body, {k.upper(): v for k, v in headers.items()})])
    assert answers[0][0] == 204 and rows[0]["verdict"] == "accepted"


def test_without_records_dir_nothing_is_written(tmp_path: Path) -> None:
    async def run() -> int:
        async with TestClient(TestServer(create_app(SECRET))) as client:
            body, headers = signed(event_body())
            return (await client.post("/hooks", data=body, headers=headers)).status

    assert asyncio.run(run()) == 204
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("secret", ["", "whsec_", "whsec_a"])
def test_unusable_secret_is_value_error(secret: str) -> None:
    with pytest.raises(ValueError, match="whsec_"):
        create_app(secret)


def test_junk_secret_is_value_error() -> None:
    with pytest.raises(ValueError):
        create_app("not-a-secret!!")
