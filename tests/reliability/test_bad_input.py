"""Fuzzed bodies against the webhooks and every form: never a 500, never a partial write.

Hypothesis generates arbitrary JSON, wrong types, huge strings and unicode. A refused request
(4xx) must leave the app DB exactly as it was; an accepted webhook event is stored once and
marked processed. Example counts are moderate in ``make test`` and larger in ``make chaos``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import WebhookEvent
from portal import outbox_sender
from portal.webhooks.stripe_events import HANDLED as WEBHOOK_HANDLED
from tests.factories import make_user
from tests.portal.helpers import WEBHOOK_SECRET
from tests.portal.helpers import AuthActions
from tests.portal.test_authorization_matrix import _url
from tests.reliability import figures
from tests.reliability.stripe_deliveries import raw_signature
from tests.reliability.test_web_security import fingerprint

EXAMPLES = 600 if figures.LONG else 50
FUZZ = settings(
    max_examples=EXAMPLES,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
HANDLED = tuple(sorted(WEBHOOK_HANDLED))

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.text(alphabet=st.characters(codec="utf-8"), min_size=1000, max_size=5000)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=20,
)
# Mostly plausible event ids, so that most examples get past the envelope checks.
evt_ids = st.builds(lambda s: f"evt_{s}", st.text(alphabet="abcdefXYZ0123456789_", max_size=24))
ids = st.one_of(evt_ids, evt_ids, evt_ids, st.text(max_size=30), scalars)
stripe_objects = st.fixed_dictionaries(
    {"id": st.one_of(st.text(max_size=30), st.text(max_size=30), scalars)},
    optional={
        "object": st.sampled_from(["checkout.session", "subscription", "invoice"]) | scalars,
        "payment_status": st.sampled_from(["paid", "unpaid", "no_payment_required"]) | scalars,
        "status": st.sampled_from(["active", "past_due", "canceled", "incomplete"]) | scalars,
        "customer": scalars,
        "subscription": scalars,
        "client_reference_id": scalars,
        "billing_reason": st.sampled_from(["subscription_cycle", "subscription_update"]) | scalars,
        "metadata": json_values
        | st.fixed_dictionaries(
            {},
            optional={
                "provision_id": st.integers(0, 5).map(str) | scalars,
                "user_id": st.integers(0, 5).map(str) | scalars,
                "upgrade_id": st.integers(0, 5).map(str) | scalars,
            },
        ),
        "parent": json_values,
    },
)
events = st.fixed_dictionaries(
    {
        "id": ids,
        "type": st.sampled_from(HANDLED) | st.text(max_size=40) | scalars,
        "created": st.one_of(*[st.integers(0, 2 * 10**9)] * 3, scalars),
        "data": st.fixed_dictionaries({"object": stripe_objects | json_values}) | json_values,
    },
    optional={"object": st.just("event"), "livemode": st.booleans()},
)
event_bodies = events.map(lambda e: json.dumps(e).encode())
bodies = st.one_of(
    event_bodies,
    event_bodies,
    event_bodies,
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=300),
)


def _event_rows(session: Session) -> tuple[int, int]:
    session.expire_all()
    total = session.scalar(select(func.count()).select_from(WebhookEvent)) or 0
    unprocessed = (
        session.scalar(
            select(func.count())
            .select_from(WebhookEvent)
            .where(WebhookEvent.processed_at.is_(None))
        )
        or 0
    )
    return total, unprocessed


def test_fuzzed_signed_stripe_bodies_never_500_and_write_whole_events_or_nothing(
    app: Flask, session: Session, engine: Engine
) -> None:
    client = app.test_client()
    statuses: dict[int, int] = {}

    @FUZZ
    @given(body=bodies, signed=st.integers(0, 9).map(bool))
    def check(body: bytes, signed: bool) -> None:
        before = fingerprint(engine)
        rows_before, _ = _event_rows(session)
        headers = {
            "Stripe-Signature": raw_signature(body, WEBHOOK_SECRET) if signed else "t=1,v1=0"
        }
        response = client.post("/webhooks/stripe", data=body, headers=headers)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code in (200, 400), (response.status_code, body[:300])
        assert response.is_json and "Traceback" not in response.get_data(as_text=True)
        if response.status_code == 400:
            assert fingerprint(engine) == before, body[:300]
        else:
            rows, unprocessed = _event_rows(session)
            assert rows - rows_before in (0, 1) and unprocessed == 0
        figures.add("bad input", "stripe_webhook_fuzz_cases", 1)

    check()
    figures.record("bad input", stripe_webhook_fuzz_statuses=dict(sorted(statuses.items())))


def _zapmail_signature(secret: str, body: bytes) -> str:
    ts = int(time.time())
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


def test_fuzzed_zapmail_bodies_never_500(app: Flask, engine: Engine) -> None:
    client = app.test_client()
    secret = app.config.get("ZAPMAIL_WEBHOOK_SECRET")

    @FUZZ
    @given(
        body=st.fixed_dictionaries(
            {
                "event": st.sampled_from(["domain.updated", "mailbox.updated"]) | scalars,
                "data": json_values,
            }
        ).map(lambda e: json.dumps(e).encode())
        | bodies
    )
    def check(body: bytes) -> None:
        before = fingerprint(engine)
        headers = {"X-Zapmail-Signature": _zapmail_signature(secret, body)} if secret else {}
        response = client.post("/webhooks/zapmail", data=body, headers=headers)
        assert response.status_code in (200, 400, 404), (response.status_code, body[:300])
        if response.status_code != 200:
            assert fingerprint(engine) == before
        figures.add("bad input", "zapmail_webhook_fuzz_cases", 1)

    check()


# Field names the forms know, plus some they do not.
FIELDS = (
    "email password next tier_id action brand name first_name last_name pattern_0 pattern_1 "
    "pattern_2 note reason amount cancel_subscription direction slug domain_count "
    "mailboxes_per_domain setup monthly active new_domain replacements_included replacement_fee "
    "csrf_token x"
).split()
form_values = (
    st.text(max_size=60)
    | st.integers(-(2**64), 2**64).map(str)
    | st.sampled_from(["search", "add", "remove", "check", "continue", "back", "preview", "up"])
    | st.sampled_from(
        ["{first}", "{first}.{last}", "{last}", "{f}{last}", "%s", "{0}", "{__class__}"]
    )
    | st.text(min_size=2000, max_size=20000)
)
forms = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=10), form_values, max_size=8)


@pytest.mark.parametrize("role", ["new_student", "student_a", "admin"])
def test_fuzzed_forms_on_every_post_route_never_500_and_refusals_write_nothing(
    app: Flask, world: dict[str, Any], session: Session, engine: Engine, role: str
) -> None:
    make_user(session, "new@example.com")
    session.commit()
    email = {"new_student": "new@example.com", "student_a": "a@example.com"}.get(
        role, "admin@example.com"
    )
    routes = sorted(
        (rule.endpoint, method)
        for rule in app.url_map.iter_rules()
        for method in rule.methods or ()
        if method in ("POST", "PUT", "PATCH", "DELETE")
        and not rule.endpoint.startswith("webhooks.")
        and rule.endpoint not in ("auth.login", "auth.logout")  # they would change who is signed in
    )
    urls = [(_url(app, endpoint, world), method) for endpoint, method in routes]
    client = app.test_client()
    assert AuthActions(client).login(email).status_code == 302
    statuses: dict[int, int] = {}

    @FUZZ
    @given(target=st.sampled_from(urls), data=forms, as_json=st.booleans())
    def check(target: tuple[str, str], data: dict[str, str], as_json: bool) -> None:
        url, method = target
        # An earlier accepted request may have handed runs to the outbox sender thread, which
        # records them in its own transaction; let it finish so the fingerprint is this request's.
        assert outbox_sender.wait_idle(30)
        before = fingerprint(engine)
        if as_json:
            response = client.open(url, method=method, json=data)
        else:
            response = client.open(url, method=method, data=data)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, (url, data)
        if response.status_code >= 400:
            assert outbox_sender.wait_idle(30)
            assert fingerprint(engine) == before, (url, data)
        figures.add("bad input", "form_fuzz_cases", 1)

    check()
    figures.record("bad input", form_fuzz_routes=len(urls))
    for status, count in statuses.items():
        figures.add("bad input", f"form_fuzz_status_{status}", count)


def test_fuzzed_login_never_500_and_a_refusal_records_at_most_the_failure(
    app: Flask, session: Session
) -> None:
    make_user(session, "ann@example.com")
    session.commit()
    app.config["LOGIN_MAX_FAILURES_PER_IP"] = 10**6
    app.config["LOGIN_MAX_FAILURES_PER_EMAIL"] = 10**6

    @FUZZ
    @given(data=forms)
    def check(data: dict[str, str]) -> None:
        response = app.test_client().post("/auth/login", data=data)
        assert response.status_code in (302, 400, 401), data
        figures.add("bad input", "login_fuzz_cases", 1)

    check()


def test_progress_json_with_fuzzed_query_strings(app: Flask, world: dict[str, Any]) -> None:
    del world
    client = app.test_client()
    AuthActions(client).login("a@example.com")

    @FUZZ
    @given(query=st.dictionaries(st.text(max_size=10), st.text(max_size=200), max_size=4))
    def check(query: dict[str, str]) -> None:
        response = client.get("/progress.json", query_string=query)
        assert response.status_code == 200 and response.is_json
        figures.add("bad input", "json_endpoint_fuzz_cases", 1)

    check()


def test_zapmail_event_with_a_nul_character_is_stored_without_it(
    app_factory: Any, session: Session
) -> None:
    """Found by the fuzzer: PostgreSQL text cannot hold NUL, and the event type is vendor text."""
    secret = "zapmail-test-secret"
    app = app_factory(ZAPMAIL_WEBHOOK_SECRET=secret)
    body = json.dumps({"event": "domain.\x00updated", "data": {}}).encode()
    response = app.test_client().post(
        "/webhooks/zapmail",
        data=body,
        headers={"X-Zapmail-Signature": _zapmail_signature(secret, body)},
    )
    assert response.status_code == 200
    assert session.scalars(select(WebhookEvent.event_type)).one() == "domain.updated"
