"""ZapmailClient forwarding, DNS records and health score: canned bodies, then the sandbox."""

from __future__ import annotations

import httpx
import pytest

from clients.zapmail import ZapmailBadRequestError
from clients.zapmail import ZapmailClient
from clients.zapmail import ZapmailNotFoundError
from clients.zapmail import ZapmailResponseValidationError
from clients.zapmail import ZapmailServerError

KEY = "zm-key-0123456789abcdef"
DNS = {
    "status": 200,
    "message": "ok",
    "data": {
        "records": [
            {"id": 7, "recordType": "mx", "host": "@", "value": "smtp.google.com", "priority": 1},
            {"id": "a1", "recordType": "TXT", "host": "_dmarc", "value": "v=DMARC1; p=none"},
        ],
        "disabledRecords": [],
    },
}


@pytest.fixture
def zm(fake):
    with ZapmailClient(KEY, base_url="https://zm.test/api", transport=fake.transport) as client:
        yield client


def test_set_forwarding_sends_every_selector_key_in_one_call(zm, fake, reply):
    fake.on("POST", "/v2/domains/forwarding", reply(200, {"status": 200, "message": "done"}))
    assert zm.for_workspace("ws-1").set_forwarding(["d1", 2], "https://site.test") == "done"
    assert fake.body() == {
        "domainIds": ["d1", "2"],
        "forwardTo": "https://site.test",
        "contains": "",
        "tagIds": [],
    }
    assert fake.last().headers["x-workspace-key"] == "ws-1"
    with pytest.raises(ValueError, match="domain_ids"):
        zm.set_forwarding([], "https://site.test")  # empty ids with empty filters = every domain
    with pytest.raises(ValueError, match="forward_to"):
        zm.set_forwarding(["d1"], " ")
    assert len(fake.requests) == 1


def test_remove_forwarding_takes_one_domain_id(zm, fake, reply):
    fake.on("POST", "/v2/domains/remove-forwarding", reply(200, {"status": 200, "message": "ok"}))
    zm.remove_forwarding("d9")
    assert fake.body() == {"domainId": "d9"}


def test_dns_records_read_both_documented_list_names(zm, fake, reply):
    fake.on("GET", "/v2/dns/", reply(200, DNS))
    found = zm.get_dns_records("d1")
    assert fake.last().url.path == "/api/v2/dns/" and fake.last().url.params["id"] == "d1"
    assert [(r.id, r.record_type, r.host, r.priority) for r in found.records] == [
        ("7", "MX", "@", 1),
        ("a1", "TXT", "_dmarc", None),
    ]
    other = {"data": {"domainDnsRecords": DNS["data"]["records"][:1]}}
    fake.on("GET", "/v2/dns/", reply(200, other))
    assert [r.value for r in zm.get_dns_records("d1").records] == ["smtp.google.com"]


def test_a_dns_answer_without_records_is_unreadable_not_empty(zm, fake, reply):
    # A 200 error body must never read as "this domain has no records" (that would be drift).
    fake.on("GET", "/v2/dns/", reply(200, {"status": 500, "message": "upstream"}))
    with pytest.raises(ZapmailResponseValidationError):
        zm.get_dns_records("d1")


def test_health_score_and_errors_are_typed(zm, fake, reply):
    fake.on(
        "GET",
        "/v2/domains/health-score",
        reply(200, {"data": {"domainId": "d1", "score": "27", "status": "CRITICAL"}}),
        reply(404, {"status": 404, "message": "Domain d2 not found", "errorId": "e"}),
        reply(503, {"status": 503, "message": "busy", "errorId": "e"}),
    )
    score = zm.get_health_score("d1")
    assert (score.score, score.status) == (27, "CRITICAL")
    assert fake.last().url.params["domainId"] == "d1"
    with pytest.raises(ZapmailNotFoundError):
        zm.get_health_score("d2")
    with pytest.raises(ZapmailServerError) as caught:
        zm.get_health_score("d3")
    assert caught.value.retryable


def test_domain_rows_carry_the_forwarding_target(zm, fake, canned, reply):
    page = canned("zapmail", "domains_page1")
    page["data"]["domains"][0]["forwardTo"] = "https://site.test"
    fake.on("GET", "/v2/domains", reply(200, page))
    first = next(zm.iter_domains())
    assert first.forward_to == "https://site.test"


# Contract: the same calls against the sandbox over real HTTP.

TIMEOUT = httpx.Timeout(10.0, connect=2.0)
BILLING = {
    "first_name": "Ada",
    "last_name": "Lovelace",
    "address_line_one": "1 Engine Way",
    "city": "London",
    "country": "GB",
    "postal_code": "N1 1AA",
}


def test_contract_forwarding_dns_and_score_against_the_sandbox(sb):
    sb.configure(rate_limits_enabled=False)  # the limits have their own contract test
    with ZapmailClient("sandbox-zapmail-key", base_url=sb.zapmail_url, timeout=TIMEOUT) as root:
        ws = root.create_workspace("dns-contract", BILLING)
        client = root.for_workspace(ws.id)
        names = [
            r.domain_name
            for r in client.check_availability([f"dnscontract{i}.com" for i in range(10)])
            if r.available
        ][:2]
        client.buy_domains(names)
        sb.advance(901)
        ids = {d.domain: d.id for d in client.list_domains()}
        client.set_dmarc(list(ids.values()), "rua@ops.test")

        client.set_forwarding(list(ids.values()), "https://student.example/")
        assert {d.forward_to for d in client.list_domains()} == {"https://student.example/"}
        client.remove_forwarding(ids[names[0]])
        assert {d.domain: d.forward_to for d in client.list_domains()} == {
            names[0]: None,
            names[1]: "https://student.example/",
        }

        records = {
            (r.record_type, r.host): r.value for r in client.get_dns_records(ids[names[0]]).records
        }
        assert records[("TXT", "_dmarc")] == "v=DMARC1; p=none; rua=mailto:rua@ops.test"
        score = client.get_health_score(ids[names[0]])
        assert score.status == "HEALTHY" and score.score is not None and score.score >= 88

        with pytest.raises(ZapmailBadRequestError):
            client.set_forwarding([ids[names[0]]], "not a url")
        with pytest.raises(ZapmailNotFoundError):
            root.get_dns_records(ids[names[0]])  # the primary workspace does not hold it
