"""PlusVibe control-plane helpers: seeding warming workspaces in bulk, per-workspace outages."""

from __future__ import annotations

import httpx
import pytest

from sandbox.testing import SandboxHandle


def seed(sim: SandboxHandle, workspaces: list[dict]) -> httpx.Response:
    return sim.control("POST", "/plusvibe/seed", json={"workspaces": workspaces})


def test_seeded_workspaces_list_their_accounts_warming_for_the_given_days(
    sim: SandboxHandle, pv: httpx.Client
) -> None:
    response = seed(
        sim,
        [
            {"name": "young", "emails": ["a@young.com", "B@young.com"], "warmup_days": 2},
            {"name": "old", "emails": ["c@old.com"], "warmup_days": 30},
        ],
    )
    assert response.status_code == 200, response.text
    young, old = response.json()["workspaces"]
    assert (young["name"], young["accounts"], old["accounts"]) == ("young", 2, 1)

    rows = pv.get("/account/list", params={"workspace_id": young["workspace_id"]}).json()
    assert sorted(a["email"] for a in rows["accounts"]) == ["a@young.com", "b@young.com"]
    assert all(a["warmup_status"] == "ACTIVE" and a["warmup_enb_dt"] for a in rows["accounts"])
    young_health = rows["accounts"][0]["payload"]["analytics"]["health_scores"]
    (old_row,) = pv.get("/account/list", params={"workspace_id": old["workspace_id"]}).json()[
        "accounts"
    ]
    old_health = old_row["payload"]["analytics"]["health_scores"]
    # The model's ramp: about 50-70 on day 3, above 90 after a month.
    assert 45 <= young_health["7d_overall_warmup_health"] <= 80
    assert old_health["7d_overall_warmup_health"] >= 88


@pytest.mark.parametrize(
    "workspaces,message",
    [
        ([], "non-empty"),
        ([{"name": "", "emails": []}], "name"),
        ([{"name": "x", "emails": ["not-an-address"]}], "email"),
        ([{"name": "x", "emails": ["a@x.com"], "warmup_days": -1}], "warmup_days"),
        ([{"name": "x", "emails": ["a@x.com", "A@x.com"]}], "twice"),
        ([{"name": "x", "emails": [], "extra": 1}], "name, emails"),
    ],
)
def test_a_bad_seed_is_refused_whole(
    sim: SandboxHandle, pv: httpx.Client, workspaces: list, message: str
) -> None:
    before = len(pv.get("/authenticate").json()["workspaces"])
    response = seed(sim, workspaces)
    assert response.status_code == 400 and message in response.json()["error"]
    assert len(pv.get("/authenticate").json()["workspaces"]) == before


def test_a_failing_workspace_answers_errors_and_the_others_do_not(
    sim: SandboxHandle, pv: httpx.Client
) -> None:
    bad, good = (
        w["workspace_id"]
        for w in seed(
            sim,
            [{"name": "bad", "emails": ["a@bad.com"]}, {"name": "good", "emails": ["a@good.com"]}],
        ).json()["workspaces"]
    )
    set_fault = sim.control(
        "POST", "/plusvibe/fail-workspace", json={"workspace_id": bad, "status": 503, "times": 2}
    )
    assert set_fault.status_code == 200, set_fault.text

    def status(ws: str) -> int:
        return pv.get("/account/list", params={"workspace_id": ws}).status_code

    assert [status(bad), status(good), status(bad), status(bad)] == [503, 200, 503, 200]

    forever = {"workspace_id": bad, "status": 500, "times": None}
    assert sim.control("POST", "/plusvibe/fail-workspace", json=forever).status_code == 200
    assert [status(bad) for _ in range(3)] == [500, 500, 500]
    clear = {"workspace_id": bad, "times": 0}
    assert sim.control("POST", "/plusvibe/fail-workspace", json=clear).status_code == 200
    assert status(bad) == 200


@pytest.mark.parametrize(
    "body",
    [
        {"workspace_id": "f" * 24},
        {"status": 503},
        {"workspace_id": None, "status": 200},
    ],
)
def test_fail_workspace_checks_its_input(sim: SandboxHandle, body: dict) -> None:
    assert sim.control("POST", "/plusvibe/fail-workspace", json=body).status_code == 400


def test_fail_workspace_refuses_a_non_error_status(sim: SandboxHandle, pv: httpx.Client) -> None:
    (ws,) = (
        w["workspace_id"] for w in seed(sim, [{"name": "x", "emails": []}]).json()["workspaces"]
    )
    for status in (200, 302, 600):
        body = {"workspace_id": ws, "status": status}
        assert sim.control("POST", "/plusvibe/fail-workspace", json=body).status_code == 400
    assert pv.get("/account/list", params={"workspace_id": ws}).status_code == 200
