"""Zapmail simulator over real HTTP: auth, limits, envelopes, purchases, lifecycles and exports."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer

import httpx
import pytest

from tests.sandbox.conftest import BILLING
from tests.sandbox.conftest import ZAPMAIL_KEY
from tests.sandbox.conftest import free_names


def buy(
    zm: httpx.Client, names: list[str], headers: dict[str, str] | None = None
) -> httpx.Response:
    body = {
        "domains": [{"domainName": n, "years": 1} for n in names],
        "useWallet": True,
        "enableDnsShield": False,
    }
    return zm.post("/v2/domains/buy", json=body, headers=headers or {})


def wallet(zm: httpx.Client) -> float:
    return zm.get("/v2/wallet/balance").json()["walletBalance"]


@pytest.mark.parametrize("headers", [{}, {"x-auth-zapmail": "wrong"}])
def test_zapmail_rejects_missing_or_wrong_key(sim, headers):
    resp = httpx.get(f"{sim.zapmail_url}/v2/wallet/balance", headers=headers)
    assert resp.status_code == 401
    body = resp.json()
    assert body["status"] == 401 and body["message"] and len(body["errorId"]) == 36


def test_zapmail_per_second_limit_answers_429_with_retry_after(sim, zm):
    sim.configure(rate_limits_enabled=True, zapmail_per_second=3)
    codes = [zm.get("/v2/wallet/balance").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    resp = zm.get("/v2/wallet/balance")
    assert resp.status_code == 429
    assert int(resp.headers["Retry-After"]) >= 1
    assert resp.json()["status"] == 429
    time.sleep(1.05)
    assert zm.get("/v2/wallet/balance").status_code == 200
    stats = sim.stats()
    assert stats["vendors"]["zapmail"]["rate_limited"] == 2
    assert stats["vendors"]["zapmail"]["routes"]["GET /v2/wallet/balance"] == {"200": 4, "429": 2}


def test_zapmail_availability_bucket_is_separate_and_shared(sim, zm):
    sim.configure(rate_limits_enabled=True, zapmail_checks_per_30min=2, zapmail_per_second=50)
    check = {"domainNames": ["acme.com"]}
    assert zm.post("/v2/domains/available-bulk", json=check).status_code == 200
    assert zm.post("/v2/domains/available", json={"domainName": "acme"}).status_code == 200
    limited = zm.post("/v2/domains/available-bulk", json=check)
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) > 60  # the 30-minute window, not the 1 s one
    assert zm.get("/v2/wallet/balance").status_code == 200  # general limit untouched


def test_zapmail_requests_with_a_bad_key_still_count_for_that_key(sim):
    sim.configure(rate_limits_enabled=True, zapmail_per_second=2)
    url = f"{sim.zapmail_url}/v2/wallet/balance"
    assert [
        httpx.get(url, headers={"x-auth-zapmail": "future-key"}).status_code for _ in range(2)
    ] == [401, 401]
    sim.configure(zapmail_api_key="future-key")
    assert httpx.get(url, headers={"x-auth-zapmail": "future-key"}).status_code == 429


def test_workspaces_pagination_returns_next_page_on_last_page(zm, workspace):
    for i in range(3):
        workspace(f"Student {i}")
    data = zm.get("/v2/workspaces", params={"page": 2, "limit": 2}).json()["data"]
    assert data["currentWorkspace"]["name"] == "Primary Workspace"
    assert [w["name"] for w in data["workspaces"]] == ["Student 2"]
    assert (data["currentPage"], data["nextPage"], data["totalPages"]) == (2, 3, 2)
    assert data["totalWorkspacesCount"] == "4"
    bad = zm.get("/v2/workspaces", params={"page": 0})
    assert bad.status_code == 400 and bad.json()["message"] == "Invalid pagination parameters"


def test_workspace_names_are_unique_and_key_selects_workspace(zm, workspace):
    ws = workspace("Dup")
    again = zm.post("/v2/workspaces", json={"name": "Dup", "billingDetails": BILLING})
    assert again.status_code == 400
    current = zm.get("/v2/workspaces", headers={"x-workspace-key": ws}).json()["data"][
        "currentWorkspace"
    ]
    assert current["id"] == ws
    assert zm.get("/v2/domains", headers={"x-workspace-key": "nope"}).status_code == 404


def test_available_bulk_prices_are_strings_and_unsupported_tld_is_nan(zm):
    names = ["sandboxtaken.com", "acme.io", "-bad-.com", *[f"pricecheck{i}.com" for i in range(10)]]
    data = zm.post("/v2/domains/available-bulk", json={"domainNames": names}).json()["data"]
    rows = {r["domainName"]: r for r in data["domains"]}
    assert rows["sandboxtaken.com"] == {
        "domainName": "sandboxtaken.com", "status": "UNAVAILABLE", "isPremiumDomain": False,
        "domainPrice": "0.00", "renewPrice": "0.00",
    }  # fmt: skip
    assert rows["acme.io"]["status"] == "UNAVAILABLE" and rows["acme.io"]["domainPrice"] == "NaN"
    assert rows["-bad-.com"]["status"] == "UNAVAILABLE"
    for i in range(10):
        name = f"pricecheck{i}.com"
        # The documented deterministic rule: first SHA-256 byte < 38 means registered elsewhere.
        expect_free = hashlib.sha256(name.encode()).digest()[0] >= 38
        assert (rows[name]["status"] == "AVAILABLE") is expect_free
        if expect_free:
            assert (rows[name]["domainPrice"], rows[name]["renewPrice"]) == ("12.99", "20.99")
    assert data["total"] == len(names) and data["available"] + data["unavailable"] == len(names)
    too_many = zm.post(
        "/v2/domains/available-bulk", json={"domainNames": [f"x{i}.com" for i in range(21)]}
    )
    assert too_many.status_code == 400


def test_buy_charges_wallet_records_ledger_and_registers_pending(sim, zm, workspace):
    ws = workspace()
    names = free_names(zm, 2)
    before = wallet(zm)
    resp = buy(zm, names, {"x-workspace-key": ws})
    assert resp.status_code == 200
    assert resp.json()["message"] == "Domains purchased" and "invoiceLink" in resp.json()
    assert "data" not in resp.json()  # flat body, no ids
    assert wallet(zm) == pytest.approx(before - 2 * 12.99)
    entries = sim.ledger(vendor="zapmail", kind="domain_purchase")
    assert [(e["item"], e["amount"], e["workspace_id"]) for e in entries] == [
        (n, "12.99", ws) for n in names
    ]
    rows = zm.get("/v2/domains", headers={"x-workspace-key": ws}).json()["data"]["domains"]
    assert {r["domain"]: r["status"] for r in rows} == dict.fromkeys(names, "PENDING")
    assert all(r["autoRenew"] is False and r["assignedMailboxesCount"] == "0" for r in rows)


def test_repeated_buy_charges_twice_without_a_second_domain(sim, zm, workspace):
    headers = {"x-workspace-key": workspace()}
    name = free_names(zm, 1)[0]
    before = wallet(zm)
    assert buy(zm, [name], headers).status_code == 200
    assert buy(zm, [name], headers).status_code == 200
    charges = sim.ledger(kind="domain_purchase")
    assert len(charges) == 2 and charges[1]["duplicate"] is True
    assert wallet(zm) == pytest.approx(before - 2 * 12.99)
    assert len(zm.get("/v2/domains", headers=headers).json()["data"]["domains"]) == 1


def test_short_wallet_returns_invoice_and_charges_nothing(sim, zm, workspace):
    headers = {"x-workspace-key": workspace()}
    sim.control("POST", "/zapmail/wallet", json={"balance": 5})
    resp = buy(zm, free_names(zm, 1), headers)
    assert resp.status_code == 200 and "invoiceLink" in resp.json()
    assert resp.json()["message"] != "Domains purchased"
    assert sim.ledger() == []
    assert wallet(zm) == 5
    assert zm.get("/v2/domains", headers=headers).json()["data"]["domains"] == []


def test_buy_needs_billing_details_and_refunds_names_taken_elsewhere(sim, zm):
    name = free_names(zm, 1)[0]
    assert buy(zm, [name]).status_code == 400  # the primary workspace has no billing details yet
    primary = zm.get("/v2/workspaces").json()["data"]["currentWorkspace"]["id"]
    assert zm.post("/v2/billing", json={**BILLING, "workspaceId": primary}).status_code == 200
    sim.control("POST", "/zapmail/unavailable", json={"names": [name]})
    before = wallet(zm)
    assert buy(zm, [name]).status_code == 200
    assert [e["kind"] for e in sim.ledger()] == ["domain_purchase", "domain_refund"]
    assert wallet(zm) == pytest.approx(before)
    assert zm.get("/v2/domains").json()["data"]["domains"] == []


def test_domain_becomes_active_when_clock_advances_and_contains_is_substring(sim, zm, workspace):
    headers = {"x-workspace-key": workspace()}
    names = free_names(zm, 2, stem="getacme")
    plain = next(n for n in free_names(zm, 5, stem="acme") if f"get{n}" not in names)
    buy(zm, [*names, plain], headers)
    sim.advance(899)
    assert zm.get("/v2/domains/assignable", headers=headers).json()["data"]["domains"] == []
    sim.advance(2)
    rows = zm.post(
        "/v2/domains", json={"status": ["ACTIVE"], "contains": plain}, headers=headers
    ).json()["data"]
    assert plain in {r["domain"] for r in rows["domains"]}
    assert all(plain in r["domain"] for r in rows["domains"])
    assignable = zm.get("/v2/domains/assignable", headers=headers).json()["data"]["domains"]
    assert {r["status"] for r in assignable} == {"ACTIVE"} and len(assignable) == 3


def test_dmarc_and_auto_renew_update_domain_rows(sim, zm, active_domain):
    dom = active_domain(1)
    domain_id = dom["ids"][dom["names"][0]]
    body = {
        "domainIds": [domain_id],
        "email": "dmarc@reports.test",
        "contains": "",
        "status": [],
        "tagIds": [],
    }
    for _ in range(2):  # safe to repeat
        assert zm.post("/v2/domains/dmarc", json=body, headers=dom["headers"]).status_code == 200
    renew = {"domainIds": [domain_id], "autoRenew": True}
    assert (
        zm.post("/v2/domains/update-auto-renew", json=renew, headers=dom["headers"]).status_code
        == 200
    )
    row = zm.get("/v2/domains", headers=dom["headers"]).json()["data"]["domains"][0]
    assert row["dmarcEmail"] == "dmarc@reports.test" and row["autoRenew"] is True
    # Each change of renewal is in the ledger (it decides the next charge); a repeat is not.
    for auto in (True, False, False):
        body = {"domainIds": [domain_id], "autoRenew": auto}
        assert zm.post(
            "/v2/domains/update-auto-renew", json=body, headers=dom["headers"]
        ).is_success
    changes = sim.ledger(vendor="zapmail", kind="domain_auto_renew_set")
    assert [(e["item"], e["auto_renew"]) for e in changes] == [
        (dom["names"][0], True),
        (dom["names"][0], False),
    ]


def _boxes(name: str, *usernames: str) -> list[dict[str, str]]:
    return [
        {"firstName": "A", "lastName": "B", "mailboxUsername": u, "domainName": name}
        for u in usernames
    ]


@pytest.mark.parametrize("username", [".ada", "ada.", "_ada", "ada-", "Ada", "a b", "x" * 65, ""])
def test_mailbox_username_rules(zm, active_domain, username):
    dom = active_domain(1)
    name = dom["names"][0]
    resp = zm.post(
        "/v2/mailboxes", json={dom["ids"][name]: _boxes(name, username)}, headers=dom["headers"]
    )
    assert resp.status_code == 400


def test_mailbox_creation_limits_and_lifecycle(sim, zm, workspace, active_domain):
    headers = {"x-workspace-key": workspace()}
    pending = free_names(zm, 1, stem="slow")[0]
    buy(zm, [pending], headers)
    pending_id = zm.get("/v2/domains", headers=headers).json()["data"]["domains"][0]["id"]
    assert (
        zm.post(
            "/v2/mailboxes", json={pending_id: _boxes(pending, "ada")}, headers=headers
        ).status_code
        == 400
    )

    dom = active_domain(1)
    name, domain_id, h = dom["names"][0], dom["ids"][dom["names"][0]], dom["headers"]
    six = _boxes(name, "a1", "a2", "a3", "a4", "a5", "a6")
    assert zm.post("/v2/mailboxes", json={domain_id: six}, headers=h).status_code == 400
    resp = zm.post("/v2/mailboxes", json={domain_id: _boxes(name, "ada", "bob.smith")}, headers=h)
    assert resp.json() == {
        "status": 200,
        "message": "Mailboxes will be assigned shortly",
        "data": None,
    }
    assert (
        zm.post("/v2/mailboxes", json={domain_id: _boxes(name, "ada")}, headers=h).status_code
        == 400
    )
    assert (
        zm.post("/v2/mailboxes", json={domain_id: _boxes(name, *"cdef")}, headers=h).status_code
        == 400
    )
    assert [e["item"] for e in sim.ledger(kind="mailbox_created")] == [
        f"ada@{name}",
        f"bob.smith@{name}",
    ]

    data = zm.get("/v2/mailboxes/list", headers=h).json()["data"]
    assert data["totalAssignedMailboxes"] == 2 and data["domains"][0]["domain"] == name
    boxes = data["domains"][0]["mailboxes"]
    assert {b["status"] for b in boxes} == {"IN_PROGRESS"}
    assert all(b["appPassword"] and b["domainId"] == domain_id for b in boxes)
    sim.advance(3601)
    boxes = zm.get("/v2/mailboxes/list", headers=h).json()["data"]["domains"][0]["mailboxes"]
    assert {b["status"] for b in boxes} == {"ACTIVE"}
    row = zm.get("/v2/domains", headers=h).json()["data"]["domains"][0]
    assert row["assignedMailboxesCount"] == "2" and row["serviceProvider"] == "GOOGLE"


def test_injected_mailbox_failure_then_retry_failed(sim, zm, active_domain):
    dom = active_domain(1)
    name, domain_id, h = dom["names"][0], dom["ids"][dom["names"][0]], dom["headers"]
    sim.control("POST", "/zapmail/fail-mailboxes", json={"domain": name, "times": 1})
    zm.post("/v2/mailboxes", json={domain_id: _boxes(name, "ada", "bob")}, headers=h)
    sim.advance(3601)

    def statuses() -> dict[str, str]:
        boxes = zm.get("/v2/mailboxes/list", headers=h).json()["data"]["domains"][0]["mailboxes"]
        return {b["username"]: b["status"] for b in boxes}

    assert statuses() == {"ada": "FAILED", "bob": "ACTIVE"}
    assert (
        zm.put("/v2/mailboxes/retry-failed", json={"domainIds": [domain_id]}, headers=h).status_code
        == 200
    )
    assert statuses() == {"ada": "IN_PROGRESS", "bob": "ACTIVE"}
    sim.advance(3601)
    assert statuses() == {"ada": "ACTIVE", "bob": "ACTIVE"}


def test_pipl_login_is_checked_against_plusvibe_clients(zm, pv):
    bad = zm.post(
        "/v2/exports/accounts/third-party",
        json={"email": "no@one.test", "password": "x", "app": "PIPL"},
    )
    assert bad.status_code == 400
    assert (
        zm.get("/v2/exports/accounts/third-party", params={"app": "PIPL"}).json()["data"][
            "accounts"
        ]
        == []
    )
    assert zm.get("/v2/exports/accounts/third-party").status_code == 400
    pv_ws = pv.get("/authenticate").json()["workspaces"][0]["_id"]
    client = pv.post(
        "/client",
        json={
            "workspace_id": pv_ws,
            "client_email": "c@x.test",
            "client_last_name": "C",
            "client_business_name": "B",
        },
    ).json()
    good = {"email": client["email"], "password": client["password"], "app": "PIPL"}
    resp = zm.post("/v2/exports/accounts/third-party", json=good)
    assert resp.json() == {"status": 200, "message": "Account added successfully", "data": None}
    accounts = zm.get("/v2/exports/accounts/third-party", params={"app": "PIPL"}).json()["data"][
        "accounts"
    ]
    assert [(a["appName"], a["email"]) for a in accounts] == [("PIPL", "c@x.test")]


def test_export_delivers_accounts_to_plusvibe_after_delay_with_warmup_off(sim, zm, pv, exported):
    chain = exported()
    h = chain["headers"]
    status = zm.get(
        "/v2/exports/status", params={"exportId": chain["export_id"]}, headers=h
    ).json()["data"]
    assert status == {
        "export_id": chain["export_id"],
        "status": "in_progress",
        "failure_reason": None,
    }
    assert (
        pv.get("/account/list", params={"workspace_id": chain["pv_workspace"]}).json()["accounts"]
        == []
    )
    sim.advance(121)
    status = zm.get(
        "/v2/exports/status", params={"exportId": chain["export_id"]}, headers=h
    ).json()["data"]
    assert status["status"] == "completed"
    accounts = pv.get("/account/list", params={"workspace_id": chain["pv_workspace"]}).json()[
        "accounts"
    ]
    assert sorted(a["email"] for a in accounts) == sorted(chain["emails"])
    assert {(a["status"], a["warmup_status"]) for a in accounts} == {("ACTIVE", "INACTIVE")}


def test_export_requires_every_selector_key_and_caps_reexports(zm, exported):
    chain = exported()
    h, body = chain["headers"], chain["export_body"]
    for key in body:
        partial = {k: v for k, v in body.items() if k != key}
        resp = zm.post("/v2/exports/mailboxes", json=partial, headers=h)
        assert resp.status_code == 400 and key in resp.json()["message"]
    for _ in range(2):  # the fixture already exported once: two more are allowed in 7 days
        assert zm.post("/v2/exports/mailboxes", json=body, headers=h).status_code == 200
    assert zm.post("/v2/exports/mailboxes", json=body, headers=h).status_code == 400


class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["content-length"]))
        self.received.append((dict(self.headers), body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        return None


def test_signed_webhook_on_domain_activation(sim, zm, workspace):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        _Receiver.received.clear()
        sim.configure(zapmail_webhook_url=f"http://127.0.0.1:{server.server_port}/hook")
        headers = {"x-workspace-key": workspace()}
        name = free_names(zm, 1)[0]
        buy(zm, [name], headers)
        sim.advance(901)
        deadline = time.monotonic() + 5
        while not _Receiver.received and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        server.shutdown()
        server.server_close()
    assert _Receiver.received, "no webhook arrived"
    got_headers, raw = _Receiver.received[0]
    payload = json.loads(raw)
    assert payload["event"] == "domain.updated" and payload["data"]["domain"] == name
    assert payload["data"]["status"] == "ACTIVE"
    sig = dict(part.split("=", 1) for part in got_headers["X-Zapmail-Signature"].split(","))
    expected = hmac.new(
        b"zapmail-whsec-sandbox", f"{sig['t']}.".encode() + raw, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(sig["v1"], expected)


def test_zapmail_success_envelope_and_user(zm):
    body = zm.get("/v2/users").json()
    assert body["status"] == 200 and isinstance(body["message"], str)
    assert body["data"]["walletBalance"] == 10000.0
    assert ZAPMAIL_KEY  # the fixture's client authenticated with the documented header
