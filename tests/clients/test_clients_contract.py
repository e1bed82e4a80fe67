"""Contract tests: the real clients against the sandbox over real HTTP on loopback.

Covers auth rejection, Zapmail's rate limit, injected faults as typed errors, a paid call whose
response is lost, the provisioning lifecycle across Zapmail, PlusVibe and HeyReach, and Stripe.
"""

from __future__ import annotations

from types import SimpleNamespace

import httpx
import pytest
from pydantic import SecretStr

from clients import errors as generic
from clients.heyreach import HeyReachAuthenticationError
from clients.heyreach import HeyReachClient
from clients.plusvibe import PlusVibeAuthenticationError
from clients.plusvibe import PlusVibeClient
from clients.plusvibe import WarmupSettings
from clients.stripe import make_stripe_client
from clients.zapmail import MailboxSpec
from clients.zapmail import ZapmailAuthenticationError
from clients.zapmail import ZapmailClient
from clients.zapmail import ZapmailRateLimitError
from clients.zapmail import ZapmailServerError
from clients.zapmail import ZapmailTimeoutError

ZAPMAIL_KEY = "sandbox-zapmail-key"
PLUSVIBE_KEY = "sandbox-plusvibe-key"
HEYREACH_KEY = "sandbox-heyreach-key"
STRIPE_KEY = "sk_test_sandbox"
TIMEOUT = httpx.Timeout(10.0, connect=2.0)
BILLING = {
    "first_name": "Ada",
    "last_name": "Lovelace",
    "company": "Analytical Ltd",
    "address_line_one": "1 Engine Way",
    "city": "London",
    "state": "London",
    "country": "GB",
    "postal_code": "N1 1AA",
    "phone_cc": "+44",
    "phone": "2079460000",
}


@pytest.fixture
def zm(sb):
    with ZapmailClient(ZAPMAIL_KEY, base_url=sb.zapmail_url, timeout=TIMEOUT) as client:
        yield client


@pytest.fixture
def pv(sb):
    with PlusVibeClient(PLUSVIBE_KEY, base_url=sb.plusvibe_url, timeout=TIMEOUT) as client:
        yield client


@pytest.fixture
def hr(sb):
    with HeyReachClient(HEYREACH_KEY, base_url=sb.heyreach_url, timeout=TIMEOUT) as client:
        yield client


def _workspace(zm: ZapmailClient, name: str = "student-42") -> ZapmailClient:
    return zm.for_workspace(zm.create_workspace(name, BILLING).id)


def _available(zm: ZapmailClient, count: int) -> list[str]:
    rows = zm.check_availability([f"acmeflow{i}.com" for i in range(12)])
    names = [row.domain_name for row in rows if row.available]
    assert len(names) >= count, rows
    return names[:count]


def _without_auth_header(client, header: str):
    client._http._client.headers.pop(header)
    return client


def test_contract_auth_is_rejected_without_or_with_a_wrong_key(sb):
    cases = [
        (ZapmailClient, sb.zapmail_url, "x-auth-zapmail", ZapmailAuthenticationError,
         lambda c: c.get_wallet_balance()),
        (PlusVibeClient, sb.plusvibe_url, "x-api-key", PlusVibeAuthenticationError,
         lambda c: c.list_workspaces()),
        (HeyReachClient, sb.heyreach_url, "X-API-KEY", HeyReachAuthenticationError,
         lambda c: c.find_list_by_name("x")),
    ]  # fmt: skip
    for cls, url, header, error, call in cases:
        for client in (
            cls("wrong-key", base_url=url, timeout=TIMEOUT),
            _without_auth_header(cls("wrong-key", base_url=url, timeout=TIMEOUT), header),
        ):
            with client, pytest.raises(error) as info:
                call(client)
            assert isinstance(info.value, generic.AuthenticationError)
            assert not info.value.retryable
            assert "wrong-key" not in str(info.value)
    with HeyReachClient("wrong-key", base_url=sb.heyreach_url, timeout=TIMEOUT) as bad:
        assert bad.check_api_key() is False
    with HeyReachClient(HEYREACH_KEY, base_url=sb.heyreach_url, timeout=TIMEOUT) as good:
        assert good.check_api_key() is True


def test_contract_zapmail_general_rate_limit_answers_429_with_retry_after(sb, zm):
    sb.configure(zapmail_per_second=2, zapmail_per_minute=200)
    with pytest.raises(ZapmailRateLimitError) as info:
        for _ in range(5):
            zm.get_wallet_balance()
    exc = info.value
    assert exc.retryable and exc.status == 429
    assert exc.retry_after is not None and exc.retry_after >= 0


def test_contract_zapmail_availability_bucket_is_separate(sb, zm):
    sb.configure(zapmail_checks_per_30min=1)
    zm.check_availability(["acmeflow1.com"])
    with pytest.raises(ZapmailRateLimitError) as info:
        zm.check_availability(["acmeflow2.com"])
    assert info.value.retry_after is not None and info.value.retry_after > 0
    zm.get_wallet_balance()  # the general bucket still has room


def test_contract_injected_503_is_a_retryable_server_error(sb, zm):
    sb.add_fault(
        vendor="zapmail", method="GET", path="/v2/domains", kind="status", status=503, times=1
    )
    with pytest.raises(ZapmailServerError) as info:
        zm.list_domains()
    assert info.value.retryable and info.value.status == 503
    assert zm.list_domains() == []  # the fault was used up


def test_contract_injected_rate_limit_fault_carries_retry_after(sb, pv, hr):
    sb.add_fault(vendor="plusvibe", path="/authenticate", kind="rate_limit", retry_after=7)
    sb.add_fault(vendor="heyreach", path="/list/GetAll", kind="rate_limit", retry_after=3)
    with pytest.raises(generic.RateLimitError) as pv_info:
        pv.list_workspaces()
    with pytest.raises(generic.RateLimitError) as hr_info:
        hr.find_list_by_name("x")
    assert pv_info.value.retry_after == 7.0 and hr_info.value.retry_after == 3.0


def test_contract_lost_buy_response_is_a_timeout_with_the_charge_on_the_ledger(sb):
    sb.configure(rate_limits_enabled=False)
    with ZapmailClient(
        ZAPMAIL_KEY, base_url=sb.zapmail_url, timeout=httpx.Timeout(0.5, connect=2.0)
    ) as zm:
        zw = _workspace(zm)
        name = _available(zw, 1)[0]
        sb.add_fault(
            vendor="zapmail", method="POST", path="/v2/domains/buy", kind="drop_response", hold_s=5
        )
        with pytest.raises(ZapmailTimeoutError) as info:
            zw.buy_domains([name])
        exc = info.value
        assert isinstance(exc, generic.VendorTimeoutError)
        assert exc.outcome_unknown and not exc.retryable
        charges = sb.ledger(vendor="zapmail", kind="domain_purchase")
        assert [c["item"] for c in charges] == [name]
        # Reconciling by listing shows the domain was bought despite the timeout.
        assert zw.find_domain(name) is not None


def test_contract_provisioning_lifecycle(sb, zm, pv, hr):
    sb.configure(rate_limits_enabled=False)
    config = sb.configure()

    # Zapmail workspace, billing, availability, wallet, purchase.
    zw = _workspace(zm)
    assert zm.find_workspace_by_name("student-42").id == zw.workspace_id
    zw.upsert_billing_details(BILLING)
    names = _available(zw, 2)
    prices = {row.domain_name: row.domain_price for row in zw.check_availability(names)}
    balance = zw.get_wallet_balance()
    assert balance.wallet_balance is not None and balance.wallet_balance >= sum(prices.values())
    result = zw.buy_domains(names)
    assert result.invoice_link
    charges = sb.ledger(vendor="zapmail", kind="domain_purchase")
    assert sorted(c["item"] for c in charges) == sorted(names)
    assert zw.get_wallet_balance().wallet_balance == balance.wallet_balance - sum(prices.values())

    # Domains become ACTIVE; DMARC.
    assert {zw.find_domain(n).status for n in names} == {"PENDING"}
    sb.advance(config["domain_activation_s"] + 1)
    domains = {n: zw.find_domain(n) for n in names}
    assert {d.status for d in domains.values()} == {"ACTIVE"}
    zw.set_dmarc([d.id for d in domains.values()], "dmarc@acmeflow.com")
    assert {zw.find_domain(n).dmarc_email for n in names} == {"dmarc@acmeflow.com"}
    zw.set_auto_renew([d.id for d in domains.values()], True)

    # Mailboxes keyed by domain id; IN_PROGRESS then ACTIVE.
    zw.create_mailboxes(
        {
            d.id: [
                MailboxSpec(
                    first_name="Tim", last_name="Keen", mailbox_username="tim", domain_name=n
                ),
                MailboxSpec(
                    first_name="Ann", last_name="Lee", mailbox_username="ann.lee", domain_name=n
                ),
            ]
            for n, d in domains.items()
        }
    )
    boxes = list(zw.iter_mailboxes())
    assert len(boxes) == 4 and {b.status for b in boxes} == {"IN_PROGRESS"}
    assert all(isinstance(b.app_password, SecretStr) for b in boxes)
    assert sorted(b.address for b in zw.iter_mailboxes(domain=names[0])) == [
        f"ann.lee@{names[0]}",
        f"tim@{names[0]}",
    ]
    sb.advance(config["mailbox_activation_s"] + 1)
    boxes = list(zw.iter_mailboxes(page_size=1))  # one domain per page: two pages
    assert {b.status for b in boxes} == {"ACTIVE"}
    assert zw.get_mailbox_quota().total_assigned_mailboxes == 4

    # PlusVibe workspace and client login; the operator workspace comes from /authenticate.
    pw = pv.create_workspace("student-42")
    assert pv.find_workspace_by_name("student-42").id == pw.id
    login = pv.create_client(
        email="student42@example.com",
        first_name="Stu",
        last_name="Dent",
        business_name="Acme Flow",
        workspace_ids=[pw.id],
    )
    assert login.password is not None
    assert pv.find_client_by_email("student42@example.com").id == login.client_id

    # Zapmail exports the mailboxes into PlusVibe through the PIPL login.
    zw.add_third_party_account(login.email, login.password, app="PIPL")
    account = zw.find_third_party_account(login.email)
    assert account is not None
    export_id = zw.export_mailboxes([b.id for b in boxes], third_party_account_id=account.id)
    assert export_id
    assert not zw.get_export_status(export_id).is_completed
    assert list(pv.iter_accounts(pw.id)) == []
    sb.advance(config["export_delay_s"] + 1)
    assert zw.get_export_status(export_id).is_completed
    accounts = list(pv.iter_accounts(pw.id, page_size=3))
    assert sorted(a.email for a in accounts) == sorted(b.address for b in boxes)
    assert not any(a.warmup_active for a in accounts)  # exported boxes arrive with warmup off

    # Warmup settings and warmup on.
    ids = [a.id for a in accounts]
    pv.bulk_update_accounts(
        pw.id,
        ids,
        WarmupSettings(
            max_daily_limit=30,
            initial_daily_limit=2,
            pace_increment=2,
            slow_rampup=True,
            randomize=True,
            randomize_percent=20,
            reply_rate_percent=30,
            daily_limit=30,
            interval_minutes=5,
        ),
    )
    update = pv.set_warmup_status(pw.id, ids, True)
    assert update.updated_count == 4
    accounts = pv.list_accounts(pw.id)
    assert all(a.warmup_active for a in accounts)
    assert {a.payload.warmup.reply_rate for a in accounts} == {30}  # written 0.3, read as percent

    # HeyReach list: create, find by name, add leads in batches, count.
    created = hr.create_list("student-42 leads")
    assert hr.find_list_by_name("student-42 leads").id == created.id
    leads = [
        {"profile_url": f"https://www.linkedin.com/in/lead-{i}", "first_name": f"L{i}"}
        for i in range(150)
    ]
    added = hr.add_leads(created.id, leads)
    assert added.batches == 2 and added.total == 150
    assert hr.get_lead_count(created.id) == 150
    assert len(list(hr.iter_leads(created.id))) == 150
    assert hr.get_list(created.id).id == created.id


def test_contract_stripe_client_creates_a_product_and_a_price(sb):
    settings = SimpleNamespace(
        stripe_api_key=SecretStr(STRIPE_KEY),
        stripe_api_base=sb.stripe_url,
        vendor_timeout_s=10.0,
        vendor_connect_timeout_s=2.0,
    )
    client = make_stripe_client(settings)
    try:
        product = client.v1.products.create({"name": "Starter setup"})
        price = client.v1.prices.create(
            {
                "product": product.id,
                "unit_amount": 9900,
                "currency": "usd",
                "recurring": {"interval": "month"},
            }
        )
        assert product.id.startswith("prod_") and price.id.startswith("price_")
        assert price.product == product.id and price.unit_amount == 9900
    finally:
        client._requestor._client.close()
