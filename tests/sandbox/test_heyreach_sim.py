"""HeyReach simulator over real HTTP: API key check, lists, leads and the 300/min limit."""

from __future__ import annotations

import httpx
import pytest


def lead(slug: str, **extra: object) -> dict:
    return {"profileUrl": f"https://www.linkedin.com/in/{slug}", "firstName": slug.title(), **extra}


def new_list(hr: httpx.Client, name: str = "Cohort 7", **extra: object) -> dict:
    resp = hr.post("/list/CreateEmptyList", json={"name": name, **extra})
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.mark.parametrize("headers", [{}, {"X-API-KEY": "wrong"}])
def test_heyreach_rejects_missing_or_wrong_key(sim, headers):
    resp = httpx.get(f"{sim.heyreach_url}/auth/CheckApiKey", headers=headers)
    assert resp.status_code == 401 and "errorMessage" in resp.json()


def test_check_api_key(hr):
    assert hr.get("/auth/CheckApiKey").status_code == 200


def test_create_list_returns_full_object(hr):
    row = new_list(hr)
    assert set(row) == {
        "id",
        "name",
        "count",
        "listType",
        "creationTime",
        "isDeleted",
        "campaigns",
        "search",
        "status",
    }
    assert isinstance(row["id"], int) and row["listType"] == "USER_LIST" and row["count"] == 0
    assert new_list(hr, "Companies", type="COMPANY_LIST")["listType"] == "COMPANY_LIST"
    assert hr.post("/list/CreateEmptyList", json={"name": "x", "type": "PEOPLE"}).status_code == 400
    assert hr.get("/list/GetById", params={"listId": row["id"]}).json()["name"] == "Cohort 7"
    missing = hr.get("/list/GetById", params={"listId": 999})
    assert missing.status_code == 404 and missing.json() == {
        "errorMessage": "The list does not exist!"
    }


def test_get_all_pages_and_rejects_limit_over_100(hr):
    for i in range(3):
        new_list(hr, f"List {i}")
    page = hr.post("/list/GetAll", json={"offset": 1, "limit": 1}).json()
    assert page["totalCount"] == 3 and len(page["items"]) == 1
    assert (
        hr.post("/list/GetAll", json={"offset": 0, "limit": 10, "keyword": "list 2"}).json()[
            "totalCount"
        ]
        == 1
    )
    assert hr.post("/list/GetAll", json={"offset": 0, "limit": 101}).status_code == 400


def test_add_leads_counts_added_updated_failed_and_caps_at_100(hr):
    list_id = new_list(hr)["id"]
    body = {
        "listId": list_id,
        "leads": [lead("ada"), lead("bob"), {"profileUrl": "https://example.com/ada"}, {}],
    }
    assert hr.post("/list/AddLeadsToListV2", json=body).json() == {
        "addedLeadsCount": 2, "updatedLeadsCount": 0, "failedLeadsCount": 2,
    }  # fmt: skip
    again = {
        "listId": list_id,
        "leads": [
            lead("ada", companyName="Acme", customUserFields=[{"name": "cohort", "value": "7"}])
        ],
    }
    assert hr.post("/list/AddLeadsToListV2", json=again).json()["updatedLeadsCount"] == 1
    too_many = {"listId": list_id, "leads": [lead(f"p{i}") for i in range(101)]}
    assert hr.post("/list/AddLeadsToListV2", json=too_many).status_code == 400
    assert (
        hr.post("/list/AddLeadsToListV2", json={"listId": 424242, "leads": [lead("x")]}).status_code
        == 404
    )

    got = hr.post(
        "/list/GetLeadsFromList", json={"listId": list_id, "offset": 0, "limit": 100}
    ).json()
    assert got["totalCount"] == 2
    ada = next(i for i in got["items"] if i["firstName"] == "Ada")
    assert ada["companyName"] == "Acme" and ada["customUserFields"] == [
        {"name": "cohort", "value": "7"}
    ]
    assert hr.get("/list/GetById", params={"listId": list_id}).json()["count"] == 2
    assert (
        hr.post(
            "/list/GetLeadsFromList", json={"listId": list_id, "offset": 0, "limit": 101}
        ).status_code
        == 400
    )


def test_there_is_no_list_deletion_endpoint(hr):
    list_id = new_list(hr)["id"]
    assert hr.post("/list/Delete", json={"listId": list_id}).status_code == 404
    assert hr.delete("/list/DeleteList", params={"listId": list_id}).status_code == 404


def test_heyreach_rate_limit(sim, hr):
    sim.configure(rate_limits_enabled=True, heyreach_per_minute=3)
    assert [hr.get("/auth/CheckApiKey").status_code for _ in range(4)] == [200, 200, 200, 429]
    resp = hr.get("/auth/CheckApiKey")
    assert int(resp.headers["Retry-After"]) > 1 and "errorMessage" in resp.json()
