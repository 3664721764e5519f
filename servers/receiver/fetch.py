"""Thin events: the receiver fetches the change a thin delivery names from the producer (GET PATH_EVENT).

A thin endpoint's delivery is answered as any other (204 once verified and deduplicated) and fetched after,
asynchronously: providers ask receivers to acknowledge at once and do the work later (Stripe:
https://docs.stripe.com/webhooks#acknowledge-events-immediately; GitHub, within 10 s:
https://docs.github.com/en/webhooks/using-webhooks/best-practices-for-using-webhooks#respond-within-10-seconds).
The fetch carries MODE_LABEL_HEADER = the endpoint's name, so the producer charges it to that mode.

Records, as the run's analysis reads a consumer's requests: one `polls` row per fetch request (retries included)
in polls-receiver.jsonl, and one `observations` row per change fetched, at the fetch's completion, in
observations-receiver.jsonl (the change is observed when its state is in hand, not when the id arrived).

A fetch that gets no answer, a 5xx or a timeout is retried with back-off (FETCH_TRIES tries over ~6 s, long enough
for a producer restart). If every try fails, or the answer is a 4xx or not the change named, the change is not
observed: lost, unless the sender delivers it again, which the dedup store then lets through (the sender was
told 204, so only a sender that redelivers anyway does).
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any, Callable, Hashable

import aiohttp
import orjson

from bench.protocol import MODE_LABEL_HEADER, PATH_EVENT, event_path
from bench.records import JsonlWriter

__all__ = ["Fetcher", "FETCH_TRIES", "FETCH_BACKOFF_S", "FETCH_TIMEOUT_S", "POLLS_FILE", "OBSERVATIONS_FILE"]

log = logging.getLogger("hookbench.receiver")

FETCH_TRIES = 6
FETCH_BACKOFF_S = 0.2  # wait after failed try n: FETCH_BACKOFF_S * 2^(n-1): 0.2, 0.4 ... 3.2 s, 6.2 s in all
FETCH_TIMEOUT_S = 5.0  # per try
FETCH_CONNECTIONS = 64  # open connections to the producer at most; further fetches wait for one
POLLS_FILE = "polls-receiver.jsonl"
OBSERVATIONS_FILE = "observations-receiver.jsonl"
_EVENT_PREFIX = PATH_EVENT.split("{", 1)[0]  # "/events/": a thin event may point only below it
# aiohttp's client sends header names as given; title case is how the producer's ledger recognises the label
_LABEL = MODE_LABEL_HEADER.title()


def fetch_path(body: bytes, change_id: str) -> str | None:
    """The path a thin event points to (`data.url`), or the producer's event path of `change_id` when it names
    none; None when it names one outside the events route (never followed)."""
    try:
        data = orjson.loads(body).get("data")
        url = data.get("url") if isinstance(data, dict) else None
    except (orjson.JSONDecodeError, AttributeError):  # the checks parsed it already: json-only oddities
        url = None
    if url is None:
        return event_path(change_id)
    if isinstance(url, str) and url.startswith(_EVENT_PREFIX) and "?" not in url and "#" not in url \
            and ".." not in url:
        return url
    return None


def _resource_id(body: bytes) -> int | None:
    try:
        rid = orjson.loads(body)["data"]["resource_id"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    return rid if isinstance(rid, int) and not isinstance(rid, bool) else None


class Fetcher:
    """Fetches, retries and records the changes thin deliveries name; one aiohttp session per receiver app."""

    def __init__(self, base: str, records_dir: Path | None, on_failure: Callable[[Hashable], None]) -> None:
        """`base`: the producer's API base (validated loopback URL); `on_failure(key)`: a fetch gave up."""
        self.base = base
        self.records_dir = records_dir
        self.on_failure = on_failure
        self.session: aiohttp.ClientSession | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self._polls: JsonlWriter | None = None
        self._observations: JsonlWriter | None = None
        self.requests = self.fetched = self.failed = 0

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=FETCH_CONNECTIONS),
            timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S))
        if self.records_dir is not None:
            self._polls = JsonlWriter(self.records_dir / POLLS_FILE)
            self._observations = JsonlWriter(self.records_dir / OBSERVATIONS_FILE)

    async def close(self) -> None:
        """Stop: fetches still running are cancelled (each recorded as such), then the records are closed."""
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.session is not None:
            await self.session.close()
        for writer in (self._polls, self._observations):
            if writer is not None:
                writer.close()

    def stats(self) -> dict[str, int]:
        return {"requests": self.requests, "fetched": self.fetched, "failed": self.failed, "in_flight": len(self.tasks)}

    def submit(self, mode: str, change_id: str, body: bytes, key: Hashable) -> None:
        """An accepted thin delivery of endpoint `mode`: fetch what it names, in the background."""
        path = fetch_path(body, change_id)
        task = asyncio.create_task(self._fetch(mode, change_id, _resource_id(body), path, key))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _fetch(self, mode: str, change_id: str, rid: int | None, path: str | None, key: Hashable) -> None:
        if path is None:
            now = time.time_ns()
            self._row(mode, rid, now, now, 0, 0, f"not fetched: the event points outside {_EVENT_PREFIX}")
            self._give_up(mode, change_id, key, "the event points outside the events route")
            return
        assert self.session is not None  # started by the app's cleanup_ctx before any request
        url = self.base + path
        error = None
        for n in range(1, FETCH_TRIES + 1):
            ok, retry, error = await self._try(mode, change_id, rid, url)
            if ok:
                self.fetched += 1
                return
            if not retry or n == FETCH_TRIES:
                break
            await asyncio.sleep(FETCH_BACKOFF_S * 2 ** (n - 1))
        self._give_up(mode, change_id, key, error or "failed")

    async def _try(self, mode: str, change_id: str, rid: int | None, url: str) -> tuple[bool, bool, str | None]:
        """One GET: (fetched, worth retrying, error). Writes its polls row, and the observation when fetched."""
        assert self.session is not None
        status, nbytes, error, retry = 0, 0, None, True
        self.requests += 1
        t_send = time.time_ns()
        try:
            async with self.session.get(url, headers={_LABEL: mode}, allow_redirects=False) as resp:
                body = await resp.read()
                status, nbytes = resp.status, len(body)
            if status != 200:
                error, retry = f"HTTP {status}", status >= 500
            elif _answer_id(body) != change_id:
                error, retry = "bad body: not the change the event named", False
        except asyncio.CancelledError:
            self._row(mode, rid, t_send, time.time_ns(), status, nbytes, "cancelled: the receiver is stopping")
            raise
        except asyncio.TimeoutError:
            error = "timeout"
        except (aiohttp.ClientError, OSError) as e:
            error = f"{e.__class__.__name__}: {e}"[:200]
        t_recv = time.time_ns()
        self._row(mode, rid, t_send, t_recv, status, nbytes, error)
        if error is None and self._observations is not None:
            self._observations.write({"mode": mode, "user": 0, "change_id": change_id, "t_obs_ns": t_recv,
                                      "via": "push"})
        return error is None, retry, error

    def _row(self, mode: str, rid: int | None, t_send: int, t_recv: int, status: int, nbytes: int,
             error: str | None) -> None:
        """A polls row as the pollers write them: a failed fetch is an empty request, a fetched one brings 1."""
        if self._polls is not None:
            self._polls.write({"mode": mode, "user": 0, "resource_id": rid, "t_intended_ns": t_send,
                               "t_send_ns": t_send, "t_recv_ns": t_recv, "status": status, "empty": error is not None,
                               "n_new": 0 if error is not None else 1, "bytes": nbytes, "error": error,
                               "followup": False, "initial": False})

    def _give_up(self, mode: str, change_id: str, key: Hashable, why: str) -> None:
        self.failed += 1
        self.on_failure(key)
        log.warning("receiver: %s: change %s not fetched (%s): not observed", mode, change_id, why)


def _answer_id(body: bytes) -> Any:
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return answer.get("change_id") if isinstance(answer, dict) else None
