"""Identical signed copies of one delivery in flight at the same time: exactly one is processed, for each scheme.

A sender's retry racing its own first attempt, or a replay of a captured delivery arriving while the original is
still being processed, must not be processed twice. The receiver remembers a message id before its first await
in processing (servers/receiver/app.py), so the check and the insert cannot interleave with another copy. These
tests make the overlap certain rather than likely: the first copy is held inside processing by a gate the test
opens only after every other copy has been answered.
"""

from __future__ import annotations

import asyncio
import types
from pathlib import Path
from typing import Any

import pytest
from support import wait_until

import servers.receiver.app as receiver_app
from bench.protocol import SCHEMES, change_event, encode_event
from bench.signing import make_scheme, new_secret_for
from servers.receiver import create_app
from servers.receiver.app import RECEIVER
from servers.receiver.config import setup_from_dict

PROCESSING_S = 0.25  # the fault model's processing time: the await the gate replaces (never actually slept)
COPIES = 8


class _GatedAsyncio(types.SimpleNamespace):
    """The receiver module's `asyncio`, whose sleep of exactly PROCESSING_S waits for `gate` instead."""

    def __init__(self, gate: asyncio.Event) -> None:
        super().__init__()
        self._gate = gate

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    async def sleep(self, delay: float, result: Any = None) -> Any:
        if delay == PROCESSING_S:
            await self._gate.wait()
            return result
        return await asyncio.sleep(delay, result)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_identical_copies_in_flight_together_are_processed_once(scheme: str, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    secret = new_secret_for(scheme)
    setup = setup_from_dict({"receiver": {}, "faults": {"receiver_processing": f"{int(PROCESSING_S * 1000)}ms"},
                             "endpoints": [{"name": "webhook", "scheme": scheme, "secrets": [secret]}]}, "test")
    body = encode_event(change_event("ch1", 3, 1, 1, 1_700_000_000_000_000_000)).encode()

    async def run() -> tuple[list[int], list[int], dict[str, int]]:
        gate = asyncio.Event()
        monkeypatch.setattr(receiver_app, "asyncio", _GatedAsyncio(gate))
        client = TestClient(TestServer(create_app(setup, records_dir=tmp_path)))
        await client.start_server()
        try:
            rx = client.app[RECEIVER]
            # one signature, sent COPIES times: byte-identical requests, as a retry or a replay is
            headers = {"content-type": "application/json",
                       **make_scheme(scheme, [secret]).sign("msg_ch1", body, int(rx.wall_clock()))}

            async def post() -> tuple[int, bool]:
                async with client.post("/hooks", data=body, headers=headers) as resp:
                    await resp.read()
                    return resp.status, gate.is_set()  # whether the first copy was still held when this answered

            tasks = [asyncio.create_task(post()) for _ in range(COPIES)]
            # all but one are answered while the gate is shut: they cannot wait for the held copy, nor pass it
            await wait_until(lambda: sum(t.done() for t in tasks) == COPIES - 1, f"{COPIES - 1} copies answered")
            held = rx.faults.in_processing
            gate.set()
            answers = await asyncio.gather(*tasks)
            early = sorted(status for status, after_gate in answers if not after_gate)
            late = sorted(status for status, after_gate in answers if after_gate)
            return early, late, {"in_processing_while_held": held, **dict(rx.audit.counts)}
        finally:
            await client.close()

    early, late, counts = asyncio.run(run())
    assert counts["in_processing_while_held"] == 1, counts  # exactly one copy got into processing
    assert early == [200] * (COPIES - 1), early  # the duplicate answer, given while the first copy was in flight
    assert late == [204], late  # the one processed copy, answered after the gate opened
    assert counts.get("accepted") == 1 and counts.get("duplicate") == COPIES - 1, counts
