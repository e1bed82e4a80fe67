"""Unit tests for HeyReachClient over httpx.MockTransport with canned HeyReach bodies."""

from __future__ import annotations

import json
from types import SimpleNamespace

import httpx
import pytest
from pydantic import SecretStr

from clients import errors as generic
from clients.heyreach import HeyReachAuthenticationError
from clients.heyreach import HeyReachBadRequestError
from clients.heyreach import HeyReachClient
from clients.heyreach import HeyReachNotFoundError
from clients.heyreach import HeyReachRateLimitError
from clients.heyreach import HeyReachResponseValidationError
from clients.heyreach import HeyReachServerError
from clients.heyreach import HeyReachTimeoutError
from clients.heyreach import Lead

KEY = "hr-key-0123456789abcdef"


@pytest.fixture
def hr(fake):
    with HeyReachClient(
        KEY, base_url="https://hr.test/api/public", transport=fake.transport
    ) as client:
        yield client


def _leads(n: int) -> list[dict[str, str]]:
    return [
        {"profile_url": f"https://www.linkedin.com/in/person-{i}", "first_name": f"P{i}"}
        for i in range(n)
    ]


def test_heyreach_check_api_key(hr, fake, reply):
    fake.on("GET", "/auth/CheckApiKey", reply(200, ""), reply(401, ""), reply(503, ""))
    assert hr.check_api_key() is True
    assert fake.last().headers["X-API-KEY"] == KEY
    assert fake.last().url.path == "/api/public/auth/CheckApiKey"
    assert hr.check_api_key() is False
    with pytest.raises(HeyReachServerError):
        hr.check_api_key()


def test_heyreach_create_list(hr, fake, canned, reply):
    fake.on("POST", "/list/CreateEmptyList", reply(200, canned("heyreach", "list_created")))
    created = hr.create_list("student-42 leads")
    assert created.id == 412345 and created.list_type == "USER_LIST" and created.count == 0
    assert fake.body() == {"name": "student-42 leads", "type": "USER_LIST"}


def test_heyreach_iter_lists_pages_by_offset_and_stops_on_total(hr, fake, canned, reply):
    fake.on(
        "POST",
        "/list/GetAll",
        reply(200, canned("heyreach", "lists_page1")),
        reply(200, canned("heyreach", "lists_page2")),
        reply(500, {}),
    )
    lists = list(hr.iter_lists(keyword="student-42", page_size=2))
    assert [item.id for item in lists] == [1, 2, 3]
    assert [json.loads(r.content) for r in fake.requests] == [
        {"offset": 0, "limit": 2, "keyword": "student-42"},
        {"offset": 2, "limit": 2, "keyword": "student-42"},
    ]
    assert lists[0].count == 5 and lists[1].count == 12  # totalItemsCount / string count


def test_heyreach_find_list_by_name_is_exact_and_skips_deleted(hr, fake, canned, reply):
    fake.on(
        "POST",
        "/list/GetAll",
        reply(200, canned("heyreach", "lists_page1")),
        reply(200, canned("heyreach", "lists_page2")),
    )
    found = hr.find_list_by_name("student-42 leads")
    assert found is not None and found.id == 3


def test_heyreach_iter_lists_stops_on_empty_page(hr, fake, reply):
    fake.on(
        "POST",
        "/list/GetAll",
        reply(200, {"items": [{"id": 1, "name": "a"}]}),
        reply(200, {"items": []}),
        reply(500, {}),
    )
    assert [item.id for item in hr.iter_lists()] == [1]
    assert len(fake.requests) == 2


@pytest.mark.parametrize("body", [{"totalCount": 0}, {"errorMessage": "ok"}, {}, "null"])
def test_heyreach_a_list_page_without_items_is_unreadable_not_empty(hr, fake, reply, body):
    # find_list_by_name decides whether to create the student's list: "no rows" would make a
    # second one.
    fake.on("POST", "/list/GetAll", reply(200, body))
    with pytest.raises(HeyReachResponseValidationError):
        hr.find_list_by_name("student-42 leads")


def test_heyreach_get_list(hr, fake, canned, reply):
    fake.on("GET", "/list/GetById", reply(200, canned("heyreach", "list_created")))
    assert hr.get_list(412345).name == "student-42 leads"
    assert fake.last().url.params["listId"] == "412345"


def test_heyreach_add_leads_splits_into_batches_of_100(hr, fake, reply):
    def answer(request: httpx.Request) -> httpx.Response:
        n = len(json.loads(request.content)["leads"])
        return reply(200, {"addedLeadsCount": n - 1, "updatedLeadsCount": 1, "failedLeadsCount": 0})

    fake.on("POST", "/list/AddLeadsToListV2", answer)
    result = hr.add_leads(7, _leads(250))
    sizes = [len(json.loads(r.content)["leads"]) for r in fake.requests]
    assert sizes == [100, 100, 50]
    assert all(json.loads(r.content)["listId"] == 7 for r in fake.requests)
    assert result.batches == 3
    assert result.added_leads_count == 247 and result.updated_leads_count == 3
    assert result.total == 250
    first = json.loads(fake.requests[0].content)["leads"][0]
    assert first == {"profileUrl": "https://www.linkedin.com/in/person-0", "firstName": "P0"}


def test_heyreach_add_leads_accepts_the_alternative_answer_shape(hr, fake, reply):
    fake.on(
        "POST",
        "/list/AddLeadsToListV2",
        reply(200, {"addedLeadsCount": 1, "totalLeads": 2, "duplicateLeads": 1}),
    )
    result = hr.add_leads(7, _leads(2))
    assert result.added_leads_count == 1 and result.updated_leads_count == 1


def test_heyreach_add_leads_validates_everything_before_the_first_call(hr, fake):
    leads = _leads(150)
    leads[120]["profile_url"] = "https://example.com/not-linkedin"
    with pytest.raises(ValueError, match="linkedin.com/in/"):
        hr.add_leads(7, leads)
    with pytest.raises(ValueError):
        hr.add_leads(7, [])
    with pytest.raises(ValueError):
        Lead(
            profile_url="https://linkedin.com/in/x",
            custom_user_fields=[{"name": "bad name", "value": "v"}],
        )
    assert fake.requests == []


def test_heyreach_get_lead_count_uses_a_one_row_page(hr, fake, canned, reply):
    fake.on("POST", "/list/GetLeadsFromList", reply(200, canned("heyreach", "leads_page")))
    assert hr.get_lead_count(7) == 250
    assert fake.body() == {"offset": 0, "limit": 1, "listId": 7}


def test_heyreach_iter_leads(hr, fake, canned, reply):
    page = canned("heyreach", "leads_page")
    page["totalCount"] = 1
    fake.on("POST", "/list/GetLeadsFromList", reply(200, page))
    leads = list(hr.iter_leads(7))
    assert leads[0].linkedin_id == "ACoAAA1" and leads[0].profile_url.endswith("/in/ada")


def test_heyreach_404(hr, fake, canned, reply):
    fake.on("GET", "/list/GetById", reply(404, canned("heyreach", "error_404")))
    with pytest.raises(HeyReachNotFoundError, match="The list does not exist!") as info:
        hr.get_list(1)
    assert isinstance(info.value, generic.NotFoundError) and not info.value.retryable


def test_heyreach_429_with_retry_after(hr, fake, reply):
    fake.on(
        "POST",
        "/list/GetAll",
        reply(429, {"errorMessage": "Too many requests"}, **{"Retry-After": "60"}),
    )
    with pytest.raises(HeyReachRateLimitError) as info:
        list(hr.iter_lists())
    assert info.value.retryable and info.value.retry_after == 60.0


def test_heyreach_5xx(hr, fake, reply):
    fake.on("POST", "/list/CreateEmptyList", reply(500, ""))
    with pytest.raises(HeyReachServerError) as info:
        hr.create_list("x")
    assert info.value.retryable and "Internal Server Error" in str(info.value)


def test_heyreach_timeout(hr, fake):
    fake.on("POST", "/list/AddLeadsToListV2", httpx.WriteTimeout("timed out"))
    with pytest.raises(HeyReachTimeoutError) as info:
        hr.add_leads(7, _leads(1))
    assert info.value.retryable


def test_heyreach_401(hr, fake, reply):
    fake.on("POST", "/list/GetAll", reply(401, ""))
    with pytest.raises(HeyReachAuthenticationError):
        hr.find_list_by_name("x")


def test_heyreach_400(hr, fake, reply):
    fake.on("POST", "/list/AddLeadsToListV2", reply(400, {"errorMessage": "Invalid profileUrl"}))
    with pytest.raises(HeyReachBadRequestError, match="Invalid profileUrl"):
        hr.add_leads(7, _leads(1))


@pytest.mark.parametrize("body", ["<html/>", {"id": "not-a-number"}, [1, 2]])
def test_heyreach_malformed_list(hr, fake, reply, body):
    fake.on("GET", "/list/GetById", reply(200, body))
    with pytest.raises(HeyReachResponseValidationError):
        hr.get_list(1)


def test_heyreach_missing_total_count_is_malformed(hr, fake, reply):
    fake.on("POST", "/list/GetLeadsFromList", reply(200, {"items": []}))
    with pytest.raises(HeyReachResponseValidationError):
        hr.get_lead_count(1)


def test_heyreach_from_settings(fake):
    from core.settings import ConfigurationError

    settings = SimpleNamespace(
        heyreach_api_key=SecretStr(KEY),
        heyreach_base_url="https://hr.test/api/public",
        vendor_timeout_s=20.0,
        vendor_connect_timeout_s=5.0,
    )
    with HeyReachClient.from_settings(settings, transport=fake.transport) as client:
        assert KEY not in repr(client)
    settings.heyreach_api_key = SecretStr("")
    with pytest.raises(ConfigurationError):
        HeyReachClient.from_settings(settings)
