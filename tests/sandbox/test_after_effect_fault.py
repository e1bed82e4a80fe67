"""The after_effect fault: the vendor performs the request, then answers any status and body."""

from __future__ import annotations

import httpx
import pytest

from tests.sandbox.conftest import free_names


def buy_body(names: list[str]) -> dict:
    return {
        "domains": [{"domainName": name, "years": 1} for name in names],
        "useWallet": True,
        "enableDnsShield": False,
    }


def wallet(zm: httpx.Client) -> float:
    return zm.get("/v2/wallet/balance").json()["walletBalance"]


@pytest.mark.parametrize("status", [200, 201, 400, 402, 409, 422, 429, 500, 504])
def test_buy_is_performed_then_the_configured_status_comes_back(sim, zm, workspace, status):
    headers = {"x-workspace-key": workspace()}
    names = free_names(zm, 2)
    before = wallet(zm)
    sim.add_fault(
        vendor="zapmail", method="POST", path="/v2/domains/buy", kind="after_effect", status=status
    )

    resp = zm.post("/v2/domains/buy", json=buy_body(names), headers=headers)

    # The answer is the configured one, in the vendor's usual error envelope by default.
    assert resp.status_code == status
    assert resp.json()["status"] == status and "errorId" in resp.json()
    # The effect happened: both charged once, the wallet debited, the domains in the workspace.
    assert sorted(e["item"] for e in sim.ledger(kind="domain_purchase")) == sorted(names)
    charged = sum(float(e["amount"]) for e in sim.ledger(kind="domain_purchase"))
    assert wallet(zm) == pytest.approx(before - charged) and charged > 0
    listed = zm.get("/v2/domains", params={"limit": 50}, headers=headers).json()["data"]
    assert sorted(row["domain"] for row in listed["domains"]) == sorted(names)


def test_a_raw_body_replaces_the_envelope_even_on_a_success_code(sim, zm, workspace):
    headers = {"x-workspace-key": workspace()}
    name = free_names(zm, 1)[0]
    sim.add_fault(
        vendor="zapmail",
        method="POST",
        path="/v2/domains/buy",
        kind="after_effect",
        status=200,
        body="<html>upstream garbled",
    )

    resp = zm.post("/v2/domains/buy", json=buy_body([name]), headers=headers)

    assert (resp.status_code, resp.text) == (200, "<html>upstream garbled")
    assert [e["item"] for e in sim.ledger(kind="domain_purchase")] == [name]
    # times=1 by default: the next buy is answered normally (and charges again: no idempotency).
    again = zm.post("/v2/domains/buy", json=buy_body([name]), headers=headers)
    assert again.status_code == 200 and again.json()["message"] == "Domains purchased"
    (fault,) = sim.control("GET", "/faults").json()["faults"]
    assert (fault["kind"], fault["hits"], fault["remaining"], fault["body"]) == (
        "after_effect",
        1,
        0,
        "<html>upstream garbled",
    )


def test_a_request_the_vendor_refuses_is_answered_with_the_configured_status_too(
    sim, zm, workspace
):
    # Performed means "run by the simulator", whatever it decided: a bad body is still refused
    # (nothing charged), and the caller still gets the configured answer.
    headers = {"x-workspace-key": workspace()}
    sim.add_fault(vendor="zapmail", path="/v2/domains/buy", kind="after_effect", status=200)
    resp = zm.post("/v2/domains/buy", json={"domains": []}, headers=headers)
    assert resp.status_code == 200 and sim.ledger() == []


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ({"status": 99}, "status must be an HTTP status code (100-599)"),
        ({"status": 600}, "status must be an HTTP status code (100-599)"),
        ({"status": "409"}, "status must be an HTTP status code (100-599)"),
        ({"status": True}, "status must be an HTTP status code (100-599)"),
        ({"body": 12}, "body must be a string or null"),
    ],
)
def test_after_effect_keys_are_validated(sim, spec, error):
    resp = sim.control(
        "POST", "/faults", json={"vendor": "zapmail", "kind": "after_effect", **spec}
    )
    assert resp.status_code == 400 and resp.json()["error"] == error


def test_body_is_refused_on_other_kinds_and_success_codes_stay_after_effect_only(sim):
    resp = sim.control("POST", "/faults", json={"vendor": "zapmail", "kind": "status", "body": "x"})
    assert resp.status_code == 400 and resp.json()["error"] == "body is only for kind after_effect"
    resp = sim.control(
        "POST", "/faults", json={"vendor": "zapmail", "kind": "status", "status": 200}
    )
    assert resp.status_code == 400
    default = sim.add_fault(vendor="zapmail", kind="after_effect")
    assert (default["status"], default["body"]) == (500, None)
