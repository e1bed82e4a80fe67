"""The sender-profile flow against the sandbox: every mailbox once, never a username, any fault.

The provision's mailboxes are made at the sandbox through its API (tests/support/zapmail_world.py);
the request is written the way the portal writes it (core/sender_profile.py). Fault cells follow
tests/flows/test_provision_faults.py: each kind on the PUT, each mailbox updated exactly once.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import httpx
import pytest
from prefect.client.schemas.objects import State
from sqlalchemy import select

from core.models import Domain
from core.models import Mailbox
from core.models import Provision
from core.models import ProvisioningStep
from core.models import SenderProfile
from core.sender_profile import picture_url
from core.sender_profile import request_profile
from flows.sender_profile import sender_profile
from tasks.sender_profile import apply_sender_profile
from tests.flows.conftest import Pipeline
from tests.flows.test_provision_faults import log_outcome
from tests.support.pictures import png
from tests.support.zapmail_world import active_provision

pytestmark = [pytest.mark.prefect]

PUT = ("zapmail", "PUT", "/v2/mailboxes")
KINDS: dict[str, dict[str, Any]] = {
    "5xx": {"kind": "status", "status": 503, "times": 1},
    "timeout": {"kind": "timeout", "hold_s": 1.5, "times": 1},
    "429 storm": {"kind": "rate_limit", "retry_after": 0.2, "times": 4},
    # Performed, the answer never arrives (the call times out): confirmed by listing.
    "response lost": {"kind": "drop_response", "hold_s": 1.5, "times": 1},
    # Performed, then an answer that proves nothing: found by listing, never sent again.
    "after 500": {"kind": "after_effect", "status": 500, "times": 1},
    "after 200 garbage": {
        "kind": "after_effect",
        "status": 200,
        "body": "<html>upstream garbled",
        "times": 1,
    },
}

# (listings, updates) each cell spends: a refused update is listed again and retried once; a
# 429 is waited out by the transport; an update performed then answered badly is confirmed by
# one more listing and never sent again.
CALLS = {
    "5xx": (3, 2),
    "timeout": (3, 2),
    "429 storm": (1, 5),
    "response lost": (2, 1),
    "after 500": (2, 1),
    "after 200 garbage": (2, 1),
}


@pytest.fixture
def fast_profile_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shorten the apply task's backoff: the cells are about recovery, not waiting."""
    monkeypatch.setattr(apply_sender_profile, "retry_delay_seconds", [0.2] * 4)


def requested(
    pipeline: Pipeline, provision_id: int, picture: bytes | None = None, **names: str
) -> int:
    """Write a request as the portal does; return its revision."""
    row = request_profile(
        pipeline.session,
        provision_id,
        first_name=names.get("first", "Jordan"),
        last_name=names.get("last", "Reyes"),
        picture=picture,
        content_type="image/png" if picture else None,
    )
    pipeline.session.commit()
    return row.revision


def listed(pipeline: Pipeline, provision_id: int) -> list[dict[str, Any]]:
    """Every mailbox row of the provision's workspace, as Zapmail lists it."""
    pipeline.session.expire_all()
    workspace = pipeline.session.get(Provision, provision_id).zapmail_workspace_id  # type: ignore[union-attr]
    # The sandbox enforces Zapmail's rate limits on this read too: wait out a 429 as a client would.
    for _ in range(20):
        response = httpx.get(
            f"{pipeline.settings.zapmail_base_url}/v2/mailboxes/list",
            params={"limit": 100},
            headers={"x-auth-zapmail": "sandbox-zapmail-key", "x-workspace-key": workspace},
            timeout=10,
        )
        if response.status_code != 429:
            break
        time.sleep(float(response.headers.get("retry-after") or 1))
    response.raise_for_status()
    body = response.json()
    return [m for d in body["data"]["domains"] for m in d["mailboxes"]]


def zapmail_calls(pipeline: Pipeline) -> Counter[str]:
    """Requests the sandbox's Zapmail answered so far, per route."""
    routes = pipeline.sandbox.stats()["vendors"].get("zapmail", {}).get("routes", {})
    return Counter({route: sum(codes.values()) for route, codes in routes.items()})


def profile_row(pipeline: Pipeline, provision_id: int) -> SenderProfile:
    pipeline.session.expire_all()
    return pipeline.session.scalars(
        select(SenderProfile).where(SenderProfile.provision_id == provision_id)
    ).one()


def assert_applied_once(pipeline: Pipeline, provision_id: int, url: str | None) -> None:
    """Every mailbox shows the profile, was updated exactly once, and kept its username."""
    rows = listed(pipeline, provision_id)
    assert len(rows) == 6
    assert {(m["firstName"], m["lastName"], m["profilePicture"]) for m in rows} == {
        ("Jordan", "Reyes", url)
    }
    assert sorted(m["username"] for m in rows) == [
        "tim",
        "tim",
        "tim",
        "tim.keen",
        "tim.keen",
        "tim.keen",
    ]
    updates = Counter(e["item"] for e in pipeline.sandbox.ledger(kind="mailbox_updated"))
    assert sorted(updates) == sorted(m["email"] for m in rows)
    assert set(updates.values()) == {1}, f"each mailbox updated exactly once, got {updates}"
    assert pipeline.sandbox.ledger(kind="mailbox_username_changed") == []
    row = profile_row(pipeline, provision_id)
    assert (row.status, row.error) == ("applied", None) and row.applied_at is not None
    names = pipeline.session.execute(
        select(Mailbox.first_name, Mailbox.last_name)
        .join(Domain)
        .where(Domain.provision_id == provision_id)
    ).all()
    assert set(names) == {("Jordan", "Reyes")}


def test_the_flow_puts_names_and_picture_on_every_mailbox_and_a_rerun_sends_nothing(
    pipeline: Pipeline,
) -> None:
    provision = active_provision(pipeline.session, pipeline.settings, email="ann@student.test")
    revision = requested(pipeline, provision.id, picture=png(200, 200))
    token = profile_row(pipeline, provision.id).picture_token
    before = zapmail_calls(pipeline)

    result = sender_profile(provision.id, revision)

    assert result == {
        "provision_id": provision.id,
        "revision": revision,
        "status": "applied",
        "mailboxes": 6,
        "updated": 6,
    }
    # One listing and one update for all six mailboxes (read before the test's own listing).
    after = zapmail_calls(pipeline)
    assert after - before == Counter({"GET /v2/mailboxes/list": 1, "PUT /v2/mailboxes": 1})
    assert token is not None
    assert_applied_once(pipeline, provision.id, picture_url(pipeline.settings.public_url, token))
    after = zapmail_calls(pipeline)
    step = pipeline.session.scalars(
        select(ProvisioningStep).where(ProvisioningStep.provision_id == provision.id)
    ).one()
    assert (step.step_key, step.status) == (f"profile-{revision}:apply", "completed")
    # A rerun of the finished request (a UI retry) comes from the cache: nothing is sent.
    again = sender_profile(provision.id, revision)
    assert again["status"] == "applied"
    assert zapmail_calls(pipeline) == after
    assert_applied_once(pipeline, provision.id, picture_url(pipeline.settings.public_url, token))


def test_names_only_keep_the_picture_and_an_older_revision_changes_nothing(
    pipeline: Pipeline,
) -> None:
    provision = active_provision(pipeline.session, pipeline.settings, email="bo@student.test")
    first = requested(pipeline, provision.id, first="Jo")
    second = requested(pipeline, provision.id)

    assert sender_profile(provision.id, first)["status"] == "superseded"
    assert pipeline.sandbox.ledger(kind="mailbox_updated") == []
    sender_profile(provision.id, second)

    assert_applied_once(pipeline, provision.id, None)


@pytest.mark.usefixtures("fast_profile_retries", "fast_limits")
@pytest.mark.parametrize("kind", list(KINDS))
def test_a_fault_on_the_update_still_updates_each_mailbox_once(
    pipeline: Pipeline, kind: str
) -> None:
    pipeline.settings.vendor_timeout_s = 1.0
    email = f"{kind.replace(' ', '')}@student.test"
    provision = active_provision(pipeline.session, pipeline.settings, email=email)
    revision = requested(pipeline, provision.id, picture=png(128, 128))
    token = profile_row(pipeline, provision.id).picture_token
    fault = pipeline.sandbox.add_fault(vendor=PUT[0], method=PUT[1], path=PUT[2], **KINDS[kind])

    before = zapmail_calls(pipeline)
    state: State[Any] = sender_profile(provision.id, revision, return_state=True)

    assert state.is_completed(), state.message
    log_outcome("automatically")
    lists, puts = CALLS[kind]
    assert zapmail_calls(pipeline) - before == Counter(
        {"GET /v2/mailboxes/list": lists, "PUT /v2/mailboxes": puts}
    )
    hits = {f["id"]: f["hits"] for f in pipeline.sandbox.control("GET", "/faults").json()["faults"]}
    assert hits[fault["id"]] >= 1, "the update met the fault"
    assert token is not None
    assert_applied_once(pipeline, provision.id, picture_url(pipeline.settings.public_url, token))


@pytest.mark.usefixtures("fast_profile_retries")
def test_a_refusal_fails_the_request_with_zapmails_reason_and_a_new_request_applies(
    pipeline: Pipeline,
) -> None:
    provision = active_provision(pipeline.session, pipeline.settings, email="cy@student.test")
    revision = requested(pipeline, provision.id)
    pipeline.sandbox.add_fault(vendor=PUT[0], method=PUT[1], path=PUT[2], kind="status", status=400)

    state: State[Any] = sender_profile(provision.id, revision, return_state=True)

    assert state.is_failed()
    row = profile_row(pipeline, provision.id)
    assert row.status == "failed"
    assert row.error == "Zapmail refused the change: Injected fault"
    assert pipeline.sandbox.ledger(kind="mailbox_updated") == []
    # Saving again is a new revision and a new run; it applies.
    sender_profile(provision.id, requested(pipeline, provision.id))
    assert_applied_once(pipeline, provision.id, None)


def test_a_cancelled_order_is_not_changed(pipeline: Pipeline) -> None:
    provision = active_provision(pipeline.session, pipeline.settings, email="di@student.test")
    revision = requested(pipeline, provision.id)
    pipeline.session.get(Provision, provision.id).status = "cancelled"  # type: ignore[union-attr]
    pipeline.session.commit()

    state: State[Any] = sender_profile(provision.id, revision, return_state=True)

    assert state.is_failed()
    row = profile_row(pipeline, provision.id)
    assert (row.status, row.error) == (
        "failed",
        "Your order is cancelled, so the mailboxes were not changed.",
    )
    assert pipeline.sandbox.ledger(kind="mailbox_updated") == []
