"""Fixtures for the simulator tests: one sandbox subprocess per session, reset before each test."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sandbox.testing import SandboxHandle
from sandbox.testing import running_sandbox

ZAPMAIL_KEY = "sandbox-zapmail-key"
PLUSVIBE_KEY = "sandbox-plusvibe-key"
HEYREACH_KEY = "sandbox-heyreach-key"
BILLING = {
    "company": "Acme Ltd",
    "firstName": "Ada",
    "lastName": "Lovelace",
    "addressLineOne": "1 Main St",
    "addressLineTwo": "",
    "addressLineThree": None,
    "city": "London",
    "state": "",
    "country": "GB",
    "postalCode": "N1 1AA",
    "phoneCc": "+44",
    "phone": "2070000000",
}


@pytest.fixture(scope="session")
def sim() -> Iterator[SandboxHandle]:
    """The sandbox server shared by the simulator tests (rate limits off unless a test enables them)."""
    with running_sandbox(extra_args=["--no-rate-limits"]) as handle:
        yield handle


@pytest.fixture(autouse=True)
def _fresh_sim(request: pytest.FixtureRequest) -> None:
    """Reset state and config before every test that uses the sandbox."""
    if "sim" in request.fixturenames:
        request.getfixturevalue("sim").reset(config=True)


@pytest.fixture
def zm(sim: SandboxHandle) -> Iterator[httpx.Client]:
    """A plain httpx client for Zapmail with the sandbox key."""
    with httpx.Client(
        base_url=sim.zapmail_url, headers={"x-auth-zapmail": ZAPMAIL_KEY}, timeout=10
    ) as client:
        yield client


@pytest.fixture
def pv(sim: SandboxHandle) -> Iterator[httpx.Client]:
    """A plain httpx client for PlusVibe with the sandbox key."""
    with httpx.Client(
        base_url=sim.plusvibe_url, headers={"x-api-key": PLUSVIBE_KEY}, timeout=10
    ) as client:
        yield client


@pytest.fixture
def hr(sim: SandboxHandle) -> Iterator[httpx.Client]:
    """A plain httpx client for HeyReach with the sandbox key."""
    with httpx.Client(
        base_url=sim.heyreach_url, headers={"X-API-KEY": HEYREACH_KEY}, timeout=10
    ) as client:
        yield client


def free_names(zm: httpx.Client, count: int, *, stem: str = "acme", tld: str = "com") -> list[str]:
    """Ask available-bulk for AVAILABLE names (the hash rule makes ~15% unavailable)."""
    candidates = [f"{stem}{i}.{tld}" for i in range(20)]
    rows = zm.post("/v2/domains/available-bulk", json={"domainNames": candidates}).json()["data"][
        "domains"
    ]
    names = [r["domainName"] for r in rows if r["status"] == "AVAILABLE"]
    assert len(names) >= count
    return names[:count]


@pytest.fixture
def workspace(zm: httpx.Client) -> Callable[..., str]:
    """Create a Zapmail workspace with billing details; return its id (the x-workspace-key)."""

    def make(name: str = "Student One") -> str:
        resp = zm.post("/v2/workspaces", json={"name": name, "billingDetails": BILLING})
        assert resp.status_code == 200, resp.text
        return resp.json()["data"]["id"]

    return make


@pytest.fixture
def active_domain(
    zm: httpx.Client, sim: SandboxHandle, workspace: Callable[..., str]
) -> Callable[..., dict]:
    """Buy domains in a fresh workspace and advance the clock until they are ACTIVE."""

    def make(count: int = 1, *, stem: str = "acme") -> dict[str, Any]:
        ws = workspace(f"ws-{stem}")
        names = free_names(zm, count, stem=stem)
        headers = {"x-workspace-key": ws}
        body = {
            "domains": [{"domainName": n, "years": 1} for n in names],
            "useWallet": True,
            "enableDnsShield": False,
        }
        assert zm.post("/v2/domains/buy", json=body, headers=headers).status_code == 200
        sim.advance(901)
        rows = zm.get("/v2/domains", params={"limit": 50}, headers=headers).json()["data"][
            "domains"
        ]
        ids = {r["domain"]: r["id"] for r in rows}
        return {"workspace": ws, "headers": headers, "names": names, "ids": ids}

    return make


@pytest.fixture
def exported(
    zm: httpx.Client, pv: httpx.Client, sim: SandboxHandle, active_domain: Callable[..., dict]
) -> Callable[..., dict]:
    """Run the whole chain: domain, mailboxes, PlusVibe client, PIPL login, export, delay."""

    def make(usernames: tuple[str, ...] = ("ada", "bob")) -> dict[str, Any]:
        dom = active_domain(1, stem="chain")
        name = dom["names"][0]
        domain_id = dom["ids"][name]
        boxes = [
            {"firstName": u.title(), "lastName": "Test", "mailboxUsername": u, "domainName": name}
            for u in usernames
        ]
        assert (
            zm.post("/v2/mailboxes", json={domain_id: boxes}, headers=dom["headers"]).status_code
            == 200
        )
        sim.advance(3601)
        pv_ws = pv.get("/authenticate").json()["workspaces"][0]["_id"]
        client = pv.post(
            "/client",
            json={
                "workspace_id": pv_ws,
                "client_email": "student@example.com",
                "client_first_name": "Stu",
                "client_last_name": "Dent",
                "client_business_name": "Acme",
                "workspaces": [{"id": pv_ws, "permissions": ["FULL_ACCESS"], "hide_labels": []}],
            },
        ).json()
        login = {"email": client["email"], "password": client["password"], "app": "PIPL"}
        assert (
            zm.post(
                "/v2/exports/accounts/third-party", json=login, headers=dom["headers"]
            ).status_code
            == 200
        )
        account_id = zm.get(
            "/v2/exports/accounts/third-party", params={"app": "PIPL"}, headers=dom["headers"]
        ).json()["data"]["accounts"][0]["id"]
        rows = zm.get("/v2/mailboxes/list", headers=dom["headers"]).json()["data"]["domains"][0][
            "mailboxes"
        ]
        body = {
            "apps": ["PIPL"],
            "ids": [m["id"] for m in rows],
            "excludeIds": [],
            "tagIds": [],
            "status": "ACTIVE",
            "contains": "",
            "thirdPartyAccountId": account_id,
        }
        resp = zm.post("/v2/exports/mailboxes", json=body, headers=dom["headers"])
        assert resp.status_code == 200, resp.text
        return {
            **dom,
            "pv_workspace": pv_ws,
            "emails": [f"{u}@{name}" for u in usernames],
            "mailbox_ids": [m["id"] for m in rows],
            "export_id": resp.json()["data"]["exportId"],
            "export_body": body,
            "client": client,
        }

    return make
