"""Webhook dispatcher: POSTs every change to every active subscription, signed (Standard Webhooks).

One reused aiohttp.ClientSession; per subscription a queue drained by `concurrency` workers; a
per-attempt timeout; failed attempts are retried after exponential back-off with jitter. Every
attempt is recorded (time, status, latency, bytes, attempt number). Not durable: deliveries still
queued when the producer stops are lost (the analysis counts them against ground truth).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

import aiohttp

from bench.config import DeliveryCfg, WebhookCfg
from bench.protocol import MODE_WEBHOOK, ChangeEvent, encode_event, msg_id_for
from bench.records import JsonlWriter
from bench.signing import Signer

from .ledger import Ledger, header_bytes
from .store import Subscription

__all__ = ["Dispatcher", "backoff_delay"]


def backoff_delay(cfg: DeliveryCfg, attempt: int, rng: random.Random) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based): the schedule's delay, +-jitter."""
    return cfg.nominal_delay(attempt) * (1.0 + rng.uniform(-cfg.jitter, cfg.jitter))


@dataclass
class _Job:
    change: ChangeEvent
    attempt: int


class _Endpoint:
    def __init__(self, sub: Subscription) -> None:
        self.sub = sub
        self.signer = Signer(sub.secret)
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()
        self.workers: list[asyncio.Task[None]] = []


class Dispatcher:
    def __init__(self, cfg: WebhookCfg, ledger: Ledger, records: JsonlWriter | None, seed: int) -> None:
        self.cfg = cfg
        self.delivery = cfg.subscriptions[0]
        self.ledger = ledger
        self.records = records
        self.rng = random.Random(seed)
        self.endpoints: dict[str, _Endpoint] = {}
        self.session: aiohttp.ClientSession | None = None
        self.retry_handles: set[asyncio.TimerHandle] = set()
        self.attempts = self.ok = self.failed = 0

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, limit_per_host=0))

    async def close(self) -> None:
        for handle in self.retry_handles:
            handle.cancel()
        for ep in list(self.endpoints.values()):
            await self._stop_endpoint(ep)
        if self.session is not None:
            await self.session.close()

    def pending(self) -> int:
        return sum(ep.queue.qsize() for ep in self.endpoints.values()) + len(self.retry_handles)

    # --- subscriptions ------------------------------------------------------------------------
    def add(self, sub: Subscription) -> None:
        ep = _Endpoint(sub)
        ep.workers = [asyncio.create_task(self._worker(ep)) for _ in range(self.delivery.concurrency)]
        self.endpoints[sub.id] = ep

    async def remove(self, sid: str) -> None:
        ep = self.endpoints.pop(sid, None)
        if ep is not None:
            await self._stop_endpoint(ep)

    async def _stop_endpoint(self, ep: _Endpoint) -> None:
        for w in ep.workers:
            w.cancel()
        await asyncio.gather(*ep.workers, return_exceptions=True)

    # --- delivery -----------------------------------------------------------------------------
    def submit(self, change: ChangeEvent) -> None:
        if not self.cfg.enabled:
            return
        for ep in self.endpoints.values():
            ep.queue.put_nowait(_Job(change, 1))

    async def _worker(self, ep: _Endpoint) -> None:
        while True:
            job = await ep.queue.get()
            try:
                await self._attempt(ep, job)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a bug in one attempt must not stop the worker; it is recorded
                self._record(ep, job, time.time_ns(), time.time_ns(), 0, 0, 0, f"internal: {e!r}")

    async def _attempt(self, ep: _Endpoint, job: _Job) -> None:
        assert self.session is not None
        cost = self.ledger.mode(MODE_WEBHOOK)
        cpu0 = time.thread_time_ns()
        body = encode_event(job.change)
        payload = body.encode()
        headers = ep.signer.headers(msg_id_for(job.change["change_id"]), body, int(time.time()))
        headers["content-type"] = "application/json"
        cost.cpu_ns += time.thread_time_ns() - cpu0

        status, bytes_out, bytes_in, error = 0, 0, 0, None
        t_send = time.time_ns()
        try:
            # No redirects: a 3xx is the endpoint's answer (a failure), never a hop to an unchecked URL.
            async with self.session.post(ep.sub.url, data=payload, headers=headers, allow_redirects=False,
                                         timeout=aiohttp.ClientTimeout(total=self.delivery.timeout)) as resp:
                rbody = await resp.read()
                status = resp.status
                sent_head = resp.request_info.headers
                bytes_out = header_bytes(f"POST {resp.request_info.url.raw_path_qs} HTTP/1.1", sent_head) + len(payload)
                bytes_in = header_bytes(f"HTTP/1.1 {resp.status} {resp.reason}", resp.headers) + len(rbody)
        except asyncio.TimeoutError:
            error = "timeout"
        except aiohttp.ClientError as e:
            error = f"{e.__class__.__name__}: {e}"[:200]
        t_done = time.time_ns()
        cost.requests += 1
        cost.bytes_out += bytes_out or len(payload)
        cost.bytes_in += bytes_in
        self._record(ep, job, t_send, t_done, status, bytes_out, bytes_in, error)

        self.attempts += 1
        if 200 <= status < 300:
            self.ok += 1
            return
        self.failed += 1
        if job.attempt < self.delivery.attempts:
            delay = backoff_delay(self.delivery, job.attempt, self.rng)
            loop = asyncio.get_running_loop()
            retry = _Job(job.change, job.attempt + 1)

            def requeue() -> None:
                self.retry_handles.discard(handle)
                if ep.sub.id in self.endpoints:
                    ep.queue.put_nowait(retry)

            handle = loop.call_later(delay, requeue)
            self.retry_handles.add(handle)

    def _record(self, ep: _Endpoint, job: _Job, t_send: int, t_done: int, status: int, bytes_out: int,
                bytes_in: int, error: str | None) -> None:
        if self.records is None:
            return
        self.records.write({
            "msg_id": msg_id_for(job.change["change_id"]), "change_id": job.change["change_id"],
            "subscription_id": ep.sub.id, "attempt": job.attempt, "t_send_ns": t_send, "t_done_ns": t_done,
            "status": status, "latency_ms": (t_done - t_send) / 1e6, "bytes_out": bytes_out,
            "bytes_in": bytes_in, "error": error,
        })
