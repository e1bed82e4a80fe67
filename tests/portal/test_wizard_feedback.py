"""What the wizard says back: refusals next to their field, the live preview, the way back from Stripe."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.domains import MAX_BRAND_LENGTH
from core.models import Tier
from core.models import WizardDraft
from portal import billing
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


def _starter(client: Any, session: Session) -> None:
    starter = session.scalars(select(Tier.id).where(Tier.slug == "starter")).one()
    client.post("/wizard/package", data={"tier_id": starter})


@pytest.mark.usefixtures("student")
def test_a_refused_brand_is_said_next_to_its_field_and_kept_there(
    client: Any, session: Session
) -> None:
    _starter(client, session)
    brand = "Northwind " * 30  # 300 characters: more than a domain can hold
    page = client.post(
        "/wizard/domains", data={"action": "search", "brand": brand}, follow_redirects=True
    ).get_data(as_text=True)
    # The field itself refuses more than the rule allows...
    assert f'maxlength="{MAX_BRAND_LENGTH}"' in page
    # ...and a longer brand sent anyway is refused under the field, which keeps what was typed.
    assert re.search(
        r'name="brand" value="' + re.escape(brand) + r'"[^>]*aria-invalid="true"[^>]*>\s*'
        r'<small class="error" id="brand-error" role="alert">That brand name is too long',
        page,
    )
    assert 'class="flashes"' not in page  # said once, at the field
    session.expire_all()
    draft = session.scalars(select(WizardDraft.data)).one()
    assert draft["brand"] == "" and draft["candidates"] == []  # nothing was saved


@pytest.mark.usefixtures("student")
def test_two_dots_in_a_row_are_not_a_valid_domain_name_said_at_the_check_field(
    client: Any, session: Session
) -> None:
    _starter(client, session)
    page = client.post(
        "/wizard/domains", data={"action": "check", "name": "foo..com"}, follow_redirects=True
    ).get_data(as_text=True)
    assert re.search(
        r'name="name" value="foo..com"[^>]*>\s*<small class="error" id="name-error" role="alert">'
        r"foo..com is not a valid domain name",
        page,
    )
    assert "subdomain" not in page
    # The next visit is clean again: the message was for that answer only.
    assert 'id="name-error"' not in client.get("/wizard/domains").get_data(as_text=True)


def _at_mailboxes(client: Any, session: Session) -> list[str]:
    _starter(client, session)
    client.post("/wizard/domains", data={"action": "search", "brand": "acmewidgets"})
    page = client.get("/wizard/domains").get_data(as_text=True)
    names = re.findall(r'value="add"><input type="hidden" name="name" value="([^"]+)"', page)[:3]
    for name in names:
        client.post("/wizard/domains", data={"action": "add", "name": name})
    assert client.post("/wizard/domains", data={"action": "continue"}).status_code == 302
    return names


@pytest.mark.usefixtures("student")
def test_the_live_preview_answers_with_the_steps_own_rules(client: Any, session: Session) -> None:
    chosen = _at_mailboxes(client, session)
    ask = {
        "first_name": "Zoë",
        "last_name": "O'Neil",
        "pattern_0": "{first}",
        "pattern_1": "{f}{last}",
    }
    data = client.get("/wizard/mailboxes/preview.json", query_string=ask).json
    assert data["rows"] == [
        {"domain": name, "addresses": [f"zoe@{name}", f"zoneil@{name}"]} for name in chosen
    ]
    assert data["reason"] == "" and data["sender"] == "Zoë O'Neil"
    assert data["examples"]["{first}.{last}"] == "zoe.oneil"
    # The same refusals as the step, in the same words; nothing is saved by asking.
    clash = client.get(
        "/wizard/mailboxes/preview.json", query_string={**ask, "pattern_1": "{first}"}
    ).json
    assert clash["rows"] == [] and clash["reason"].startswith("Two patterns give the same address")
    empty = client.get("/wizard/mailboxes/preview.json", query_string={"first_name": "Zoë"}).json
    assert empty["reason"] == "Enter your first and last name to see the addresses."
    session.expire_all()
    assert session.scalars(select(WizardDraft.data)).one()["first_name"] == ""


@pytest.mark.usefixtures("student")
def test_the_live_preview_is_only_for_a_student_at_the_mailbox_step(
    client: Any, session: Session
) -> None:
    assert client.get("/wizard/mailboxes/preview.json").status_code == 404  # no package yet
    _starter(client, session)
    assert client.get("/wizard/mailboxes/preview.json").status_code == 404  # no domains yet


@pytest.mark.usefixtures("student")
def test_after_a_refused_post_with_both_names_the_preview_says_why(
    client: Any, session: Session
) -> None:
    _at_mailboxes(client, session)
    response = client.post(
        "/wizard/mailboxes",
        data={
            "first_name": "Tim3",
            "last_name": "Keen",
            "pattern_0": "{first}",
            "pattern_1": "{last}",
            "action": "preview",
        },
    )
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    reason = re.search(r'<p class="muted" id="preview-reason">([^<]*)</p>', page)  # shown
    assert reason is not None
    assert reason.group(1).startswith("First name may contain letters")
    assert "Enter your" not in page
    # Names fine: the preview follows what was typed, not the draft's older (empty) choice.
    page = client.post(
        "/wizard/mailboxes",
        data={
            "first_name": "Tim",
            "last_name": "Keen",
            "pattern_0": "{first}",
            "pattern_1": "{last}",
            "action": "preview",
        },
    ).get_data(as_text=True)
    assert "tim@" in page and "keen@" in page and "sending as Tim Keen." in page


@pytest.mark.parametrize(
    "status,says,lands",
    [
        ("provisioning", "setup has started", "/progress"),
        ("active", "everything is set up", "/dashboard"),
    ],
)
def test_the_way_back_from_stripe_says_where_the_order_stands(
    client: Any, student: Any, session: Session, status: str, says: str, lands: str
) -> None:
    # Reopened later from the history: the order has moved on since the payment.
    make_provision(session, student, status=status, stripe_checkout_session_id="cs_test_gone")
    session.commit()
    response = client.get("/wizard/success?session_id=cs_test_gone", follow_redirects=True)
    page = response.get_data(as_text=True)
    assert response.request.path == lands
    assert says in page
    if status == "active":
        assert "setup has started" not in page


def test_a_setup_price_sharing_the_tiers_product_gets_its_own_at_the_next_edit(
    app: Flask, session: Session, portal_sandbox: Any
) -> None:
    # Prices made before each fee had a product would both read "monthly fee" once renamed.
    tier = tiers(session)["starter"]
    with app.test_request_context():
        billing.ensure_tier_prices(tier)
        key = {"Authorization": "Bearer sk_test_sandbox"}
        shared = httpx.post(
            f"{portal_sandbox.stripe_url}/v1/prices",
            data={"product": tier.stripe_product_id, "currency": "usd", "unit_amount": 9700},
            headers=key,
        ).json()["id"]
        tier.stripe_setup_price_id = shared
        assert billing.ensure_tier_prices(tier) == [shared]
    setup = httpx.get(
        f"{portal_sandbox.stripe_url}/v1/prices/{tier.stripe_setup_price_id}", headers=key
    ).json()
    product = httpx.get(f"{portal_sandbox.stripe_url}/v1/products/{setup['product']}", headers=key)
    assert setup["product"] != tier.stripe_product_id and setup["unit_amount"] == 9700
    assert product.json()["name"] == "Outbound infrastructure, Starter package: one-time setup fee"


def test_the_students_own_domains_are_marked_yours_not_in_the_colour_of_taken(
    client: Any, student: Any, session: Session
) -> None:
    owned = ["getacmewidgets.com", "tryacmewidgets.com", "useacmewidgets.com"]
    make_provision(session, student, status="active", domains=owned)
    session.commit()
    growth = session.scalars(select(Tier.id).where(Tier.slug == "growth")).one()
    assert client.post("/upgrade", data={"tier_id": growth}).status_code == 302
    client.post("/upgrade/domains", data={"action": "search", "brand": "acmewidgets"})
    page = client.get("/upgrade/domains").get_data(as_text=True)
    row = page.split('<span class="domain-name">getacmewidgets.com</span>', 1)[1].split("</li>")[0]
    assert '<span class="badge badge-brand">Yours</span>' in row
    assert "badge-red" not in row
