"""Unit tests for ZapmailClient over httpx.MockTransport with canned Zapmail bodies."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace

import httpx
import pytest
from pydantic import SecretStr

from clients import errors as generic
from clients.zapmail import BillingDetails
from clients.zapmail import MailboxSpec
from clients.zapmail import ZapmailAuthenticationError
from clients.zapmail import ZapmailBadRequestError
from clients.zapmail import ZapmailClient
from clients.zapmail import ZapmailConnectionError
from clients.zapmail import ZapmailError
from clients.zapmail import ZapmailNotFoundError
from clients.zapmail import ZapmailRateLimitError
from clients.zapmail import ZapmailResponseValidationError
from clients.zapmail import ZapmailServerError
from clients.zapmail import ZapmailTimeoutError

KEY = "zm-key-0123456789abcdef"
BILLING = {
    "first_name": "Ada",
    "last_name": "Lovelace",
    "company": "Analytical Ltd",
    "address_line_one": "1 Engine Way",
    "city": "London",
    "country": "GB",
    "postal_code": "N1 1AA",
}


@pytest.fixture
def zm(fake):
    with ZapmailClient(KEY, base_url="https://zm.test/api", transport=fake.transport) as client:
        yield client


def test_zapmail_sends_auth_and_workspace_headers(zm, fake, canned, reply):
    fake.on("GET", "/v2/wallet/balance", reply(200, canned("zapmail", "wallet_balance")))
    zm.get_wallet_balance()
    assert fake.last().headers["x-auth-zapmail"] == KEY
    assert "x-workspace-key" not in fake.last().headers
    assert fake.last().url.path == "/api/v2/wallet/balance"

    scoped = zm.for_workspace("ws-2")
    scoped.get_wallet_balance()
    assert fake.last().headers["x-workspace-key"] == "ws-2"
    scoped.close()  # a derived client must not close the shared pool
    zm.get_wallet_balance()


def test_zapmail_wallet_balance_is_flat(zm, fake, canned, reply):
    fake.on("GET", "/v2/wallet/balance", reply(200, canned("zapmail", "wallet_balance")))
    balance = zm.get_wallet_balance()
    assert balance.wallet_balance == Decimal("187.5")
    assert balance.auto_recharge_enabled is False


def test_zapmail_wallet_balance_tolerates_an_envelope(zm, fake, reply):
    fake.on(
        "GET", "/v2/wallet/balance", reply(200, {"status": 200, "data": {"walletBalance": "5.25"}})
    )
    assert zm.get_wallet_balance().wallet_balance == Decimal("5.25")


def test_zapmail_workspaces_include_current_and_find_exact_name(zm, fake, canned, reply):
    fake.on("GET", "/v2/workspaces", reply(200, canned("zapmail", "workspaces_page")))
    names = [w.name for w in zm.iter_workspaces()]
    assert names == ["Primary", "student-42", "student-42-old"]
    assert len(fake.requests) == 1  # totalPages 1 stops despite nextPage 2
    found = zm.find_workspace_by_name("student-42")
    assert found is not None and found.id == "ws-2"
    assert fake.last().url.params["contains"] == "student-42"
    assert zm.find_workspace_by_name("student-4") is None


def test_zapmail_create_workspace_sends_billing_details(zm, fake, canned, reply):
    fake.on("POST", "/v2/workspaces", reply(200, canned("zapmail", "workspace_created")))
    workspace = zm.create_workspace("student-42", BILLING)
    assert workspace.id == "ws-new"
    body = fake.body()
    assert body["name"] == "student-42"
    details = body["billingDetails"]
    assert details["firstName"] == "Ada" and details["addressLineOne"] == "1 Engine Way"
    # Lines two and three must be present even when empty.
    assert details["addressLineTwo"] == "" and details["addressLineThree"] == ""
    assert "languagePreference" not in details


def test_zapmail_upsert_billing_details_names_the_workspace(zm, fake, reply):
    fake.on(
        "POST", "/v2/billing", reply(200, {"status": 200, "message": "Billing saved", "data": None})
    )
    assert (
        zm.for_workspace("ws-2").upsert_billing_details(BillingDetails(**BILLING))
        == "Billing saved"
    )
    assert fake.body()["workspaceId"] == "ws-2"
    assert fake.last().headers["x-workspace-key"] == "ws-2"


def test_zapmail_availability_parses_prices(zm, fake, canned, reply):
    fake.on("POST", "/v2/domains/available-bulk", reply(200, canned("zapmail", "available_bulk")))
    rows = zm.check_availability(["tryacme.com", "acme.com", "acme.zz"])
    assert fake.body() == {"domainNames": ["tryacme.com", "acme.com", "acme.zz"]}
    free, taken, odd = rows
    assert free.available and free.domain_price == Decimal("12.99")
    assert free.renew_price == Decimal("20.99")
    assert not taken.available and taken.domain_price == Decimal("0.00")
    assert odd.domain_price is None and odd.renew_price is None  # "NaN"


def test_zapmail_availability_refuses_more_than_20_names_before_calling(zm, fake):
    with pytest.raises(ValueError, match="at most 20"):
        zm.check_availability([f"name{i}.com" for i in range(21)])
    assert fake.requests == []
    assert zm.check_availability([]) == []
    assert fake.requests == []


def test_zapmail_buy_domains_is_one_flat_call(zm, fake, canned, reply):
    fake.on("POST", "/v2/domains/buy", reply(200, canned("zapmail", "buy")))
    result = zm.for_workspace("ws-2").buy_domains(["tryacme.com", "acmehq.com"])
    assert result.message == "Domains purchased"
    assert result.invoice_link and result.invoice_link.startswith("https://invoice.stripe.com/")
    assert len(fake.requests) == 1
    assert fake.body() == {
        "domains": [
            {"domainName": "tryacme.com", "years": 1},
            {"domainName": "acmehq.com", "years": 1},
        ],
        "useWallet": True,
        "enableDnsShield": False,
    }


def test_zapmail_buy_timeout_is_outcome_unknown_and_not_retryable(zm, fake):
    fake.on("POST", "/v2/domains/buy", httpx.ReadTimeout("timed out"))
    with pytest.raises(ZapmailTimeoutError) as info:
        zm.buy_domains(["tryacme.com"])
    exc = info.value
    assert isinstance(exc, generic.VendorTimeoutError)
    assert exc.outcome_unknown is True
    assert exc.retryable is False
    assert len(fake.requests) == 1  # never retried by the client
    assert "outcome unknown" in str(exc)


def test_zapmail_buy_5xx_is_outcome_unknown(zm, fake, reply):
    fake.on("POST", "/v2/domains/buy", reply(502, {"status": 502, "message": "Bad gateway"}))
    with pytest.raises(ZapmailServerError) as info:
        zm.buy_domains(["tryacme.com"])
    assert info.value.outcome_unknown and not info.value.retryable


def test_zapmail_buy_connect_error_never_reached_the_vendor(zm, fake):
    fake.on("POST", "/v2/domains/buy", httpx.ConnectError("connection refused"))
    with pytest.raises(ZapmailConnectionError) as info:
        zm.buy_domains(["tryacme.com"])
    assert info.value.outcome_unknown is False
    assert info.value.retryable is True


def test_zapmail_buy_rate_limit_is_an_unknown_outcome(zm, fake, reply):
    # A vendor may answer 429 after performing the purchase: nothing proves it refused first.
    fake.on("POST", "/v2/domains/buy", reply(429, {"status": 429, "message": "Too many requests"}))
    with pytest.raises(ZapmailRateLimitError) as info:
        zm.buy_domains(["tryacme.com"])
    assert info.value.outcome_unknown and not info.value.retryable
    assert len(fake.requests) == 1


@pytest.mark.parametrize("status", [400, 402, 409, 422, 301, 302])
def test_zapmail_buy_any_other_status_is_an_unknown_outcome(zm, fake, reply, status):
    fake.on("POST", "/v2/domains/buy", reply(status, {"status": status, "message": "Nope"}))
    with pytest.raises(ZapmailError) as info:
        zm.buy_domains(["tryacme.com"])
    assert info.value.outcome_unknown and not info.value.retryable
    assert info.value.status == status


@pytest.mark.parametrize("body", ["<html>garbled", "[1, 2]", '"Domains purchased"'])
def test_zapmail_buy_2xx_that_cannot_be_read_is_an_unknown_outcome(zm, fake, reply, body):
    fake.on("POST", "/v2/domains/buy", reply(200, body))
    with pytest.raises(ZapmailError) as info:
        zm.buy_domains(["tryacme.com"])
    assert info.value.outcome_unknown and not info.value.retryable


def test_zapmail_buy_is_marked_as_spending_for_the_transport(zm, fake, reply):
    from clients._http import SPENDS_MONEY

    fake.on("POST", "/v2/domains/buy", reply(200, {"message": "Domains purchased"}))
    fake.on("GET", "/v2/wallet/balance", reply(200, {"walletBalance": 10}))
    zm.buy_domains(["tryacme.com"])
    zm.get_wallet_balance()
    assert fake.last("/v2/domains/buy").extensions.get(SPENDS_MONEY) is True
    assert not fake.last("/v2/wallet/balance").extensions.get(SPENDS_MONEY)


@pytest.mark.parametrize(
    ("body", "short"),
    [
        ({"message": "Domains purchased", "invoiceLink": "https://i/1"}, False),
        (
            {
                "message": "Insufficient wallet balance. Invoice created for the remaining amount",
                "invoiceLink": "https://i/2",
            },
            True,
        ),
        ({"message": "Payment link generated", "paymentLink": "https://p/3"}, True),
    ],
)
def test_zapmail_buy_short_wallet_answer_is_recognised(zm, fake, reply, body, short):
    fake.on("POST", "/v2/domains/buy", reply(200, body))
    assert zm.buy_domains(["tryacme.com"]).short is short


def test_zapmail_iter_domains_stops_on_total_pages(zm, fake, canned, reply):
    fake.on(
        "GET",
        "/v2/domains",
        reply(200, canned("zapmail", "domains_page1")),
        reply(200, canned("zapmail", "domains_page2")),
        reply(500, {"message": "must not be requested"}),
    )
    domains = list(zm.iter_domains(page_size=2))
    assert [d.name for d in domains] == ["getacme.com", "acme-mail.com", "acme.com"]
    assert [r.url.params["page"] for r in fake.requests] == ["1", "2"]
    assert domains[1].id == "17"  # numeric ids are read as strings
    assert domains[0].assigned_mailboxes_count == 2  # counts arrive as strings


def test_zapmail_iter_domains_stops_on_an_empty_page_without_total(zm, fake, reply):
    page = {"data": {"domains": [{"id": "d", "domain": "a.com"}], "nextPage": 2}}
    empty = {"data": {"domains": [], "nextPage": 3}}
    fake.on("GET", "/v2/domains", reply(200, page), reply(200, empty), reply(500, {}))
    assert [d.name for d in zm.iter_domains()] == ["a.com"]
    assert len(fake.requests) == 2


# A listing proves absence (the purchase protocol, the workspace lookup): a 2xx without its rows
# is an answer we cannot read, never "nothing there". Found by the purchase state machine: a
# 200 carrying an error body on GET /v2/domains made a bought domain look "taken by another".
UNREADABLE_LISTS = [
    {"status": 200, "message": "Injected fault"},
    {"data": {"message": "ok"}},
    {"data": None},
    "null",
    {"message": "ok"},
]


@pytest.mark.parametrize("body", UNREADABLE_LISTS)
@pytest.mark.parametrize(
    ("method", "path", "call"),
    [
        ("GET", "/v2/domains", lambda zm: list(zm.iter_domains())),
        ("GET", "/v2/mailboxes/list", lambda zm: list(zm.iter_mailboxes())),
        ("GET", "/v2/workspaces", lambda zm: zm.list_workspaces()),
        ("POST", "/v2/domains/available-bulk", lambda zm: zm.check_availability(["a.com"])),
    ],
)
def test_zapmail_a_listing_without_its_rows_is_unreadable_not_empty(
    zm, fake, reply, body, method, path, call
):
    fake.on(method, path, reply(200, body))
    with pytest.raises(ZapmailResponseValidationError):
        call(zm)


def test_zapmail_find_domain_matches_exactly(zm, fake, canned, reply):
    fake.on(
        "GET",
        "/v2/domains",
        reply(200, canned("zapmail", "domains_page1")),
        reply(200, canned("zapmail", "domains_page2")),
    )
    found = zm.find_domain("ACME.com")
    assert found is not None and found.id == "d-3"  # not getacme.com
    assert fake.requests[0].url.params["contains"] == "acme.com"


def test_zapmail_find_domain_returns_none_when_only_affixes_match(zm, fake, canned, reply):
    page = canned("zapmail", "domains_page1")
    page["data"]["totalPages"] = 1
    fake.on("GET", "/v2/domains", reply(200, page))
    assert zm.find_domain("acme.com") is None


def test_zapmail_dmarc_sends_every_selector_key(zm, fake, reply):
    fake.on(
        "POST",
        "/v2/domains/dmarc",
        reply(200, {"status": 200, "message": "DMARC updated", "data": None}),
    )
    assert zm.set_dmarc(["d-1", 17], "dmarc@acme.com") == "DMARC updated"
    assert fake.body() == {
        "domainIds": ["d-1", "17"],
        "email": "dmarc@acme.com",
        "contains": "",
        "status": [],
        "tagIds": [],
    }


def test_zapmail_refuses_empty_id_lists(zm, fake):
    # With empty filters an empty id list could select every domain of the workspace.
    with pytest.raises(ValueError):
        zm.set_dmarc([], "dmarc@acme.com")
    with pytest.raises(ValueError):
        zm.export_mailboxes([], third_party_account_id="tp-1")
    with pytest.raises(ValueError):
        zm.set_auto_renew([], True)
    assert fake.requests == []


def test_zapmail_auto_renew_body(zm, fake, reply):
    fake.on("POST", "/v2/domains/update-auto-renew", reply(200, {"status": 200, "message": "ok"}))
    zm.set_auto_renew(["d-1"], False)
    assert fake.body() == {"domainIds": ["d-1"], "autoRenew": False}


def test_zapmail_create_mailboxes_body_is_keyed_by_domain_id(zm, fake, reply):
    fake.on(
        "POST",
        "/v2/mailboxes",
        reply(202, {"status": 200, "message": "Mailboxes will be assigned shortly", "data": None}),
    )
    message = zm.create_mailboxes(
        {
            "d-1": [
                MailboxSpec(
                    first_name="Tim",
                    last_name="Keen",
                    mailbox_username="tim",
                    domain_name="getacme.com",
                ),
                {
                    "first_name": "Ann",
                    "last_name": "Lee",
                    "mailbox_username": "ann.lee",
                    "domain_name": "getacme.com",
                },
            ],
            17: [
                {
                    "firstName": "Bob",
                    "lastName": "Ray",
                    "mailboxUsername": "bob",
                    "domainName": "acme.com",
                }
            ],
        }
    )
    assert message == "Mailboxes will be assigned shortly"
    assert fake.body() == {
        "d-1": [
            {
                "firstName": "Tim",
                "lastName": "Keen",
                "mailboxUsername": "tim",
                "domainName": "getacme.com",
            },
            {
                "firstName": "Ann",
                "lastName": "Lee",
                "mailboxUsername": "ann.lee",
                "domainName": "getacme.com",
            },
        ],
        "17": [
            {
                "firstName": "Bob",
                "lastName": "Ray",
                "mailboxUsername": "bob",
                "domainName": "acme.com",
            }
        ],
    }


@pytest.mark.parametrize("username", [".tim", "tim_", "-x", ""])
def test_zapmail_mailbox_spec_rejects_bad_usernames(username):
    with pytest.raises(ValueError):
        MailboxSpec(first_name="A", last_name="B", mailbox_username=username, domain_name="a.com")


def test_zapmail_iter_mailboxes_pages_by_domain_and_fills_domain(zm, fake, canned, reply):
    fake.on(
        "GET",
        "/v2/mailboxes/list",
        reply(200, canned("zapmail", "mailboxes_page1")),
        reply(200, canned("zapmail", "mailboxes_page2")),
        reply(500, {}),
    )
    boxes = list(zm.iter_mailboxes())
    assert [b.id for b in boxes] == ["m-1", "m-2", "99"]
    ann = boxes[1]
    assert ann.domain == "getacme.com" and ann.domain_id == "d-1"
    assert ann.address == "ann@getacme.com"
    assert isinstance(ann.app_password, SecretStr)
    assert ann.app_password.get_secret_value() == "APP-PASSWORD-SECRET-2"
    text = repr(boxes) + str(boxes)
    for secret in ("APP-PASSWORD-SECRET", "TOTP-SECRET-XYZ"):
        assert secret not in text


def test_zapmail_iter_mailboxes_domain_filter_is_exact(zm, fake, canned, reply):
    page = canned("zapmail", "mailboxes_page1")
    page["data"]["domains"].append(canned("zapmail", "mailboxes_page2")["data"]["domains"][0])
    page["data"]["totalPages"] = 1
    fake.on("GET", "/v2/mailboxes/list", reply(200, page))
    boxes = list(zm.iter_mailboxes(domain="acme.com"))
    assert [b.email for b in boxes] == ["bob@acme.com"]
    assert fake.last().url.params["contains"] == "acme.com"


def test_zapmail_mailbox_quota(zm, fake, canned, reply):
    fake.on("GET", "/v2/mailboxes/list", reply(200, canned("zapmail", "mailboxes_page1")))
    quota = zm.get_mailbox_quota()
    assert quota.available_mailboxes == 7 and quota.purchased_mailboxes == 10
    assert fake.last().url.params["limit"] == "1"


def test_zapmail_retry_failed_and_scheduled_removal_bodies(zm, fake, reply):
    fake.on("PUT", "/v2/mailboxes/retry-failed", reply(200, {"status": 200, "message": "Retrying"}))
    fake.on(
        "PUT",
        "/v2/mailboxes/scheduled-removal",
        reply(200, {"status": 200, "message": "Scheduled"}),
    )
    assert zm.retry_failed_mailboxes(["d-1"]) == "Retrying"
    assert fake.body("/retry-failed") == {"domainIds": ["d-1"]}
    assert zm.schedule_mailbox_removal(["m-1", 99]) == "Scheduled"
    assert fake.body("/scheduled-removal") == {"mailboxIds": ["m-1", "99"]}


def test_zapmail_third_party_account_flow(zm, fake, canned, reply):
    fake.on(
        "POST",
        "/v2/exports/accounts/third-party",
        reply(200, {"status": 200, "message": "Account added successfully", "data": None}),
    )
    fake.on(
        "GET",
        "/v2/exports/accounts/third-party",
        reply(200, canned("zapmail", "third_party_accounts")),
    )
    assert zm.add_third_party_account("ops@example.com", SecretStr("hunter2-long")) == (
        "Account added successfully"
    )
    assert fake.body() == {"email": "ops@example.com", "password": "hunter2-long", "app": "PIPL"}
    accounts = zm.list_third_party_accounts("PIPL")
    assert [a.id for a in accounts] == ["tp-1", "tp-2"]
    assert fake.last().url.params["app"] == "PIPL"
    found = zm.find_third_party_account("ops@example.COM")
    assert found is not None and found.id == "tp-1" and found.app_name == "PIPL"


def test_zapmail_export_body_and_id(zm, fake, canned, reply):
    fake.on("POST", "/v2/exports/mailboxes", reply(200, canned("zapmail", "export_started")))
    assert zm.export_mailboxes(["m-1", 99], third_party_account_id="tp-2") == "exp-123"
    assert fake.body() == {
        "apps": ["PIPL"],
        "ids": ["m-1", "99"],
        "excludeIds": [],
        "tagIds": [],
        "status": "ACTIVE",
        "contains": "",
        "thirdPartyAccountId": "tp-2",
    }


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"status": 200, "message": "started", "data": None}, None),
        ({"status": 200, "message": "started", "exportId": "e-1"}, "e-1"),
        ({"status": 200, "data": {"id": 42}}, "42"),
        ({"status": 200, "data": "e-2"}, "e-2"),
    ],
)
def test_zapmail_export_id_locations(zm, fake, reply, body, expected):
    fake.on("POST", "/v2/exports/mailboxes", reply(200, body))
    assert zm.export_mailboxes(["m-1"], third_party_account_id="tp") == expected


def test_zapmail_export_status(zm, fake, canned, reply):
    fake.on("GET", "/v2/exports/status", reply(200, canned("zapmail", "export_status")))
    status = zm.for_workspace("ws-2").get_export_status("exp-123")
    assert status.is_completed and not status.is_failed
    assert fake.last().url.params["exportId"] == "exp-123"
    assert fake.last().headers["x-workspace-key"] == "ws-2"


def test_zapmail_404_maps_to_not_found(zm, fake, canned, reply):
    fake.on("GET", "/v2/exports/status", reply(404, canned("zapmail", "error_404")))
    with pytest.raises(ZapmailNotFoundError) as info:
        zm.get_export_status("nope")
    exc = info.value
    assert isinstance(exc, generic.NotFoundError) and isinstance(exc, ZapmailError)
    assert exc.status == 404 and not exc.retryable
    assert exc.request_id == "3f1c2b7e-0000-4000-8000-000000000404"
    assert "Domain not found" in str(exc)


def test_zapmail_429_reads_retry_after(zm, fake, canned, reply):
    fake.on(
        "POST",
        "/v2/domains/available-bulk",
        reply(429, canned("zapmail", "error_429"), **{"Retry-After": "42"}),
    )
    with pytest.raises(ZapmailRateLimitError) as info:
        zm.check_availability(["a.com"])
    exc = info.value
    assert isinstance(exc, generic.RateLimitError)
    assert exc.retryable and exc.retry_after == 42.0 and exc.status == 429
    assert "Too many requests" in str(exc)


def test_zapmail_5xx_is_retryable(zm, fake, reply):
    fake.on("GET", "/v2/domains", reply(503, "<html>Service Unavailable</html>"))
    with pytest.raises(ZapmailServerError) as info:
        zm.list_domains()
    assert info.value.retryable and info.value.status == 503
    assert not info.value.outcome_unknown  # a read has no unknown outcome


def test_zapmail_timeout_is_a_retryable_connection_error(zm, fake):
    fake.on("GET", "/v2/domains", httpx.ConnectTimeout("timed out"))
    with pytest.raises(ZapmailTimeoutError) as info:
        zm.list_domains()
    assert isinstance(info.value, generic.VendorConnectionError)
    assert info.value.retryable


def test_zapmail_401_maps_to_authentication_error(zm, fake, canned, reply):
    fake.on("GET", "/v2/wallet/balance", reply(401, canned("zapmail", "error_401")))
    with pytest.raises(ZapmailAuthenticationError) as info:
        zm.get_wallet_balance()
    assert isinstance(info.value, generic.AuthenticationError) and not info.value.retryable


def test_zapmail_400_maps_to_bad_request(zm, fake, reply):
    fake.on(
        "POST",
        "/v2/domains/buy",
        reply(400, {"status": 400, "message": "No active base plan found"}),
    )
    with pytest.raises(ZapmailBadRequestError) as info:
        zm.buy_domains(["a.com"])
    # On a purchase even a 400 is no proof that nothing was charged: reconcile, never retry.
    assert not info.value.retryable and info.value.outcome_unknown
    assert "No active base plan found" in str(info.value)


def test_zapmail_409_is_retryable(zm, fake, reply):
    fake.on(
        "POST", "/v2/mailboxes", reply(409, {"status": 409, "message": "Provisioning in progress"})
    )
    with pytest.raises(generic.ConflictError) as info:
        zm.create_mailboxes(
            {
                "d": [
                    MailboxSpec(
                        first_name="a", last_name="b", mailbox_username="ab", domain_name="x.com"
                    )
                ]
            }
        )
    assert info.value.retryable


@pytest.mark.parametrize(
    "reply_args",
    [
        (200, "<html>not json</html>"),
        (200, {"status": 200, "data": {"domains": [{"id": "x"}]}}),  # domain name missing
        (200, {"status": 200, "data": {"domains": "nope"}}),
        (200, {"status": 200, "data": None}),
    ],
)
def test_zapmail_malformed_bodies_raise_validation_error(zm, fake, reply, reply_args):
    fake.on("GET", "/v2/domains", reply(*reply_args))
    with pytest.raises(ZapmailResponseValidationError) as info:
        zm.list_domains()
    assert isinstance(info.value, generic.ResponseValidationError)
    assert not info.value.retryable


def test_zapmail_malformed_mailbox_page_does_not_quote_passwords(zm, fake, reply):
    body = {
        "data": {"domains": [{"id": "d", "mailboxes": [{"appPassword": "LEAKY-APP-PASSWORD"}]}]}
    }
    fake.on("GET", "/v2/mailboxes/list", reply(200, body))
    with pytest.raises(ZapmailResponseValidationError) as info:
        list(zm.iter_mailboxes())
    assert "LEAKY-APP-PASSWORD" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_zapmail_from_settings_uses_settings_and_refuses_a_missing_key(fake):
    from core.settings import ConfigurationError

    settings = SimpleNamespace(
        zapmail_api_key=SecretStr(KEY),
        zapmail_base_url="https://zm.test/api",
        vendor_timeout_s=7.0,
        vendor_connect_timeout_s=2.0,
    )
    with ZapmailClient.from_settings(settings, transport=fake.transport) as client:
        assert client._http.timeout == httpx.Timeout(7.0, connect=2.0)
        assert client._http.base_url == "https://zm.test/api"
    settings.zapmail_api_key = None
    with pytest.raises(ConfigurationError, match="APP_ZAPMAIL_API_KEY"):
        ZapmailClient.from_settings(settings)


def test_zapmail_repr_hides_the_key(zm):
    assert KEY not in repr(zm)
    assert "zm.test" in repr(zm)
