"""PUT /v2/mailboxes in the Zapmail simulator: names, picture, username, validation, ledger."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

PICTURE = "https://portal.example/sender-picture?key=abc"


@pytest.fixture
def boxes(zm: httpx.Client, sim: Any, active_domain: Any) -> dict[str, Any]:
    """Two ACTIVE mailboxes (ada@, bob@) on one domain; returns headers and their rows."""
    dom = active_domain(1, stem="profile")
    name = dom["names"][0]
    specs = [
        {"firstName": u.title(), "lastName": "Test", "mailboxUsername": u, "domainName": name}
        for u in ("ada", "bob")
    ]
    created = zm.post("/v2/mailboxes", json={dom["ids"][name]: specs}, headers=dom["headers"])
    assert created.status_code == 200, created.text
    sim.advance(3601)
    return {**dom, "rows": _rows(zm, dom["headers"])}


def _rows(zm: httpx.Client, headers: dict[str, str]) -> list[dict[str, Any]]:
    listed = zm.get("/v2/mailboxes/list", headers=headers).json()["data"]["domains"]
    return sorted((m for d in listed for m in d["mailboxes"]), key=lambda m: m["username"])


def _entry(row: dict[str, Any], **changes: Any) -> dict[str, Any]:
    entry = {
        "mailboxId": row["id"],
        "firstName": "Jordan",
        "lastName": "Reyes",
        "username": row["username"],
    }
    return {**entry, **changes}


def test_names_and_picture_are_applied_and_listed_with_one_ledger_entry_each(sim, zm, boxes):
    body = {"mailboxData": [_entry(r, profilePicture=PICTURE) for r in boxes["rows"]]}

    resp = zm.put("/v2/mailboxes", json=body, headers=boxes["headers"])

    assert resp.status_code == 200
    assert resp.json() == {"status": 200, "message": "Mailboxes updated successfully", "data": None}
    rows = _rows(zm, boxes["headers"])
    assert [(r["firstName"], r["lastName"], r["profilePicture"]) for r in rows] == [
        ("Jordan", "Reyes", PICTURE)
    ] * 2
    assert [r["username"] for r in rows] == ["ada", "bob"]
    updated = sim.ledger(kind="mailbox_updated")
    assert sorted(e["item"] for e in updated) == [r["email"] for r in boxes["rows"]]
    assert {e["profile_picture"] for e in updated} == {PICTURE}
    assert sim.ledger(kind="mailbox_username_changed") == []


def test_a_missing_picture_keeps_the_old_one_and_null_removes_it(zm, boxes):
    ada = boxes["rows"][0]
    headers = boxes["headers"]
    zm.put(
        "/v2/mailboxes",
        json={"mailboxData": [_entry(ada, profilePicture=PICTURE)]},
        headers=headers,
    )
    zm.put("/v2/mailboxes", json={"mailboxData": [_entry(ada, firstName="Jo")]}, headers=headers)
    assert _rows(zm, headers)[0]["profilePicture"] == PICTURE
    zm.put(
        "/v2/mailboxes", json={"mailboxData": [_entry(ada, profilePicture=None)]}, headers=headers
    )
    assert _rows(zm, headers)[0]["profilePicture"] is None


def test_a_new_username_changes_the_address_and_is_recorded_as_a_warmup_reset(sim, zm, boxes):
    ada = boxes["rows"][0]
    resp = zm.put(
        "/v2/mailboxes",
        json={"mailboxData": [_entry(ada, username="ada.new")]},
        headers=boxes["headers"],
    )
    assert resp.status_code == 200
    assert _rows(zm, boxes["headers"])[0]["email"] == f"ada.new@{boxes['names'][0]}"
    (changed,) = sim.ledger(kind="mailbox_username_changed")
    assert changed["item"] == ada["email"] and changed["warmup_reset"] is True


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        ({"mailboxId": "nope"}, 404, "Mailbox nope not found"),
        ({"firstName": " "}, 400, "firstName is required"),
        ({"lastName": "x" * 101}, 400, "lastName must be at most 100 characters"),
        ({"username": "-bad"}, 400, "Invalid username '-bad'"),
        ({"username": "bob"}, 400, "already exists"),
        ({"profilePicture": "data:image/png;base64,AAAA"}, 400, "must be an image URL"),
        ({"signature": "hi"}, 400, "Unknown field signature in mailboxData"),
    ],
)
def test_a_bad_entry_changes_no_mailbox(sim, zm, boxes, change, status, message):
    ada, bob = boxes["rows"]
    body = {"mailboxData": [_entry(bob), _entry(ada, **change)]}

    resp = zm.put("/v2/mailboxes", json=body, headers=boxes["headers"])

    assert resp.status_code == status and message in resp.json()["message"]
    assert _rows(zm, boxes["headers"]) == boxes["rows"]  # bob's valid entry was not applied
    assert sim.ledger(kind="mailbox_updated") == []


@pytest.mark.parametrize(
    "body",
    [{}, {"mailboxData": []}, {"mailboxData": {"id": "x"}}, {"mailboxData": [1]}, {"extra": 1}],
)
def test_malformed_bodies_are_refused(zm, boxes, body):
    resp = zm.put("/v2/mailboxes", json=body, headers=boxes["headers"])
    assert resp.status_code == 400


def test_another_workspace_cannot_update_the_mailboxes(zm, boxes, workspace):
    other = {"x-workspace-key": workspace("someone else")}
    body = {"mailboxData": [_entry(boxes["rows"][0])]}
    assert zm.put("/v2/mailboxes", json=body, headers=other).status_code == 404
