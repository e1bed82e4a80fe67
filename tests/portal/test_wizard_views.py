"""The purchase wizard: resumable steps, domain rules, mailbox rules, server-side prices, checkout."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import Domain
from core.models import Provision
from core.models import Tier
from core.models import WizardDraft
from tests.factories import make_provision
from tests.factories import make_user
from tests.factories import tiers


@pytest.fixture
def student(session: Session, auth: Any) -> Any:
    """A signed-in student and the default tiers."""
    tiers(session)
    user = make_user(session, "ann@example.com", name="Ann")
    session.commit()
    auth.login("ann@example.com")
    return user


def _tier_id(session: Session, slug: str) -> int:
    return session.scalars(select(Tier.id).where(Tier.slug == slug)).one()


def _choose_domains(client: Any, brand: str = "acmewidgets", count: int = 3) -> list[str]:
    """Search a brand and add the first ``count`` available suggestions."""
    client.post("/wizard/domains", data={"action": "search", "brand": brand})
    page = client.get("/wizard/domains").get_data(as_text=True)
    # Add buttons exist only for selectable names.
    addable = re.findall(
        r'name="action" value="add"><input type="hidden" name="name" value="([^"]+)"', page
    )
    for name in addable[:count]:
        assert (
            client.post("/wizard/domains", data={"action": "add", "name": name}).status_code == 302
        )
    assert len(addable) >= count
    return addable[:count]


def _saved_draft(session: Session) -> Any:
    """The order draft as stored, or None when nothing was ever saved."""
    session.expire_all()
    return session.scalars(select(WizardDraft.data).where(WizardDraft.kind == "order")).first()


def _complete_until_review(client: Any, session: Session, slug: str = "starter") -> list[str]:
    client.post("/wizard/package", data={"tier_id": _tier_id(session, slug)})
    chosen = _choose_domains(client)
    assert (
        client.post("/wizard/domains", data={"action": "continue"}).headers["Location"]
        == "/wizard/mailboxes"
    )
    response = client.post(
        "/wizard/mailboxes",
        data={
            "first_name": "Tim",
            "last_name": "Keen",
            "pattern_0": "{first}",
            "pattern_1": "{first}.{last}",
            "action": "continue",
        },
    )
    assert response.headers["Location"] == "/wizard/review"
    return chosen


@pytest.mark.usefixtures("student")
def test_package_step_lists_active_tiers_as_cards(client: Any, session: Session) -> None:
    growth = session.scalars(select(Tier).where(Tier.slug == "growth")).one()
    growth.active = False
    session.commit()
    page = client.get("/wizard/package").get_data(as_text=True)
    assert "Starter" in page and "Scale" in page and "Growth" not in page
    assert "about <strong>180</strong> emails a day" in page  # 3 domains x 2 mailboxes x 30
    assert "$97" in page and "$47 / month" in page


@pytest.mark.usefixtures("student")
def test_later_steps_redirect_until_earlier_ones_are_done(client: Any) -> None:
    assert client.get("/wizard/").headers["Location"] == "/wizard/package"
    assert client.get("/wizard/domains").headers["Location"] == "/wizard/package"
    assert client.get("/wizard/review").headers["Location"] == "/wizard/package"


@pytest.mark.usefixtures("student")
def test_unknown_tier_is_refused(client: Any) -> None:
    r = client.post("/wizard/package", data={"tier_id": "9999"})
    assert r.status_code == 400, r.headers.get("Location")
    assert client.post("/wizard/package", data={"tier_id": "abc"}).status_code == 400


@pytest.mark.usefixtures("student")
def test_a_refused_package_choice_saves_nothing_and_says_why_above_the_cards(
    client: Any, session: Session
) -> None:
    response = client.post("/wizard/package", data={"tier_id": "9999"})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert re.search(
        r'<p class="error" role="alert">Choose one of the packages.</p>\s*<div class="tier-grid">',
        page,
    )
    assert _saved_draft(session) is None


@pytest.mark.usefixtures("student")
def test_an_unknown_domain_step_action_is_refused_and_saves_nothing(
    client: Any, session: Session
) -> None:
    client.post("/wizard/package", data={"tier_id": _tier_id(session, "starter")})
    before = _saved_draft(session)
    response = client.post(
        "/wizard/domains", data={"action": "buy", "name": "x.com"}, follow_redirects=True
    )
    assert "That action is not available here." in response.get_data(as_text=True)
    assert _saved_draft(session) == before


@pytest.mark.usefixtures("student")
def test_brand_search_shows_twenty_suggestions_with_prices(client: Any, session: Session) -> None:
    client.post("/wizard/package", data={"tier_id": _tier_id(session, "starter")})
    client.post("/wizard/domains", data={"action": "search", "brand": "Acme Widgets"})
    page = client.get("/wizard/domains").get_data(as_text=True)
    assert page.count('class="domain-row') == 20
    assert "getacmewidgets.com" in page
    assert ">acmewidgets.com<" not in page  # never the brand's own .com
    assert "/yr · included" in page
    assert ".io" not in page


@pytest.mark.usefixtures("student")
def test_wizard_choices_survive_back_and_forth_and_signing_out(
    client: Any, auth: Any, session: Session
) -> None:
    client.post("/wizard/package", data={"tier_id": _tier_id(session, "starter")})
    chosen = _choose_domains(client)
    assert (
        client.post("/wizard/domains", data={"action": "back"}).headers["Location"]
        == "/wizard/package"
    )
    # Same tier again: nothing lost.
    client.post("/wizard/package", data={"tier_id": _tier_id(session, "starter")})
    auth.logout()
    auth.login("ann@example.com")
    page = client.get("/wizard/domains").get_data(as_text=True)
    for name in chosen:
        assert name in page
    assert "3 / 3" in page
    assert client.get("/wizard/").headers["Location"] == "/wizard/mailboxes"


@pytest.mark.usefixtures("student")
def test_exactly_the_tier_count_is_required(client: Any, session: Session) -> None:
    client.post("/wizard/package", data={"tier_id": _tier_id(session, "starter")})
    _choose_domains(client, count=2)
    response = client.post("/wizard/domains", data={"action": "continue"}, follow_redirects=True)
    assert "Pick exactly 3 domains: 1 more to go." in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "name,message",
    [
        ("acme.io", ".io is not sold by our domain provider"),
        ("-acme.com", "do not start or end with a hyphen"),
        ("mail.acme.com", "is a subdomain"),
        ("acme", "has no ending"),
    ],
)
@pytest.mark.usefixtures("student")
def test_manual_check_explains_invalid_names(
    client: Any, session: Session, name: str, message: str
) -> None:
    client.post("/wizard/package", data={"tier_id": _tier_id(session, "starter")})
    response = client.post(
        "/wizard/domains", data={"action": "check", "name": name}, follow_redirects=True
    )
    assert message in response.get_data(as_text=True)


@pytest.mark.usefixtures("student")
def test_manual_check_explains_taken_names(
    client: Any, session: Session, portal_sandbox: Any
) -> None:
    portal_sandbox.control("POST", "/zapmail/unavailable", json={"names": ["acmetaken1.com"]})
    client.post("/wizard/package", data={"tier_id": _tier_id(session, "starter")})
    page = client.post(
        "/wizard/domains", data={"action": "check", "name": "acmetaken1.com"}, follow_redirects=True
    ).get_data(as_text=True)
    assert "Taken: someone already owns this domain." in page
    # A taken name cannot be forced into the order.
    client.post("/wizard/domains", data={"action": "add", "name": "acmetaken1.com"})
    assert "0 / 3" in client.get("/wizard/domains").get_data(as_text=True)


@pytest.mark.usefixtures("student")
def test_a_name_chosen_by_another_student_is_explained(client: Any, session: Session) -> None:
    other = make_user(session, "bob@example.com")
    make_provision(session, other, status="pending_payment", domains=["getacmewidgets.com"])
    session.commit()
    client.post("/wizard/package", data={"tier_id": _tier_id(session, "starter")})
    client.post("/wizard/domains", data={"action": "search", "brand": "acmewidgets"})
    page = client.get("/wizard/domains").get_data(as_text=True)
    assert "Already chosen by another student" in page


@pytest.mark.parametrize(
    "first,last,patterns,message",
    [
        ("", "Keen", ["{first}", "{first}.{last}"], "First name is required."),
        ("Tim", "Keen", ["{first}", "{first}"], "Two patterns give the same address"),
        ("Tim3", "Keen", ["{first}", "{last}"], "letters, spaces, hyphens and apostrophes"),
        ("Tim", "Keen", ["{first}", "{evil}"], "Choose one of the listed address patterns."),
        ("Admin", "Keen", ["{first}", "{last}"], "is reserved for system mail"),
    ],
)
@pytest.mark.usefixtures("student")
def test_mailbox_step_validates_names_and_patterns(
    client: Any,
    session: Session,
    first: str,
    last: str,
    patterns: list[str],
    message: str,
) -> None:
    client.post("/wizard/package", data={"tier_id": _tier_id(session, "starter")})
    _choose_domains(client)
    client.post("/wizard/domains", data={"action": "continue"})
    response = client.post(
        "/wizard/mailboxes",
        data={
            "first_name": first,
            "last_name": last,
            "pattern_0": patterns[0],
            "pattern_1": patterns[1],
            "action": "continue",
        },
    )
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)


@pytest.mark.usefixtures("student")
def test_a_refused_mailbox_step_saves_nothing_and_shows_each_error_by_its_field(
    client: Any, session: Session
) -> None:
    client.post("/wizard/package", data={"tier_id": _tier_id(session, "starter")})
    _choose_domains(client)
    client.post("/wizard/domains", data={"action": "continue"})
    before = _saved_draft(session)
    response = client.post(
        "/wizard/mailboxes",
        data={
            "first_name": "Tim3",
            "last_name": "Keen",
            "pattern_0": "{first}",
            "action": "preview",
        },
    )
    assert response.status_code == 400
    assert _saved_draft(session) == before
    page = response.get_data(as_text=True)
    # The message stands under the first-name input, which shows what was typed.
    assert re.search(
        r'name="first_name" value="Tim3"[^>]*>\s*<small class="error" role="alert">'
        r"First name may contain letters",
        page,
    )
    assert re.search(
        r'<select name="pattern_1">.*?</select>\s*<small class="error" role="alert">'
        r"Choose one of the listed address patterns.",
        page,
        re.S,
    )
    # Both names fine, but two patterns make one address: the second pattern carries the error.
    page = client.post(
        "/wizard/mailboxes",
        data={
            "first_name": "Tim",
            "last_name": "Keen",
            "pattern_0": "{first}",
            "pattern_1": "{first}",
        },
    ).get_data(as_text=True)
    assert re.search(
        r'<select name="pattern_1">.*?</select>\s*<small class="error" role="alert">'
        r"Two patterns give the same address",
        page,
        re.S,
    )
    assert page.count('class="error"') == 1
    assert _saved_draft(session) == before


@pytest.mark.usefixtures("student")
def test_mailbox_preview_lists_every_address(client: Any, session: Session) -> None:
    client.post("/wizard/package", data={"tier_id": _tier_id(session, "starter")})
    chosen = _choose_domains(client)
    client.post("/wizard/domains", data={"action": "continue"})
    page = client.post(
        "/wizard/mailboxes",
        data={
            "first_name": "Zoë",
            "last_name": "O'Neil",
            "pattern_0": "{first}",
            "pattern_1": "{f}{last}",
            "action": "preview",
        },
    ).get_data(as_text=True)
    for name in chosen:
        assert f"zoe@{name}" in page
        assert f"zoneil@{name}" in page
    assert "6 mailboxes" in page


@pytest.mark.usefixtures("student")
def test_review_shows_server_prices(client: Any, session: Session) -> None:
    _complete_until_review(client, session)
    page = client.get("/wizard/review").get_data(as_text=True)
    assert "Due today" in page and "$144" in page  # 97 setup + 47 first month


@pytest.mark.usefixtures("student")
def test_pay_creates_a_pending_provision_and_a_checkout_session(
    client: Any, session: Session, portal_sandbox: Any
) -> None:
    chosen = _complete_until_review(client, session)
    # A tampered form cannot change the price: amounts are never read from it.
    response = client.post(
        "/wizard/review", data={"amount": "1", "setup_cents": "0", "tier_id": "999"}
    )
    assert response.status_code == 303
    location = response.headers["Location"]
    assert urlsplit(location).path.startswith("/stripe/checkout/cs_test_")
    session.expire_all()
    provision = session.scalars(select(Provision)).one()
    assert provision.status == "pending_payment"
    assert provision.stripe_checkout_session_id == location.rsplit("/", 1)[1]
    assert sorted(d.name for d in provision.domains) == sorted(chosen)
    stripe_session = httpx.get(
        f"{portal_sandbox.stripe_url}/v1/checkout/sessions/{provision.stripe_checkout_session_id}",
        params={"expand[]": "line_items"},
        headers={"Authorization": "Bearer sk_test_sandbox"},
    ).json()
    assert stripe_session["mode"] == "subscription"
    assert stripe_session["amount_total"] == 9700 + 4700
    assert stripe_session["client_reference_id"] == str(provision.id)
    assert stripe_session["metadata"]["provision_id"] == str(provision.id)
    assert stripe_session["customer_email"] == "ann@example.com"
    lines = stripe_session["line_items"]["data"]
    assert sorted((line["price"]["type"], line["amount_total"]) for line in lines) == [
        ("one_time", 9700),
        ("recurring", 4700),
    ]
    # Checkout names each line by its product: each says which fee it is (they were identical).
    assert {line["price"]["type"]: line["description"] for line in lines} == {
        "one_time": "Outbound infrastructure, Starter package: one-time setup fee",
        "recurring": "Outbound infrastructure, Starter package: monthly fee",
    }


@pytest.mark.usefixtures("student")
def test_paying_twice_with_the_same_cart_reuses_the_session(client: Any, session: Session) -> None:
    _complete_until_review(client, session)
    first = client.post("/wizard/review").headers["Location"]
    second = client.post("/wizard/review").headers["Location"]
    assert first == second  # same idempotency key: Stripe replays the same session


@pytest.mark.usefixtures("student")
def test_cancelled_checkout_keeps_choices_and_opens_a_fresh_session(
    client: Any, session: Session
) -> None:
    _complete_until_review(client, session)
    first = client.post("/wizard/review").headers["Location"]
    page = client.get("/wizard/review?cancelled=1", follow_redirects=True).get_data(as_text=True)
    assert "Payment cancelled" in page
    second = client.post("/wizard/review").headers["Location"]
    assert second != first


def test_a_paid_student_cannot_reenter_the_wizard(
    client: Any, student: Any, session: Session
) -> None:
    make_provision(session, student, status="provisioning")
    session.commit()
    assert client.get("/wizard/package").headers["Location"] == "/"
    assert client.post("/wizard/review").headers["Location"] == "/"


@pytest.mark.usefixtures("portal_sandbox")
def test_domains_taken_before_paying_send_the_student_back(
    client: Any, student: Any, session: Session
) -> None:
    chosen = _complete_until_review(client, session)
    other = make_user(session, "bob@example.com")
    make_provision(session, other, status="pending_payment", domains=[chosen[0]])
    session.commit()
    response = client.post("/wizard/review")
    assert response.headers["Location"] == "/wizard/domains"
    session.expire_all()
    assert session.scalar(select(Provision).where(Provision.user_id == student.id)) is None
    assert session.scalars(select(Domain.name)).all() == [chosen[0]]
