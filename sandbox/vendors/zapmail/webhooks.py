"""Signed Zapmail webhooks on lifecycle transitions, sent by a small background ticker.

Only active while config.zapmail_webhook_url is set; statuses themselves stay lazy.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from typing import TYPE_CHECKING
from typing import Any

from sandbox.vendors.zapmail.state import Domain
from sandbox.vendors.zapmail.state import Mailbox
from sandbox.vendors.zapmail.state import iso
from sandbox.vendors.zapmail.views import domain_row
from sandbox.vendors.zapmail.views import mailbox_row

if TYPE_CHECKING:
    from sandbox.vendors.zapmail import ZapmailSim

log = logging.getLogger(__name__)

TICK_S = 0.25
ATTEMPTS = 4
RETRY_BASE_S = 0.5


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """Return the X-Zapmail-Signature value: t=<unix>,v1=<hex HMAC-SHA256(secret, 't.body')>."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


class WebhookTicker:
    """Detects domain/mailbox transitions and delivers signed events with retries."""

    def __init__(self, sim: ZapmailSim) -> None:
        self.sim = sim
        self._known: dict[str, str] = {}
        self._task: asyncio.Task | None = None
        self._deliveries: set[asyncio.Task] = set()
        self.sent: list[dict[str, Any]] = []

    def seen_domain(self, domain: Domain) -> None:
        """Remember a domain's current status so only later changes emit events."""
        self._known[domain.id] = domain.status(self.sim.state.now())

    def seen_mailbox(self, box: Mailbox) -> None:
        """Remember a mailbox's current status so only later changes emit events."""
        self._known[box.id] = box.status(self.sim.state.now())

    def reset(self) -> None:
        """Forget known statuses and the delivery log."""
        self._known.clear()
        self.sent.clear()

    def start(self) -> None:
        """Start the ticker task."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop the ticker and any delivery still retrying."""
        for task in [self._task, *self._deliveries]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            url = self.sim.ctx.config.zapmail_webhook_url
            if url:
                try:
                    self.tick(url)
                except Exception:  # keep ticking; a bug here must not kill the server
                    log.exception("zapmail webhook tick failed")

    def tick(self, url: str) -> None:
        """Emit domain.updated / mailbox.updated for every new ACTIVE or FAILED status."""
        st = self.sim.state
        now = st.now()
        for d in list(st.domains.values()):
            status = d.status(now)
            if self._known.get(d.id) != status:
                self._known[d.id] = status
                if status == "ACTIVE":
                    self._emit(url, "domain.updated", domain_row(st, d, now))
        for m in list(st.mailboxes.values()):
            status = m.status(now)
            if self._known.get(m.id) != status:
                self._known[m.id] = status
                if status in ("ACTIVE", "FAILED"):
                    row = mailbox_row(m, now)
                    row.pop("appPassword", None)  # never push secrets to a webhook
                    self._emit(url, "mailbox.updated", row)

    def _emit(self, url: str, event: str, data: dict[str, Any]) -> None:
        payload = {"event": event, "data": data, "createdAt": iso(self.sim.state.now())}
        task = asyncio.get_running_loop().create_task(self._deliver(url, payload))
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    async def _deliver(self, url: str, payload: dict[str, Any]) -> None:
        import httpx  # imported lazily: only needed when webhooks are configured

        body = json.dumps(payload).encode()
        record = {"url": url, "event": payload["event"], "attempts": 0, "status": None}
        self.sent.append(record)
        async with httpx.AsyncClient(timeout=10.0) as client:
            for attempt in range(ATTEMPTS):
                record["attempts"] = attempt + 1
                # Re-sign each attempt: receivers reject stale timestamps.
                headers = {
                    "content-type": "application/json",
                    "X-Zapmail-Signature": sign(
                        self.sim.ctx.config.zapmail_webhook_secret, body, int(time.time())
                    ),
                }
                try:
                    resp = await client.post(url, content=body, headers=headers)
                    record["status"] = resp.status_code
                    if resp.is_success:
                        return
                except httpx.HTTPError as exc:
                    record["status"] = f"error: {type(exc).__name__}"
                await asyncio.sleep(RETRY_BASE_S * 2**attempt)
