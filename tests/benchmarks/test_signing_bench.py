"""Micro-benchmarks of the three signing schemes (`make bench`): sign and verify one change event.

In `make test` they run once each (--benchmark-disable) so they cannot rot. One secret each: with a
rotation, signing (standard, stripe) and verification (all three) grow linearly with the secrets held.
"""

from __future__ import annotations

import json
import time

import pytest

from bench.protocol import EVENT_TYPE, change_event
from bench.signing import SCHEMES, make_scheme, new_secret_for

NOW = int(time.time())
MSG_ID = "msg_ch123"
# The event as a producer would send it, with the top-level "id" Stripe deduplicates on.
BODY = json.dumps({"id": MSG_ID, "type": EVENT_TYPE, "data": change_event("ch123", 7, 123, 4, time.time_ns())},
                  separators=(",", ":")).encode()


@pytest.mark.parametrize("name", SCHEMES)
def test_sign(benchmark, name: str) -> None:  # type: ignore[no-untyped-def]
    scheme = make_scheme(name, [new_secret_for(name)])
    headers = benchmark(scheme.sign, MSG_ID, BODY, NOW)
    assert scheme.verify(BODY, headers, now=NOW) == MSG_ID


@pytest.mark.parametrize("name", SCHEMES)
def test_verify(benchmark, name: str) -> None:  # type: ignore[no-untyped-def]
    scheme = make_scheme(name, [new_secret_for(name)])
    headers = scheme.sign(MSG_ID, BODY, NOW)
    assert benchmark(scheme.verify, BODY, headers, now=NOW) == MSG_ID
