"""The /_sandbox control plane: faults of every kind, clock, config, ledger, stats, reset, startup."""

from __future__ import annotations

import time

import httpx
import pytest

from sandbox.testing import SandboxStartError
from sandbox.testing import running_sandbox
from tests.sandbox.conftest import free_names


def buy_body(name: str) -> dict:
    return {
        "domains": [{"domainName": name, "years": 1}],
        "useWallet": True,
        "enableDnsShield": False,
    }


def test_health_clock_and_config(sim):
    assert sim.control("GET", "/health").json() == {"ok": True}
    before = sim.control("GET", "/clock").json()
    sim.advance(3600)
    after = sim.control("GET", "/clock").json()
    assert after["timestamp"] - before["timestamp"] >= 3600
    assert sim.control("POST", "/clock", json={"speed": 60}).json()["speed"] == 60
    bad = sim.control("POST", "/config", json={"latency_ms": 1, "no_such_key": 2})
    assert bad.status_code == 400 and "no_such_key" in bad.json()["error"]
    assert sim.control("POST", "/config", json={"latency_ms": "fast"}).status_code == 400
    assert sim.configure(domain_activation_s=60)["domain_activation_s"] == 60
    sim.reset(config=True)
    assert sim.control("GET", "/config").json()["domain_activation_s"] == 900
    assert sim.control("GET", "/clock").json()["speed"] == 1.0


def test_status_fault_answers_vendor_error_without_performing(sim, zm, workspace):
    headers = {"x-workspace-key": workspace()}
    name = free_names(zm, 1)[0]
    fault = sim.add_fault(
        vendor="zapmail", method="POST", path="/v2/domains/buy", kind="status", status=503
    )
    assert fault["id"] and fault["remaining"] == 1
    resp = zm.post("/v2/domains/buy", json=buy_body(name), headers=headers)
    assert resp.status_code == 503 and resp.json()["status"] == 503 and "errorId" in resp.json()
    assert sim.ledger() == []
    assert zm.post("/v2/domains/buy", json=buy_body(name), headers=headers).status_code == 200
    assert len(sim.ledger(kind="domain_purchase")) == 1


def test_rate_limit_storm_then_recovery(sim, pv):
    sim.add_fault(
        vendor="plusvibe",
        method="GET",
        path="/authenticate",
        kind="rate_limit",
        times=3,
        retry_after=2,
    )
    responses = [pv.get("/authenticate") for _ in range(4)]
    assert [r.status_code for r in responses] == [429, 429, 429, 200]
    assert responses[0].headers["Retry-After"] == "2" and "message" in responses[0].json()
    assert sim.stats()["vendors"]["plusvibe"]["rate_limited"] == 3
    assert sim.control("GET", "/faults").json()["faults"][0]["remaining"] == 0


def test_timeout_fault_holds_and_performs_nothing(sim, zm, workspace):
    headers = {"x-workspace-key": workspace()}
    sim.add_fault(
        vendor="zapmail", method="POST", path="/v2/domains/buy", kind="timeout", hold_s=1.5
    )
    with pytest.raises(httpx.ReadTimeout):
        zm.post(
            "/v2/domains/buy", json=buy_body(free_names(zm, 1)[0]), headers=headers, timeout=0.3
        )
    assert sim.ledger() == []


def test_timeout_fault_answers_504_after_the_hold(sim, hr):
    sim.add_fault(vendor="heyreach", path="/auth/*", kind="timeout", hold_s=0.2)
    resp = hr.get("/auth/CheckApiKey")
    assert resp.status_code == 504 and "errorMessage" in resp.json()


def test_drop_response_charges_although_the_caller_timed_out(sim, zm, workspace):
    headers = {"x-workspace-key": workspace()}
    name = free_names(zm, 1)[0]
    sim.add_fault(
        vendor="zapmail", method="POST", path="/v2/domains/buy", kind="drop_response", hold_s=1.5
    )
    with pytest.raises(httpx.ReadTimeout):
        zm.post("/v2/domains/buy", json=buy_body(name), headers=headers, timeout=0.3)
    assert [(e["kind"], e["item"]) for e in sim.ledger()] == [("domain_purchase", name)]
    rows = zm.get("/v2/domains", headers=headers).json()["data"]["domains"]
    assert [r["domain"] for r in rows] == [name]


def test_latency_fault_and_configured_latency(sim, hr):
    sim.add_fault(
        vendor="heyreach", method="*", path="/auth/CheckApiKey", kind="latency", latency_ms=300
    )
    start = time.monotonic()
    assert hr.get("/auth/CheckApiKey").status_code == 200
    assert time.monotonic() - start >= 0.3
    hr.get("/auth/CheckApiKey")
    # times=1 by default: the second call was not delayed again.
    (fault,) = sim.control("GET", "/faults").json()["faults"]
    assert (fault["hits"], fault["remaining"]) == (1, 0)
    sim.configure(vendor_latency_ms={"heyreach": 200})
    start = time.monotonic()
    hr.get("/auth/CheckApiKey")
    assert time.monotonic() - start >= 0.2


def test_faults_list_delete_and_validation(sim):
    first = sim.add_fault(vendor="stripe", path="/v1/*", kind="status", status=500, times=None)
    second = sim.add_fault(vendor="zapmail", path="/v2/domains", kind="status", status=404)
    assert [f["id"] for f in sim.control("GET", "/faults").json()["faults"]] == [
        first["id"],
        second["id"],
    ]
    assert sim.control("DELETE", f"/faults/{first['id']}").status_code == 200
    assert sim.control("DELETE", f"/faults/{first['id']}").status_code == 404
    assert (
        sim.control("POST", "/faults", json={"vendor": "acme", "kind": "status"}).status_code == 400
    )
    assert (
        sim.control("POST", "/faults", json={"vendor": "zapmail", "kind": "explode"}).status_code
        == 400
    )
    sim.clear_faults()
    assert sim.control("GET", "/faults").json()["faults"] == []


def test_stats_count_route_templates_and_reset(sim, zm, hr):
    zm.get("/v2/domains")
    zm.get("/v2/domains")
    hr.get("/list/GetById", params={"listId": 1})
    stats = sim.stats()
    assert stats["vendors"]["zapmail"]["routes"]["GET /v2/domains"] == {"200": 2}
    assert stats["vendors"]["heyreach"]["routes"]["GET /list/GetById"] == {"404": 1}
    assert stats["total"] == 3
    sim.control("POST", "/stats/reset")
    assert sim.stats()["total"] == 0


def test_reset_clears_state_ledger_faults_and_limits(sim, zm, hr, workspace):
    ws = workspace()
    zm.post("/v2/domains/buy", json=buy_body(free_names(zm, 1)[0]), headers={"x-workspace-key": ws})
    hr.post("/list/CreateEmptyList", json={"name": "x"})
    sim.add_fault(vendor="zapmail", path="*", kind="status", times=None)
    sim.configure(latency_ms=5)
    sim.reset(config=False)
    assert sim.control("GET", "/config").json()["latency_ms"] == 5
    assert sim.ledger() == [] and sim.control("GET", "/faults").json()["faults"] == []
    state = sim.control("GET", "/zapmail/state").json()
    assert state["domains"] == [] and [w["primary"] for w in state["workspaces"]] == [True]
    assert sim.control("GET", "/heyreach/state").json()["lists"] == []
    assert zm.get("/v2/wallet/balance").json()["walletBalance"] == 10000.0


def test_sandbox_starts_answers_and_stops():
    # Startup time is measured by bench/sandbox_startup.py, not asserted here.
    with running_sandbox() as handle:
        assert handle.control("GET", "/health").status_code == 200
    assert handle.process is not None and handle.process.poll() is not None  # stopped on exit


def test_non_loopback_host_is_refused_and_the_error_carries_stderr():
    with pytest.raises(SandboxStartError, match="refusing non-loopback host"):
        with running_sandbox(extra_args=["--host", "0.0.0.0"], startup_timeout=10):
            pass
