"""POST /webhooks/zapmail (optional): signed, recorded once, resumes only paused runs."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import WebhookEvent

SECRET = "zapmail-whsec-test"


def _signed(body: bytes, secret: str = SECRET, ts: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if ts is None else ts
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Zapmail-Signature": f"t={ts},v1={mac}", "Content-Type": "application/json"}


def _count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(WebhookEvent)) or 0


def test_disabled_without_a_secret(app_factory: Any) -> None:
    client = app_factory(ZAPMAIL_WEBHOOK_SECRET=None).test_client()
    assert client.post("/webhooks/zapmail", data=b"{}").status_code == 404


def test_enabled_by_the_setting(client: Any) -> None:
    # Dev and test default to the sandbox's signing secret, so an unsigned body is refused.
    assert client.post("/webhooks/zapmail", data=b"{}").status_code == 400


def test_signed_event_is_recorded_once(app_factory: Any, session: Session) -> None:
    client = app_factory(ZAPMAIL_WEBHOOK_SECRET=SECRET).test_client()
    body = json.dumps(
        {"event": "domain.updated", "data": {"domain": "tryacme.com", "status": "ACTIVE"}}
    ).encode()
    assert client.post("/webhooks/zapmail", data=body, headers=_signed(body)).json == {
        "status": "ok",
        "resumed": 0,
    }
    assert (
        client.post("/webhooks/zapmail", data=body, headers=_signed(body)).json["status"]
        == "duplicate"
    )
    assert _count(session) == 1


def test_bad_or_stale_signatures_write_nothing(app_factory: Any, session: Session) -> None:
    client = app_factory(ZAPMAIL_WEBHOOK_SECRET=SECRET).test_client()
    body = json.dumps({"event": "domain.updated", "data": {}}).encode()
    assert (
        client.post(
            "/webhooks/zapmail", data=body, headers=_signed(body, secret="other")
        ).status_code
        == 400
    )
    assert (
        client.post(
            "/webhooks/zapmail", data=body, headers=_signed(body, ts=int(time.time()) - 3600)
        ).status_code
        == 400
    )
    assert client.post("/webhooks/zapmail", data=b"[]", headers=_signed(b"[]")).status_code == 400
    assert _count(session) == 0
