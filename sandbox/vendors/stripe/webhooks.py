"""Signed webhook delivery: a background worker POSTs events with retries, duplicates, shuffling."""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import hmac
import itertools
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from hashlib import sha256
from typing import Any

import httpx

from sandbox.vendors.stripe.store import State

log = logging.getLogger(__name__)

USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"
TIMEOUT_S = 10.0
CONFIG_TARGET = "config"


def sign(body: str, secret: str, timestamp: int) -> str:
    """Return the Stripe-Signature header: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.{body}".encode(), sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


@dataclass
class Job:
    """One pending delivery attempt of one event to one target."""

    seq: int
    event_id: str
    target: str
    attempt: int
    due: float
    duplicate: bool = False
    manual: bool = False


class Dispatcher:
    """Queues events per target and delivers them from one asyncio task."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.ctx = state.ctx
        self.generation = 0
        self.jobs: list[Job] = []
        self.log: list[dict[str, Any]] = []
        self.inflight = 0
        self._seq = itertools.count()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None

    def reset(self) -> None:
        """Drop queued deliveries and the delivery log (in-flight results are discarded)."""
        self.generation += 1
        self.jobs.clear()
        self.log.clear()

    def pending(self) -> int:
        """Deliveries queued, waiting for a retry, or in flight."""
        return len(self.jobs) + self.inflight

    def targets(self, event: dict[str, Any]) -> list[str]:
        """Where an event goes: the configured URL and every matching webhook endpoint."""
        found = [CONFIG_TARGET] if self.ctx.config.stripe_webhook_url else []
        for endpoint in self.state.all("webhook_endpoint"):
            if endpoint["status"] == "enabled" and any(
                fnmatch.fnmatchcase(event["type"], pattern)
                for pattern in endpoint["enabled_events"]
            ):
                found.append(endpoint["id"])
        return found

    def enqueue_batch(self, events: list[dict[str, Any]]) -> None:
        """Queue every event emitted by one action (shuffled together in shuffle mode)."""
        config = self.ctx.config
        now = time.monotonic()
        batch = []
        for event in events:
            targets = self.targets(event)
            event["_undelivered"] = set(targets)
            event["pending_webhooks"] = len(targets)
            for target in targets:
                batch.append(Job(0, event["id"], target, 1, now))
                if self.ctx.rng.random() < config.stripe_webhook_duplicate_rate:
                    batch.append(Job(0, event["id"], target, 1, now, duplicate=True))
        if config.stripe_webhook_shuffle:
            self.ctx.rng.shuffle(batch)
        for job in batch:
            job.seq = next(self._seq)
        self.jobs.extend(batch)
        self._poke()

    def redeliver(self, event_id: str) -> bool:
        """Queue one more delivery of a stored event to the configured URL."""
        if self.state.find(event_id, "event") is None:
            return False
        self.jobs.append(
            Job(next(self._seq), event_id, CONFIG_TARGET, 1, time.monotonic(), manual=True)
        )
        self._poke()
        return True

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def start(self) -> None:
        """Start the delivery task."""
        self._client = httpx.AsyncClient(timeout=TIMEOUT_S, follow_redirects=False)
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="stripe-webhooks")

    async def stop(self) -> None:
        """Stop the delivery task and close the HTTP client."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def drain(self, timeout_s: float) -> bool:
        """Wait until nothing is pending (or the wall-clock timeout passes)."""
        deadline = time.monotonic() + timeout_s
        while self.pending() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return self.pending() == 0

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            now = time.monotonic()
            due = [job for job in self.jobs if job.due <= now]
            if not due:
                wait = min((job.due for job in self.jobs), default=now + 3600) - now
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=max(wait, 0.001))
                continue
            if self.ctx.config.stripe_webhook_shuffle:
                job = self.ctx.rng.choice(due)
            else:
                job = min(due, key=lambda j: j.seq)
            self.jobs.remove(job)
            self.inflight += 1
            try:
                await self._deliver(job, self.generation)
            except Exception:  # a bug in one delivery must not stop the worker
                log.exception("webhook delivery of %s failed", job.event_id)
            finally:
                self.inflight -= 1

    def _endpoint(self, target: str) -> tuple[str | None, str]:
        if target == CONFIG_TARGET:
            config = self.ctx.config
            return config.stripe_webhook_url, config.stripe_webhook_secret
        endpoint = self.state.find(target, "webhook_endpoint")
        if endpoint is None or endpoint.get("deleted"):
            return None, ""
        return endpoint["url"], endpoint["_secret"]

    async def _deliver(self, job: Job, generation: int) -> None:
        event = self.state.find(job.event_id, "event")
        url, secret = self._endpoint(job.target)
        if event is None or url is None or self._client is None:
            return
        body = json.dumps(self.state.render(event), indent=2)
        timestamp = int(time.time())  # wall time: receivers check it against their own clock
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            "Stripe-Signature": sign(body, secret, timestamp),
            "Cache-Control": "no-cache",
            "Accept": "*/*; q=0.5, application/xml",
        }
        status: int | None = None
        error: str | None = None
        try:
            response = await self._client.post(url, content=body.encode(), headers=headers)
            status = response.status_code
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if generation != self.generation:
            return
        ok = status is not None and 200 <= status < 300
        self.log.append(
            {
                "event_id": job.event_id,
                "type": event["type"],
                "target": job.target,
                "url": url,
                "attempt": job.attempt,
                "status": status,
                "error": error,
                "ok": ok,
                "duplicate": job.duplicate,
                "manual": job.manual,
                "at": datetime.now(tz=UTC).isoformat(),
            }
        )
        if ok:
            event["_undelivered"].discard(job.target)
            event["pending_webhooks"] = len(event["_undelivered"])
            return
        config = self.ctx.config
        if job.attempt < config.stripe_webhook_max_attempts:
            delay = config.stripe_webhook_retry_base_s * 2 ** (job.attempt - 1)
            retry = Job(
                next(self._seq),
                job.event_id,
                job.target,
                job.attempt + 1,
                time.monotonic() + delay,
                duplicate=job.duplicate,
                manual=job.manual,
            )
            self.jobs.append(retry)
