"""Every route x {anonymous, student A, student B, admin}: who may do what (M4).

The route list comes from the app's url_map, so a new route without an entry here fails
``test_every_route_has_an_expectation``. "login" means: redirected to the sign-in page.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from flask import Flask
from flask import url_for
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.crypto import SecretBox
from core.models import Cohort
from core.models import Domain
from core.models import DomainReplacement
from core.models import Mailbox
from core.models import Role
from core.models import Tier
from core.models import TokenPurpose
from core.models import User
from portal.auth.tokens import issue_token
from tests.factories import make_provision
from tests.factories import make_user
from tests.portal.helpers import AuthActions
from tests.reliability import figures

ROLES = ("anonymous", "student_a", "student_b", "admin")
L = "login"

# (endpoint, method): expected status for (anonymous, student A, student B, admin).
EXPECTED: dict[tuple[str, str], tuple[Any, Any, Any, Any]] = {
    ("dashboard.home", "GET"): (L, 302, 302, 302),
    ("dashboard.healthz", "GET"): (200, 200, 200, 200),
    ("static", "GET"): (200, 200, 200, 200),
    ("auth.login", "GET"): (200, 302, 302, 302),
    ("auth.login", "POST"): (400, 400, 400, 400),
    ("auth.logout", "POST"): (L, 302, 302, 302),
    ("auth.forgot_password", "GET"): (200, 200, 200, 200),
    ("auth.forgot_password", "POST"): (400, 400, 400, 400),
    ("auth.reset_password", "GET"): (400, 400, 400, 400),
    ("auth.reset_password", "POST"): (400, 400, 400, 400),
    ("auth.accept_invite", "GET"): (400, 400, 400, 400),
    ("auth.accept_invite", "POST"): (400, 400, 400, 400),
    # The second step answers only a browser half-way through an admin's sign-in.
    ("auth.two_factor", "GET"): (L, 302, 302, 302),
    ("auth.two_factor", "POST"): (L, 302, 302, 302),
    ("auth.two_factor_setup", "GET"): (L, 302, 302, 302),
    ("auth.two_factor_setup", "POST"): (L, 302, 302, 302),
    ("wizard.start", "GET"): (L, 302, 302, 403),
    ("wizard.package", "GET"): (L, 302, 302, 403),
    ("wizard.package", "POST"): (L, 302, 302, 403),
    ("wizard.domains", "GET"): (L, 302, 302, 403),
    ("wizard.domains", "POST"): (L, 302, 302, 403),
    ("wizard.mailboxes", "GET"): (L, 302, 302, 403),
    ("wizard.mailboxes", "POST"): (L, 302, 302, 403),
    ("wizard.mailboxes_preview", "GET"): (401, 404, 404, 403),
    ("wizard.review", "GET"): (L, 302, 302, 403),
    ("wizard.review", "POST"): (L, 302, 302, 403),
    ("wizard.success", "GET"): (L, 404, 404, 403),
    ("dashboard.progress", "GET"): (L, 200, 200, 403),
    ("dashboard.progress_json", "GET"): (401, 200, 200, 403),
    ("dashboard.overview", "GET"): (L, 200, 200, 403),
    ("dashboard.mailbox", "GET"): (L, 200, 404, 403),
    ("dashboard.refresh", "POST"): (L, 303, 303, 403),
    ("dashboard.forwarding", "POST"): (L, 303, 303, 403),
    ("dashboard.check_dns", "POST"): (L, 303, 303, 403),
    ("dashboard.reveal_password", "POST"): (L, 200, 303, 403),
    ("dashboard.billing_portal", "POST"): (L, 303, 404, 403),
    ("dashboard.invoices", "GET"): (L, 200, 200, 403),
    ("dashboard.profile", "GET"): (L, 200, 200, 403),
    ("dashboard.profile", "POST"): (L, 400, 400, 403),
    ("dashboard.profile_picture", "GET"): (404, 404, 404, 404),
    # Student A's domain is healthy: the page says why it cannot be replaced, posts are refused.
    ("dashboard.replace_domain", "GET"): (L, 200, 404, 403),
    ("dashboard.replace_domain", "POST"): (L, 303, 404, 403),
    ("dashboard.confirm_replacement", "GET"): (L, 303, 404, 403),
    ("dashboard.confirm_replacement", "POST"): (L, 303, 404, 403),
    ("dashboard.replacement", "GET"): (L, 200, 404, 403),
    ("dashboard.replacement_json", "GET"): (401, 200, 404, 403),
    ("dashboard.pay_replacement", "POST"): (L, 303, 404, 403),
    ("dashboard.withdraw_replacement", "POST"): (L, 303, 404, 403),
    ("upgrade.start", "GET"): (L, 200, 200, 403),
    ("upgrade.start", "POST"): (L, 400, 400, 403),
    ("upgrade.domains", "GET"): (L, 302, 302, 403),
    ("upgrade.domains", "POST"): (L, 302, 302, 403),
    ("upgrade.review", "GET"): (L, 302, 302, 403),
    ("upgrade.review", "POST"): (L, 302, 302, 403),
    ("admin.index", "GET"): (L, 403, 403, 302),
    ("admin.cohort", "GET"): (L, 403, 403, 200),
    ("admin.provision_detail", "GET"): (L, 403, 403, 200),
    ("admin.retry", "POST"): (L, 403, 403, 303),
    ("admin.cancel", "POST"): (L, 403, 403, 303),
    ("admin.refund", "POST"): (L, 403, 403, 303),
    ("admin.tiers", "GET"): (L, 403, 403, 200),
    ("admin.tier_new", "GET"): (L, 403, 403, 200),
    ("admin.tier_new", "POST"): (L, 403, 403, 400),
    ("admin.tier_edit", "GET"): (L, 403, 403, 200),
    ("admin.tier_edit", "POST"): (L, 403, 403, 400),
    ("admin.tier_toggle", "POST"): (L, 403, 403, 303),
    ("admin.tier_move", "POST"): (L, 403, 403, 400),
    ("admin.cohorts", "GET"): (L, 403, 403, 200),
    ("admin.cohort_create", "POST"): (L, 403, 403, 400),
    ("admin.set_cohort_size", "POST"): (L, 403, 403, 303),
    ("admin.cohort_students", "GET"): (L, 403, 403, 200),
    ("admin.cohort_import", "POST"): (L, 403, 403, 400),
    ("admin.invite_resend", "POST"): (L, 403, 403, 303),
    ("admin.invite_revoke", "POST"): (L, 403, 403, 303),
    ("admin.audit", "GET"): (L, 403, 403, 200),
    ("admin.sign_out_everywhere", "POST"): (L, 403, 403, 303),
    ("admin.mark_burned", "POST"): (L, 403, 403, 303),
    ("admin.clear_burned", "POST"): (L, 403, 403, 303),
    ("admin.replace_domain", "POST"): (L, 403, 403, 303),
    ("admin.retry_replacement", "POST"): (L, 403, 403, 303),
    ("webhooks.stripe_webhook", "POST"): (400, 400, 400, 400),
    ("webhooks.zapmail_webhook", "POST"): (400, 400, 400, 400),
}


def _routes(app: Flask) -> set[tuple[str, str]]:
    routes = set()
    for rule in app.url_map.iter_rules():
        for method in rule.methods or ():
            if method not in ("HEAD", "OPTIONS"):
                routes.add((rule.endpoint, method))
    return routes


def test_every_route_has_an_expectation(app: Flask) -> None:
    assert _routes(app) == set(EXPECTED)


def invited_student(session: Session, email: str) -> tuple[Cohort, User]:
    """A cohort and a student invited to it (a live invitation link)."""
    cohort = Cohort(name=f"Cohort of {email}", starts_on=date(2027, 3, 1), instructor="Ida")
    session.add(cohort)
    session.flush()
    student = make_user(session, email)
    student.cohort_id = cohort.id
    issue_token(session, student, TokenPurpose.INVITE, ttl_s=3600, ip=None)
    return cohort, student


@pytest.fixture
def world(app: Flask, session: Session) -> dict[str, Any]:
    """Student A (active, with a PlusVibe password and a domain being replaced), student B
    (active), an admin, and a cohort with an invited student C."""
    box = SecretBox.from_settings(app.extensions["settings"])
    a = make_user(session, "a@example.com")
    b = make_user(session, "b@example.com")
    make_user(session, "admin@example.com", role=Role.ADMIN)
    pa = make_provision(
        session,
        a,
        status="active",
        stripe_customer_id="cus_missing",
        plusvibe_client_email="a@pv.test",
        plusvibe_client_password_enc=box.seal("pw-of-a"),
    )
    make_provision(session, b, status="active")
    cohort, c = invited_student(session, "c@example.com")
    kept, replaced = sorted(pa.domains, key=lambda d: d.id)[:2]
    successor = Domain(provision_id=pa.id, name="tryanext.com")
    session.add(successor)
    session.flush()
    replacement = DomainReplacement(
        provision_id=pa.id,
        old_domain_id=replaced.id,
        new_domain_id=successor.id,
        reason="admin",
        payment="included",
        status="provisioning",
    )
    session.add(replacement)
    session.commit()
    mailbox = session.scalars(
        select(Mailbox.id).join(Mailbox.domain).where(Mailbox.address.like("%trya%"))
    ).first()
    return {
        "provision_id": pa.id,
        "mailbox_id": mailbox,
        "tier_id": session.scalars(select(Tier.id).where(Tier.slug == "starter")).one(),
        "filename": "app.css",
        "cohort_id": cohort.id,
        "user_id": c.id,
        "domain_id": kept.id,
        "replacement_id": replacement.id,
    }


def _client(app: Flask, role: str) -> Any:
    client = app.test_client()
    email = {
        "student_a": "a@example.com",
        "student_b": "b@example.com",
        "admin": "admin@example.com",
    }.get(role)
    if email:
        assert AuthActions(client).login(email).status_code == 302
    return client


def _url(app: Flask, endpoint: str, world: dict[str, Any]) -> str:
    rule = next(r for r in app.url_map.iter_rules() if r.endpoint == endpoint)
    with app.test_request_context():
        return url_for(endpoint, **{arg: world[arg] for arg in rule.arguments})


@pytest.mark.parametrize("endpoint,method", sorted(EXPECTED), ids=lambda v: str(v))
def test_route_access(app: Flask, world: dict[str, Any], endpoint: str, method: str) -> None:
    url = _url(app, endpoint, world)
    failures = []
    for role, expected in zip(ROLES, EXPECTED[(endpoint, method)], strict=True):
        response = _client(app, role).open(url, method=method)
        response.close()
        location = response.headers.get("Location", "")
        if expected == L:
            ok = response.status_code == 401 or (
                response.status_code == 302 and location.startswith("/auth/login")
            )
        else:
            ok = response.status_code == expected
        if not ok:
            failures.append((role, method, url, expected, response.status_code, location))
    # Figures for docs/reliability.md (printed when tests/reliability is part of the run).
    figures.add("authorization matrix", "checks", len(ROLES))
    figures.add("authorization matrix", "failures", len(failures))
    figures.record(
        "authorization matrix",
        routes=len({rule.rule for rule in app.url_map.iter_rules()}),
        route_methods=len(EXPECTED),
        roles=len(ROLES),
    )
    assert failures == []


@pytest.mark.usefixtures("world")
def test_student_pages_never_show_another_students_data(app: Flask) -> None:
    client = _client(app, "student_b")
    a_domains = ["trya0.com", "trya1.com", "trya2.com"]
    for url in (
        "/",
        "/progress",
        "/progress.json",
        "/dashboard",
        "/upgrade",
        "/wizard/",
        "/wizard/review",
    ):
        body = client.get(url, follow_redirects=True).get_data(as_text=True)
        assert "a@example.com" not in body and "a@pv.test" not in body
        for name in a_domains:
            assert name not in body, url
    body = client.post("/dashboard/plusvibe-password", follow_redirects=True).get_data(as_text=True)
    assert "pw-of-a" not in body


def test_state_changing_routes_need_a_csrf_token(app_factory: Any, world: dict[str, Any]) -> None:
    app = app_factory(WTF_CSRF_ENABLED=True)
    posts = sorted(
        k
        for k in EXPECTED
        if k[1] == "POST" and not k[0].startswith("webhooks.") and k[0] != "auth.login"
    )
    for role in ("student_a", "admin"):
        client = app.test_client()
        email = "a@example.com" if role == "student_a" else "admin@example.com"
        with client.session_transaction():
            pass
        page = client.get("/auth/login").get_data(as_text=True)
        token = page.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
        assert AuthActions(client).login(email, csrf_token=token).status_code == 302
        for endpoint, method in posts:
            response = client.open(_url(app, endpoint, world), method=method)
            expected_denied = (
                {403} if (role == "student_a") == endpoint.startswith("admin.") else set()
            )
            assert response.status_code in {400} | expected_denied, (role, endpoint)
