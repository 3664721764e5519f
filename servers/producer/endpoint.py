"""One subscription's delivery state (signing scheme, TLS, Basic Auth, breaker, concurrency, counters) and one attempt.

`Endpoint.post` makes a single signed POST and fills in an `Attempt`; what happens next (retry, outbox
row update, disabling) is the dispatcher's business.
"""

from __future__ import annotations

import asyncio
import email.utils
import ssl
import time
from dataclasses import dataclass
from datetime import timezone
from typing import TYPE_CHECKING

import aiohttp

from bench.delivery import FailureRun
from bench.modes import THIN, find_kind
from bench.protocol import ChangeEvent, encode_event, encode_thin_event, msg_id_for
from bench.signing import make_scheme

from .breaker import Breaker
from .ledger import ModeCost, header_bytes

if TYPE_CHECKING:
    from .store import Subscription

__all__ = ["Attempt", "Job", "Endpoint", "parse_retry_after", "basic_authorization"]

RETRY_AFTER_STATUSES = (429, 503)


@dataclass
class Job:
    """An in-memory delivery (retry and fire_and_forget policies): the change and its next attempt number."""

    change: ChangeEvent
    number: int


@dataclass
class Attempt:
    """One POST and what came of it."""

    change: ChangeEvent
    number: int  # 1-based, per (subscription, change)
    t_send: int = 0
    t_done: int = 0
    status: int = 0  # 0: no HTTP answer (error says why)
    error: str | None = None
    bytes_out: int = 0
    bytes_in: int = 0
    retry_after: float | None = None  # the wait a 429/503 asked for (Retry-After), clamped to [0, retry_after_cap]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def basic_authorization(user: str, password: str) -> str:
    """The Authorization header value of HTTP Basic Auth (ValueError for a ':' in the user)."""
    encode = getattr(aiohttp, "encode_basic_auth", None)  # aiohttp >= 3.14; BasicAuth is deprecated there
    if encode is not None:
        return encode(user, password)
    return aiohttp.BasicAuth(user, password).encode()


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds a Retry-After header asks for: delta-seconds or an HTTP-date; None if absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(int(text)) if len(text) <= 15 else 1e15  # longer than 30 million years: capped anyway
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp() - now


class Endpoint:
    """Everything the dispatcher keeps per subscription. ValueError/OSError/ssl.SSLError for an unusable one."""

    def __init__(self, sub: Subscription) -> None:
        self.sub = sub
        self.cfg = cfg = sub.delivery
        self.scheme = make_scheme(sub.scheme, list(sub.secrets))
        # Verification is never off: an https URL is checked against the system CAs or the given ca_file.
        self.ssl: ssl.SSLContext | bool = ssl.create_default_context(cafile=sub.ca_file) if sub.ca_file else True
        self.authorization = basic_authorization(*sub.basic_auth) if sub.basic_auth is not None else None
        # the body its kind sends: a thin subscription's carries ids only (its consumer fetches the change)
        self.encode = encode_thin_event if find_kind(sub.name) is THIN else encode_event
        self.breaker = Breaker(cfg.breaker_window, cfg.breaker_failure_ratio, cfg.breaker_open, cfg.breaker)
        self.slots = asyncio.Semaphore(cfg.concurrency)
        self.closed = False
        self.close_reason = ""
        self.attempts = self.ok = self.failed = 0
        # the current run of failed attempts (any change): its length and when its first attempt was sent (s);
        # the disable rules (delivery keys disable_after_failures, disable_after; bench.delivery) read it
        self.failures = FailureRun()
        self.disable_why = ""  # why the dispatcher disabled it ("410 Gone", "8 consecutive failed attempts")
        self.in_flight = self.max_in_flight = 0
        # retry / fire_and_forget: jobs queued, waiting on a timer, or held by a worker
        self.queue: asyncio.Queue[Job | None] = asyncio.Queue()
        self.timers: dict[asyncio.TimerHandle, Job] = {}
        self.jobs = 0  # submitted and not yet finished (ok, gave up, disabled, abandoned)
        # outbox: woken on new rows, finished attempts and closing; seqs being sent
        self.wake = asyncio.Event()
        self.sending: set[int] = set()

    @property
    def outbox(self) -> bool:
        return self.cfg.policy == "outbox"

    async def post(self, session: aiohttp.ClientSession, attempt: Attempt, cost: ModeCost) -> None:
        """Sign and POST the change once (no redirects, per-attempt timeout); fill in `attempt` and `cost`."""
        cpu0 = time.thread_time_ns()
        payload = self.encode(attempt.change).encode()
        headers = self.scheme.sign(msg_id_for(attempt.change["change_id"]), payload, int(time.time()))
        headers["content-type"] = "application/json"
        if self.authorization is not None:
            headers["authorization"] = self.authorization
        cost.cpu_ns += time.thread_time_ns() - cpu0
        cost.cpu_timed += 1

        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        attempt.t_send = time.time_ns()
        try:
            # No redirects: a 3xx is the endpoint's answer (a failure), never a hop to an unchecked URL.
            async with session.post(self.sub.url, data=payload, headers=headers, allow_redirects=False,
                                    ssl=self.ssl,
                                    timeout=aiohttp.ClientTimeout(total=self.cfg.timeout)) as resp:
                rbody = await resp.read()
                attempt.status = resp.status
                attempt.bytes_out = header_bytes(f"POST {resp.request_info.url.raw_path_qs} HTTP/1.1",
                                                 resp.request_info.headers) + len(payload)
                attempt.bytes_in = header_bytes(f"HTTP/1.1 {resp.status} {resp.reason}", resp.headers) + len(rbody)
                if resp.status in RETRY_AFTER_STATUSES:
                    asked = parse_retry_after(resp.headers.get("Retry-After"), time.time())
                    if asked is not None:
                        attempt.retry_after = min(max(asked, 0.0), self.cfg.retry_after_cap)
        except asyncio.TimeoutError:
            attempt.error = "timeout"
        except (aiohttp.ClientError, OSError) as e:
            attempt.error = f"{e.__class__.__name__}: {e}"[:200]
        finally:
            self.in_flight -= 1
            attempt.t_done = time.time_ns()
        cost.requests += 1
        cost.bytes_out += attempt.bytes_out or len(payload)
        cost.bytes_in += attempt.bytes_in
