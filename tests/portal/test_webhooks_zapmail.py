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


def _waiting_provision(session: Session, waiting_for: str) -> Any:
    from core.db import utcnow
    from core.models import Mailbox
    from core.models import PurchaseState
    from tests.factories import make_paid_provision

    provision = make_paid_provision(
        session, email="wait@student.test", domains=["waitone.com", "waittwo.com", "waitsix.com"]
    )
    for domain in provision.domains:
        domain.purchase_state = PurchaseState.PURCHASED
        for user in ("tim", "tim.keen"):
            session.add(
                Mailbox(
                    domain=domain,
                    address=f"{user}@{domain.name}",
                    username=user,
                    first_name="Tim",
                    last_name="Keen",
                )
            )
    provision.waiting_for = waiting_for
    provision.waiting_since = utcnow()
    provision.current_flow_run_id = "00000000-0000-0000-0000-000000000001"
    session.commit()
    return provision


def _post(client: Any, event: str, data: dict[str, Any]) -> dict[str, Any]:
    body = json.dumps({"event": event, "data": data}).encode()
    response = client.post("/webhooks/zapmail", data=body, headers=_signed(body))
    assert response.status_code == 200
    return response.json


def test_domains_wait_is_resumed_once_every_domain_is_announced(
    app_factory: Any, session: Session, monkeypatch: Any
) -> None:
    from portal import orchestration

    resumed: list[str] = []
    monkeypatch.setattr(orchestration, "resume_run", lambda run: resumed.append(run) or True)
    client = app_factory(ZAPMAIL_WEBHOOK_SECRET=SECRET).test_client()
    _waiting_provision(session, "domains_active")
    # Each resume is a process start that replays the run: none until the last domain.
    assert _post(client, "domain.updated", {"domainName": "waitone.com"})["resumed"] == 0
    assert _post(client, "domain.updated", {"domainName": "WaitTwo.com"})["resumed"] == 0
    assert resumed == []
    assert _post(client, "domain.updated", {"domainName": "waitsix.com"})["resumed"] == 1
    assert len(resumed) == 1


def test_mailboxes_wait_counts_addresses_not_domains(
    app_factory: Any, session: Session, monkeypatch: Any
) -> None:
    from portal import orchestration

    resumed: list[str] = []
    monkeypatch.setattr(orchestration, "resume_run", lambda run: resumed.append(run) or True)
    client = app_factory(ZAPMAIL_WEBHOOK_SECRET=SECRET).test_client()
    _waiting_provision(session, "mailboxes_active")
    addresses = [
        f"{u}@{d}"
        for d in ("waitone.com", "waittwo.com", "waitsix.com")
        for u in ("tim", "tim.keen")
    ]
    for address in addresses[:-1]:
        domain = address.split("@")[1]
        assert (
            _post(client, "mailbox.updated", {"email": address, "domain": domain})["resumed"] == 0
        )
    # Domain events do not stand in for mailboxes.
    assert _post(client, "domain.updated", {"domainName": "waitsix.com"})["resumed"] == 0
    last = addresses[-1]
    assert (
        _post(client, "mailbox.updated", {"email": last, "domain": "waitsix.com"})["resumed"] == 1
    )
    assert len(resumed) == 1


def test_only_the_type_and_the_subject_ids_are_stored(app_factory: Any, session: Session) -> None:
    """Issue 13 (M3): bodies were stored verbatim; a mailbox row may carry its appPassword."""
    client = app_factory(ZAPMAIL_WEBHOOK_SECRET=SECRET).test_client()
    body = json.dumps(
        {
            "event": "mailbox.updated",
            "data": {
                "id": "mbx_1",
                "email": "ann@tryacme.com",
                "status": "ACTIVE",
                "appPassword": "abcd efgh ijkl mnop",
                "password": "hunter2-secret",
                "nested": {"appPassword": "deep-secret"},
            },
        }
    ).encode()
    assert client.post("/webhooks/zapmail", data=body, headers=_signed(body)).status_code == 200
    row = session.scalars(select(WebhookEvent)).one()
    assert row.payload == {
        "event": "mailbox.updated",
        "data": {"id": "mbx_1", "email": "ann@tryacme.com", "status": "ACTIVE"},
    }
    stored = json.dumps(row.payload)
    for secret in ("abcd efgh", "hunter2", "deep-secret", "appPassword"):
        assert secret not in stored
