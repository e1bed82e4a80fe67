"""Zapmail simulator: forwarding, DNS records that drift, health scores that can be set."""

from __future__ import annotations

import httpx
import pytest

from tests.sandbox.conftest import free_names


def records(zm: httpx.Client, dom: dict, name: str, path: str = "/v2/dns/") -> dict[tuple, str]:
    resp = zm.get(path, params={"id": dom["ids"][name]}, headers=dom["headers"])
    assert resp.status_code == 200, resp.text
    return {(r["recordType"], r["host"]): r["value"] for r in resp.json()["data"]["records"]}


def health(zm: httpx.Client, dom: dict, name: str) -> dict:
    resp = zm.get(
        "/v2/domains/health-score", params={"domainId": dom["ids"][name]}, headers=dom["headers"]
    )
    assert resp.status_code == 200, resp.text
    return resp.json()["data"]


def set_dmarc(zm: httpx.Client, dom: dict, name: str) -> None:
    body = {"domainIds": [dom["ids"][name]], "email": "rua@ops.test"}
    body.update(contains="", status=[], tagIds=[])
    assert zm.post("/v2/domains/dmarc", json=body, headers=dom["headers"]).status_code == 200


def forward(zm: httpx.Client, dom: dict, names: list[str], target: str) -> httpx.Response:
    body = {
        "domainIds": [dom["ids"][n] for n in names],
        "forwardTo": target,
        "contains": "",
        "tagIds": [],
    }
    return zm.post("/v2/domains/forwarding", json=body, headers=dom["headers"])


def test_forwarding_is_set_listed_visited_and_removed_with_ledger_entries(sim, zm, active_domain):
    dom = active_domain(2, stem="fwd")
    first, second = dom["names"]

    resp = forward(zm, dom, [first, second], "https://student.example/")
    assert resp.status_code == 200 and resp.json()["data"] is None

    rows = zm.get("/v2/domains", headers=dom["headers"]).json()["data"]["domains"]
    assert {r["domain"]: r["forwardTo"] for r in rows} == {
        first: "https://student.example/",
        second: "https://student.example/",
    }
    assert all(r["forwardToAddedOnReseller"] for r in rows)
    visit = sim.control("GET", "/zapmail/visit", params={"domain": first}).json()
    assert visit == {"domain": first, "status": 301, "location": "https://student.example/"}

    removed = zm.post(
        "/v2/domains/remove-forwarding",
        json={"domainId": dom["ids"][first]},
        headers=dom["headers"],
    )
    assert removed.status_code == 200
    again = zm.post(
        "/v2/domains/remove-forwarding",
        json={"domainId": dom["ids"][first]},
        headers=dom["headers"],
    )
    assert again.status_code == 200  # nothing left to remove: a no-op, not an error
    assert sim.control("GET", "/zapmail/visit", params={"domain": first}).json()["status"] == 404

    sets = sim.ledger(vendor="zapmail", kind="domain_forwarding_set")
    assert sorted(e["item"] for e in sets) == sorted([first, second])
    assert {e["forward_to"] for e in sets} == {"https://student.example/"}
    removals = sim.ledger(vendor="zapmail", kind="domain_forwarding_removed")
    assert [(e["item"], e["forward_to"]) for e in removals] == [(first, "https://student.example/")]


@pytest.mark.parametrize("target", ["ftp://student.example", "student.example", "https://", ""])
def test_forwarding_refuses_what_is_not_a_web_address(zm, active_domain, target):
    dom = active_domain(1, stem="badurl")
    resp = forward(zm, dom, dom["names"], target)
    assert resp.status_code == 400
    assert "forwardTo" in resp.json()["message"]


def test_forwarding_refuses_pending_and_foreign_domains(sim, zm, workspace, active_domain):
    ws = workspace("pending-ws")
    name = free_names(zm, 1, stem="pend")[0]
    body = {
        "domains": [{"domainName": name, "years": 1}],
        "useWallet": True,
        "enableDnsShield": False,
    }
    assert zm.post("/v2/domains/buy", json=body, headers={"x-workspace-key": ws}).status_code == 200
    row = zm.get("/v2/domains", headers={"x-workspace-key": ws}).json()["data"]["domains"][0]
    pending = {"ids": {name: row["id"]}, "headers": {"x-workspace-key": ws}}
    resp = forward(zm, pending, [name], "https://student.example")
    assert resp.status_code == 400 and "not active" in resp.json()["message"]
    assert records(zm, pending, name) == {}  # the zone exists once the domain is live
    assert health(zm, pending, name) == {
        "domainId": row["id"],
        "domain": name,
        "score": None,
        "status": "PENDING",
    }

    other = active_domain(1, stem="other")
    foreign = {"ids": {name: row["id"]}, "headers": other["headers"]}
    assert forward(zm, foreign, [name], "https://student.example").status_code == 404
    assert not sim.ledger(vendor="zapmail", kind="domain_forwarding_set")


def test_dns_records_follow_dmarc_and_drift_through_the_control_plane(sim, zm, active_domain):
    dom = active_domain(1, stem="dnsrec")
    name = dom["names"][0]
    found = records(zm, dom, name)
    assert found[("MX", "@")] == "smtp.google.com"
    assert found[("TXT", "@")] == "v=spf1 include:_spf.google.com ~all"
    assert found[("TXT", "google._domainkey")].startswith("v=DKIM1; k=rsa; p=")
    assert ("TXT", "_dmarc") not in found
    assert records(zm, dom, name, path="/v2/dns") == found  # with or without the slash

    set_dmarc(zm, dom, name)
    assert records(zm, dom, name)[("TXT", "_dmarc")] == "v=DMARC1; p=none; rua=mailto:rua@ops.test"

    deleted = sim.control(
        "POST",
        "/zapmail/dns",
        json={"domain": name, "recordType": "txt", "host": "_dmarc", "value": None},
    )
    assert deleted.status_code == 200
    edited = sim.control(
        "POST",
        "/zapmail/dns",
        json={"domain": name, "recordType": "TXT", "host": "@", "value": "v=spf1 -all"},
    )
    assert edited.status_code == 200
    now = records(zm, dom, name)
    assert ("TXT", "_dmarc") not in now and now[("TXT", "@")] == "v=spf1 -all"
    state = sim.control("GET", "/zapmail/state").json()
    assert len(state["domains"][0]["dnsDrift"]) == 2

    sim.control("POST", "/zapmail/dns", json={"domain": name, "restore": True})
    assert records(zm, dom, name)[("TXT", "_dmarc")].endswith("rua=mailto:rua@ops.test")


def test_health_score_follows_records_and_can_be_pinned(sim, zm, active_domain):
    dom = active_domain(1, stem="score")
    name = dom["names"][0]
    set_dmarc(zm, dom, name)
    healthy = health(zm, dom, name)
    assert 88 <= healthy["score"] <= 100 and healthy["status"] == "HEALTHY"

    sim.control(
        "POST",
        "/zapmail/dns",
        json={"domain": name, "recordType": "MX", "host": "@", "value": None},
    )
    drifted = health(zm, dom, name)
    assert drifted["score"] == healthy["score"] - 35 and drifted["status"] == "WARNING"

    pinned = sim.control("POST", "/zapmail/health-score", json={"domain": name, "score": 22})
    assert pinned.json() == {"domain": name, "score": 22}
    assert health(zm, dom, name)["status"] == "CRITICAL"
    sim.control("POST", "/zapmail/health-score", json={"domain": name, "score": None})
    assert health(zm, dom, name)["score"] == drifted["score"]

    routes = sim.stats()["vendors"]["zapmail"]["routes"]
    assert routes["GET /v2/domains/health-score"] == {"200": 4}


def test_dns_and_score_refuse_missing_or_unknown_ids(zm, active_domain):
    dom = active_domain(1, stem="ids")
    assert zm.get("/v2/dns/", headers=dom["headers"]).status_code == 400
    assert zm.get("/v2/dns/", params={"id": "nope"}, headers=dom["headers"]).status_code == 404
    assert zm.get("/v2/domains/health-score", headers=dom["headers"]).status_code == 400
    resp = zm.get("/v2/domains/health-score", params={"domainId": "nope"}, headers=dom["headers"])
    assert resp.status_code == 404 and resp.json()["status"] == 404


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        (
            "/zapmail/dns",
            {"domain": "nobody.com", "recordType": "MX", "host": "@", "value": None},
            404,
        ),
        ("/zapmail/dns", {"domain": "{name}", "recordType": "SRV", "host": "@", "value": "x"}, 400),
        ("/zapmail/dns", {"domain": "{name}", "host": "@"}, 400),
        ("/zapmail/dns", {"domain": "{name}", "recordType": "TXT", "host": "@", "value": 5}, 400),
        ("/zapmail/health-score", {"domain": "{name}", "score": 101}, 400),
        ("/zapmail/health-score", {"domain": "{name}", "score": True}, 400),
        ("/zapmail/health-score", {"domain": "nobody.com", "score": 10}, 404),
    ],
)
def test_control_plane_validates_dns_and_score_requests(sim, active_domain, path, body, status):
    name = active_domain(1, stem="ctl")["names"][0]
    filled = {k: (v.format(name=name) if isinstance(v, str) else v) for k, v in body.items()}
    resp = sim.control("POST", path, json=filled)
    assert resp.status_code == status
    assert resp.json()["error"]
