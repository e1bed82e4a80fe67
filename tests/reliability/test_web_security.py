"""Web security across the whole url_map: CSRF, headers, redirects, sessions, throttling, audit.

Routes come from the app itself, so a new route is covered (or fails the coverage checks) without
editing this file. The route x role access matrix lives in tests/portal/test_authorization_matrix.py.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import Base
from core.db import utcnow
from core.models import AuditLog
from core.models import Domain
from core.models import DomainReplacement
from core.models import Provision
from core.models import Role
from tests.factories import PASSWORD
from tests.factories import make_provision
from tests.factories import make_user
from tests.factories import tiers
from tests.portal import prefect_support
from tests.portal.helpers import AuthActions
from tests.portal.helpers import paid_order
from tests.portal.helpers import signed_in
from tests.portal.replacement_support import free_name
from tests.portal.test_authorization_matrix import EXPECTED
from tests.portal.test_authorization_matrix import _url
from tests.portal.test_authorization_matrix import invited_student
from tests.reliability import figures

STATE_CHANGING = ("POST", "PUT", "PATCH", "DELETE")
EMAILS = {"student_a": "a@example.com", "student_b": "b@example.com", "admin": "admin@example.com"}
EXPIRED = "This form expired or was sent from elsewhere"
# What CSP sources may be: this origin, none, data: images. Anything else is an external source.
ALLOWED_SOURCES = {"'self'", "'none'", "data:"}
# A plausible body per form, so that only the missing token can be the reason for a refusal.
FORM_DATA: dict[str, dict[str, str]] = {
    "auth.login": {"email": "a@example.com", "password": PASSWORD},
    "auth.forgot_password": {"email": "a@example.com"},
    "auth.two_factor": {"code": "123456"},
    "auth.two_factor_setup": {"code": "123456"},
    "wizard.package": {"tier_id": "1"},
    "wizard.domains": {"action": "search", "brand": "csrfco"},
    "wizard.mailboxes": {"first_name": "Ann", "last_name": "Lee", "action": "continue"},
    "dashboard.profile": {"first_name": "Ann", "last_name": "Lee"},
    "upgrade.start": {"tier_id": "2"},
    "admin.cancel": {"note": "csrf"},
    "admin.refund": {"reason": "csrf"},
    "admin.tier_move": {"direction": "up"},
    "admin.tier_new": {"name": "Csrf", "slug": "csrf", "domain_count": "3", "setup": "1"},
    "admin.cohort_create": {"name": "Csrf", "starts_on": "2027-01-04", "instructor": "Ida"},
    "admin.cohort_import": {"csv_text": "email,first name,last name\ncsrf@example.com,Cy,Ross"},
    "admin.replace_domain": {"name": "csrfswap.com"},
    "dashboard.replace_domain": {"action": "check", "name": "csrfswap.com"},
    "dashboard.confirm_replacement": {"new_domain": "csrfswap.com"},
}


def _state_changing_routes(app: Flask) -> list[tuple[str, str]]:
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("webhooks."):
            continue  # signed by the vendor instead (tests/portal/test_webhooks_*.py)
        for method in rule.methods or ():
            if method in STATE_CHANGING:
                routes.add((rule.endpoint, method))
    return sorted(routes)


def _token(client: Any, path: str = "/auth/login") -> str:
    """The CSRF token of the client's current session, read from a rendered form."""
    page = client.get(path, follow_redirects=True).get_data(as_text=True)
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def _signed_in(app: Flask, role: str) -> tuple[Any, str]:
    """A client signed in through the real CSRF-protected form, and its session's token."""
    client = app.test_client()
    token = _token(client)
    if role != "anonymous":
        response = AuthActions(client).login(EMAILS[role], csrf_token=token)
        assert response.status_code == 302, role
        # The session was regenerated at sign-in: take the token of the new session.
        token = _token(client, "/")
    return client, token


def fingerprint(engine: Engine) -> str:
    """A hash of every row of every table of the app DB."""
    digest = hashlib.sha256()
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            rows = conn.execute(select(table)).all()
            digest.update(table.name.encode())
            digest.update(repr(sorted(map(repr, rows))).encode())
    return digest.hexdigest()


def test_every_state_changing_route_refuses_a_missing_or_wrong_csrf_token(
    app_factory: Any, world: dict[str, Any], engine: Engine
) -> None:
    app = app_factory(WTF_CSRF_ENABLED=True)
    routes = _state_changing_routes(app)
    assert ("auth.login", "POST") in routes and len(routes) >= 15
    _, foreign = _signed_in(app, "student_b")  # a valid token, of someone else's session
    checked = 0
    for role in ("anonymous", "student_a", "student_b", "admin"):
        client, token = _signed_in(app, role)
        for endpoint, method in routes:
            url = _url(app, endpoint, world)
            data = FORM_DATA.get(endpoint, {})
            before = fingerprint(engine)
            for variant in (
                {},
                {"csrf_token": "x" * 20},
                {"csrf_token": foreign},
                {"csrf_token": ""},
            ):
                response = client.open(url, method=method, data={**data, **variant})
                body = response.get_data(as_text=True)
                assert response.status_code == 400 and EXPIRED in body, (role, endpoint, variant)
                checked += 1
            headers = {"X-CSRFToken": foreign}
            response = client.open(url, method=method, data=data, headers=headers)
            assert response.status_code == 400, (role, endpoint, "foreign header")
            checked += 1
            assert fingerprint(engine) == before, (role, endpoint)
        # Control: the same requests with this session's own token pass the CSRF check.
        # (Sign-in passed with a token in _signed_in; sign-out goes last, it ends the session.)
        controls = [r for r in routes if r[0] not in ("auth.login", "auth.logout")]
        for endpoint, method in [*controls, ("auth.logout", "POST")]:
            url = _url(app, endpoint, world)
            response = client.open(
                url, method=method, data={**FORM_DATA.get(endpoint, {}), "csrf_token": token}
            )
            assert EXPIRED not in response.get_data(as_text=True), (role, endpoint)
            assert response.status_code < 500, (role, endpoint)
    figures.record(
        "web security",
        csrf_state_changing_routes=len(routes),
        csrf_roles=4,
        csrf_refusals_checked=checked,
        csrf_failures=0,
    )


def _csp_problems(policy: str) -> list[str]:
    directives = {}
    for part in policy.split(";"):
        words = part.split()
        if words:
            directives[words[0]] = words[1:]
    problems = [
        f"{name} {source}"
        for name, sources in directives.items()
        for source in sources
        if source not in ALLOWED_SOURCES
    ]
    if directives.get("frame-ancestors") != ["'none'"]:
        problems.append("frame-ancestors is not 'none'")
    for needed in ("default-src", "script-src", "style-src", "object-src", "base-uri"):
        if needed not in directives:
            problems.append(f"{needed} missing")
    return problems


def _header_problems(response: Any) -> list[str]:
    headers = response.headers
    problems = _csp_problems(headers.get("Content-Security-Policy", ""))
    if headers.get("X-Content-Type-Options") != "nosniff":
        problems.append("nosniff missing")
    if headers.get("Referrer-Policy") not in ("same-origin", "no-referrer", "strict-origin"):
        problems.append("Referrer-Policy missing")
    if headers.get("X-Frame-Options") != "DENY":
        problems.append("X-Frame-Options missing")
    return problems


# Resources a page loads (not links it shows): none may come from another origin, and no inline
# script or style (the CSP would block it, so it would be a broken page too).
_EXTERNAL_LOAD = re.compile(
    r"<(?:script|img|iframe|link|source|embed)\b[^>]*\b(?:src|href)=\"(?:https?:)?//", re.I
)
_INLINE = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>|<style\b|\sstyle=\"|\son[a-z]+=\"", re.I)


def test_every_page_sends_the_security_headers_and_loads_nothing_external(
    app: Flask, world: dict[str, Any]
) -> None:
    gets = sorted(k for k in EXPECTED if k[1] == "GET")
    pages = 0
    for role in ("anonymous", "student_a", "student_b", "admin"):
        client = app.test_client()
        if role != "anonymous":
            AuthActions(client).login(EMAILS[role])
        extra = ["/no-such-page", "/progress.json", "/webhooks/stripe"]
        for url in [_url(app, e, world) for e, _ in gets] + extra:
            response = client.get(url)
            assert _header_problems(response) == [], (role, url)
            if response.mimetype == "text/html":
                body = response.get_data(as_text=True)
                assert not _EXTERNAL_LOAD.search(body), (role, url)
                assert not _INLINE.findall(body), (role, url, _INLINE.findall(body)[:3])
            response.close()
            pages += 1
    # Error answers of other kinds carry them too.
    for response in (
        app.test_client().post("/webhooks/stripe", data=b"{}"),
        app.test_client().put("/auth/login"),
    ):
        assert _header_problems(response) == []
        pages += 1
    figures.record("web security", header_responses_checked=pages, header_failures=0)


REDIRECT_ATTACKS = [
    "https://evil.example/",
    "http://evil.example",
    "//evil.example",
    "///evil.example",
    "////evil.example/x",
    "\\\\evil.example",
    "/\\evil.example",
    "\\/evil.example",
    "/%5Cevil.example",
    "/%2F%2Fevil.example",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    " //evil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "https:evil.example",
    "http:/\\evil.example",
    "/dashboard@evil.example",
    "//evil.example%23.portal.test",
    "\u3002evil.example",
    "/\u2215evil.example",
]


def _safe_location(location: str) -> bool:
    parts = urlsplit(location)
    return (
        location.startswith("/")
        and not location.startswith("//")
        and "\\" not in location
        and not parts.scheme
        and not parts.netloc
        and not any(ord(ch) < 32 for ch in location)
    )


@pytest.mark.parametrize("target", REDIRECT_ATTACKS)
def test_no_open_redirect_through_next(client: Any, session: Session, target: str) -> None:
    make_user(session, "ann@example.com")
    session.commit()
    response = client.post(
        "/auth/login", data={"email": "ann@example.com", "password": PASSWORD, "next": target}
    )
    assert response.status_code == 302 and _safe_location(response.headers["Location"])
    # Already signed in: GET /auth/login?next=... redirects at once.
    again = client.get("/auth/login", query_string={"next": target})
    assert again.status_code == 302 and _safe_location(again.headers["Location"])
    figures.add("web security", "open_redirect_payloads_checked", 2)


@settings(max_examples=300 if figures.LONG else 60)
@given(
    target=st.text(max_size=60) | st.from_regex(r"\A[/\\\\ \t]{0,4}[a-z:.@%]{0,20}", fullmatch=True)
)
def test_no_generated_next_leaves_the_site(target: str) -> None:
    from portal.security import safe_next

    result = safe_next(target)
    assert result is None or _safe_location(result)
    figures.add("bad input", "safe_next_cases", 1)


def test_session_fixation_a_planted_cookie_never_becomes_signed_in(
    app_factory: Any, session: Session
) -> None:
    app = app_factory(WTF_CSRF_ENABLED=True)
    make_user(session, "ann@example.com")
    session.commit()
    victim = app.test_client()
    token = _token(victim)
    planted = victim.get_cookie("portal_session").value  # what an attacker could have set
    response = victim.post(
        "/auth/login", data={"email": "ann@example.com", "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 302
    issued = victim.get_cookie("portal_session").value
    assert issued != planted
    assert victim.get("/progress.json").status_code != 401
    # The attacker replays the cookie they planted: still anonymous.
    attacker = app.test_client()
    attacker.set_cookie("portal_session", planted)
    assert attacker.get("/progress.json").status_code == 401
    with victim.session_transaction() as sess:
        assert "csrf_token" not in sess or sess["csrf_token"] != token  # token renewed too
    figures.record("web security", session_fixation_checks=3, session_fixation_failures=0)


def test_login_throttling_holds_against_email_variants_and_many_addresses(
    app: Flask, client: Any, session: Session
) -> None:
    make_user(session, "ann@example.com")
    session.commit()
    variants = ["ann@example.com", "ANN@example.com", " ann@EXAMPLE.com ", "Ann@Example.Com"]
    answers = [
        client.post(
            "/auth/login", data={"email": variants[i % 4], "password": f"guess-{i}"}
        ).status_code
        for i in range(12)
    ]
    limit = app.config["LOGIN_MAX_FAILURES_PER_EMAIL"]
    assert answers[:limit] == [401] * limit and set(answers[limit:]) == {429}
    # The right password is refused while blocked.
    assert (
        client.post(
            "/auth/login", data={"email": "ann@example.com", "password": PASSWORD}
        ).status_code
        == 429
    )
    # One address spraying many accounts is blocked per address.
    sprayer = app.test_client()
    per_ip = app.config["LOGIN_MAX_FAILURES_PER_IP"]
    spray = [
        sprayer.post(
            "/auth/login", data={"email": f"user{i}@example.com", "password": "x" * 12}
        ).status_code
        for i in range(per_ip + 5)
    ]
    assert spray.count(429) >= 5 and 429 not in spray[: per_ip - limit]
    figures.record(
        "web security",
        throttle_attempts=len(answers) + 1 + len(spray),
        throttle_blocked=answers.count(429) + 1 + spray.count(429),
        throttle_failures=0,
    )


def _audit_rows(session: Session) -> list[tuple[str, int | None]]:
    session.expire_all()
    return list(session.execute(select(AuditLog.action, AuditLog.actor_id).order_by(AuditLog.id)))


@pytest.mark.prefect
def test_every_admin_action_writes_an_audit_row(
    app_factory: Any, portal_prefect: str, session: Session, portal_sandbox: Any
) -> None:
    app = app_factory(prefect_api_url=portal_prefect)
    rows = tiers(session)
    boss = make_user(session, "boss@example.com", role=Role.ADMIN)
    session.commit()
    admin = signed_in(app, "boss@example.com")

    # A paid order through the sandbox (for the refund), then failed for good.
    student = app.test_client()
    ann = make_user(session, "ann@example.com")
    session.commit()
    AuthActions(student).login("ann@example.com")
    paid_order(student, session, portal_sandbox, "auditco")
    paid = session.scalars(select(Provision).where(Provision.user_id == ann.id)).one()
    paid.status, paid.remedy = "failed", "refund"
    # A failed run to retry, and an unpaid order to cancel.
    bob = make_user(session, "bob@example.com")
    failed = make_provision(session, bob, status="failed")
    run_id = prefect_support.new_run(
        portal_prefect, "provision/on-demand", {"provision_id": failed.id}
    )
    prefect_support.fail_run(portal_prefect, run_id)
    failed.current_flow_run_id = run_id
    cid = make_provision(
        session, make_user(session, "cid@example.com"), status="pending_payment"
    ).id
    # A cohort with an invited student, to re-send and then revoke the invitation.
    cohort, invited = invited_student(session, "invited@example.com")
    # An active order: one domain to mark burned, one marked to clear, one to replace, and a
    # stopped replacement to retry.
    dan = make_provision(session, make_user(session, "dan@example.com"), tier="growth")
    to_mark, marked, to_replace, replaced = sorted(dan.domains, key=lambda d: d.id)[:4]
    marked.burned_at = utcnow()
    successor = Domain(provision_id=dan.id, name="trydanauditnext.com")
    session.add(successor)
    session.flush()
    stopped = DomainReplacement(
        provision_id=dan.id,
        old_domain_id=replaced.id,
        new_domain_id=successor.id,
        reason="admin",
        payment="included",
        status="failed",
    )
    session.add(stopped)
    session.commit()
    students = f"/admin/cohorts/{cohort.id}/students/{invited.id}"
    tier_form = {
        "name": "Audit",
        "slug": "audit",
        "domain_count": "4",
        "mailboxes_per_domain": "2",
        "setup": "10",
        "monthly": "5",
        "replacements_included": "1",
        "replacement_fee": "29",
        "active": "y",
    }
    actions: dict[str, tuple[str, dict[str, str]]] = {
        "admin.tier_new": ("/admin/tiers/new", tier_form),
        "admin.tier_edit": (
            f"/admin/tiers/{rows['scale'].id}/edit",
            {**tier_form, "name": "Scale+", "slug": "scale", "domain_count": "10", "setup": "300"},
        ),
        "admin.tier_toggle": (f"/admin/tiers/{rows['growth'].id}/toggle", {}),
        "admin.tier_move": (f"/admin/tiers/{rows['scale'].id}/move", {"direction": "up"}),
        "admin.sign_out_everywhere": (f"/admin/provisions/{paid.id}/sign-out-everywhere", {}),
        "admin.retry": (f"/admin/provisions/{failed.id}/retry", {}),
        "admin.cancel": (f"/admin/provisions/{cid}/cancel", {"note": "duplicate"}),
        "admin.refund": (
            f"/admin/provisions/{paid.id}/refund",
            {"amount": "5", "reason": "goodwill", "cancel_subscription": "keep"},
        ),
        "admin.cohort_create": (
            "/admin/cohorts/new",
            {"name": "Audit 2", "starts_on": "2027-02-01", "instructor": "Ida"},
        ),
        "admin.cohort_import": (
            f"/admin/cohorts/{cohort.id}/import",
            {"csv_text": "email;first name;last name\nnew@example.com;Ned;Wu", "confirm": "yes"},
        ),
        "admin.invite_resend": (f"{students}/resend", {}),
        "admin.invite_revoke": (f"{students}/revoke", {}),
        "admin.set_cohort_size": ("/admin/capacity/cohort", {"next_cohort_size": "40"}),
        "admin.mark_burned": (f"/admin/domains/{to_mark.id}/burned", {}),
        "admin.clear_burned": (f"/admin/domains/{marked.id}/unburned", {}),
        "admin.replace_domain": (
            f"/admin/domains/{to_replace.id}/replace",
            {"name": free_name("auditswap")},
        ),
        "admin.retry_replacement": (f"/admin/replacements/{stopped.id}/retry", {}),
    }
    admin_posts = {e for e, m in _state_changing_routes(app) if e.startswith("admin.")}
    assert admin_posts == set(actions), "a new admin action needs a scenario here"
    for endpoint, (url, data) in sorted(actions.items()):
        before = len(_audit_rows(session))
        response = admin.post(url, data=data)
        assert response.status_code in (302, 303), (endpoint, response.status_code)
        after = _audit_rows(session)
        assert len(after) == before + 1, endpoint
        assert after[-1][1] == boss.id, endpoint
    figures.record("web security", admin_actions_audited=len(actions), admin_audit_failures=0)
