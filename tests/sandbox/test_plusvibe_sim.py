"""PlusVibe simulator over real HTTP: auth, workspaces, clients, accounts and evolving warmup stats."""

from __future__ import annotations

import httpx
import pytest


def primary(pv: httpx.Client) -> str:
    return pv.get("/authenticate").json()["workspaces"][0]["_id"]


def accounts(pv: httpx.Client, ws: str, **params: object) -> list[dict]:
    resp = pv.get("/account/list", params={"workspace_id": ws, **params})
    assert resp.status_code == 200, resp.text
    return resp.json()["accounts"]


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "wrong"}])
def test_plusvibe_rejects_missing_or_wrong_key(sim, headers):
    resp = httpx.get(f"{sim.plusvibe_url}/authenticate", headers=headers)
    assert resp.status_code == 401 and "message" in resp.json()


def test_workspace_id_is_required_checked_and_scoped(pv):
    assert pv.get("/account/list").status_code == 400
    assert pv.get("/account/list", params={"workspace_id": "not-an-id"}).status_code == 400
    assert pv.get("/account/list", params={"workspace_id": "a" * 24}).status_code == 404
    body = pv.get("/authenticate").json()
    assert body["status"] == "success" and len(body["workspaces"]) == 1
    added = pv.post(
        "/workspaces/add/", json={"workspace_id": primary(pv), "workspace_name": "Cohort 7"}
    ).json()
    assert added["status"] == "success" and len(added["_id"]) == 24
    assert {w["name"] for w in pv.get("/authenticate").json()["workspaces"]} == {
        "Sandbox Workspace",
        "Cohort 7",
    }


def test_client_create_list_and_password_reset(pv):
    ws = primary(pv)
    body = {
        "workspace_id": ws,
        "client_email": "Stu@Example.com",
        "client_first_name": "Stu",
        "client_last_name": "Dent",
        "client_business_name": "Acme",
        "workspaces": [{"id": ws, "permissions": ["FULL_ACCESS"], "hide_labels": []}],
    }
    created = pv.post("/client", json=body).json()
    assert set(created) == {"client_id", "email", "password"} and len(created["password"]) >= 8
    assert pv.post("/client", json=body).status_code == 400  # duplicate email
    listed = pv.get("/client/", params={"workspace_id": ws}).json()["clients"]
    assert [c["email"] for c in listed] == ["stu@example.com"]
    assert all("password" not in c for c in listed)
    reset = {
        "workspace_id": ws,
        "client_id": created["client_id"],
        "client_password": "new-secret-1",
    }
    assert pv.put("/client", json=reset).status_code == 200
    assert pv.put("/client", json={**reset, "client_password": "short"}).status_code == 400


def test_warmup_stats_evolve_with_simulated_days(sim, pv, exported):
    chain = exported()
    sim.advance(121)
    ws = chain["pv_workspace"]
    rows = accounts(pv, ws)
    analytics = rows[0]["payload"]["analytics"]
    assert analytics["health_scores"]["7d_overall_warmup_health"] == -1  # warmup never enabled
    assert analytics["reply_rates"]["7d_replyrate"] == -1
    assert rows[0]["warmup_enb_dt"] is None

    ids = [a["id"] for a in rows]
    resp = pv.patch(
        "/account/bulk-update-warmup",
        json={"workspace_id": ws, "ids": ids, "warmup_status": "ACTIVE"},
    )
    assert resp.json() == {"updated_count": 2, "updated_ids": ids}
    day1 = {a["email"]: a for a in accounts(pv, ws)}
    for acc in day1.values():
        scores = acc["payload"]["analytics"]["health_scores"]
        assert acc["warmup_status"] == "ACTIVE" and acc["warmup_enb_dt"]
        assert 45 <= scores["7d_overall_warmup_health"] <= 75
        assert scores["3d_bounce_rate"] == -1  # no campaigns
        assert acc["payload"]["analytics"]["daily_counters"]["warmup_email_sent_today"] == 2
        assert acc["payload"]["analytics"]["daily_counters"]["email_sent_today"] == 0
    assert accounts(pv, ws) == list(day1.values())  # deterministic on re-read

    sim.advance(3 * 86400)  # day 4: 2 + 3 * 2
    assert {
        a["payload"]["analytics"]["daily_counters"]["warmup_email_sent_today"]
        for a in accounts(pv, ws)
    } == {8}
    sim.advance(25 * 86400)
    for acc in accounts(pv, ws):
        analytics = acc["payload"]["analytics"]
        assert analytics["health_scores"]["7d_overall_warmup_health"] >= 88
        assert analytics["daily_counters"]["warmup_email_sent_today"] == 20  # capped at the max
        assert 30 <= analytics["reply_rates"]["7d_replyrate"] <= 40  # default 35 % +- noise


def test_bulk_update_validates_and_reflects_read_names(sim, pv, exported):
    chain = exported(("ada",))
    sim.advance(121)
    ws = chain["pv_workspace"]
    acc_id = accounts(pv, ws)[0]["id"]
    base = {"workspace_id": ws, "ids": [acc_id]}
    for bad in (
        {"warmup_max_daily_limit": 0},
        {"warmup_reply_rate": 35},
        {"bulk_warmup_is_slow_rampup": True},
        {
            "warmup_schedule": {
                "tz": "UTC",
                "from_time": "9am",
                "to_time": "17:00",
                "days": ["Monday"],
            }
        },
        {"reply_rate": 0.3},  # a read name is not a write field
    ):
        assert pv.put("/account/bulk-update", json={**base, **bad}).status_code == 400, bad
    update = {
        "warmup_max_daily_limit": 10, "warmup_initial_daily_limit": 5, "warmup_pace_increment": 3,
        "warmup_reply_rate": 0.5, "daily_limit": 40, "interval_limit_in_min": 15,
        "bulk_warmup_is_slow_rampup": "no", "first_name": "Ada",
    }  # fmt: skip
    assert pv.put("/account/bulk-update", json={**base, **update}).status_code == 200
    assert (
        pv.post(
            "/account/warmup/enable", json={"workspace_id": ws, "email": chain["emails"][0]}
        ).status_code
        == 200
    )
    sim.advance(2 * 86400)  # day 3: 5 + 2 * 3 = 11, capped at 10
    payload = accounts(pv, ws)[0]["payload"]
    assert payload["warmup"]["limit"] == 10 and payload["warmup"]["increment"] == 3
    assert payload["warmup"]["reply_rate"] == 50
    assert (payload["daily_limit"], payload["sending_gap"]) == (40, 15)
    assert payload["name"]["first_name"] == "Ada"
    assert payload["analytics"]["daily_counters"]["warmup_email_sent_today"] == 10
    pv.post("/account/warmup/pause", json={"workspace_id": ws, "email": chain["emails"][0]})
    paused = accounts(pv, ws, email=chain["emails"][0])[0]
    assert paused["warmup_status"] == "INACTIVE"
    assert paused["payload"]["analytics"]["daily_counters"]["warmup_email_sent_today"] == 0


def test_bulk_update_warmup_is_patch_only_and_checks_ids(pv):
    ws = primary(pv)
    assert (
        pv.put(
            "/account/bulk-update-warmup", json={"workspace_id": ws, "ids": ["a" * 24]}
        ).status_code
        == 405
    )
    bad_ids = {"workspace_id": ws, "ids": ["123"], "warmup_status": "ACTIVE"}
    assert pv.patch("/account/bulk-update-warmup", json=bad_ids).status_code == 400
    empty = {"workspace_id": ws, "ids": [], "warmup_status": "ACTIVE"}
    assert pv.patch("/account/bulk-update-warmup", json=empty).status_code == 400
    bad_status = {"workspace_id": ws, "ids": ["a" * 24], "warmup_status": "ON"}
    assert pv.patch("/account/bulk-update-warmup", json=bad_status).status_code == 400


def test_forced_health_overrides_the_model(sim, pv, exported):
    chain = exported(("ada",))
    sim.advance(121)
    ws = chain["pv_workspace"]
    pv.post("/account/warmup/enable", json={"workspace_id": ws, "email": chain["emails"][0]})
    forced = sim.control(
        "POST", "/plusvibe/health", json={"email": chain["emails"][0], "health": 35}
    ).json()
    assert forced["accounts"] == 1
    sim.advance(30 * 86400)
    assert (
        accounts(pv, ws)[0]["payload"]["analytics"]["health_scores"]["7d_overall_warmup_health"]
        == 35
    )


def test_account_list_limit_is_capped_at_100(pv):
    ws = primary(pv)
    assert pv.get("/account/list", params={"workspace_id": ws, "limit": 101}).status_code == 400
    assert pv.get("/account/list", params={"workspace_id": ws, "limit": 100}).status_code == 200


def test_plusvibe_rate_limit(sim, pv):
    sim.configure(rate_limits_enabled=True, plusvibe_per_second=2)
    codes = [pv.get("/authenticate").status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    resp = pv.get("/authenticate")
    assert (
        resp.status_code == 429
        and int(resp.headers["Retry-After"]) >= 1
        and "message" in resp.json()
    )
