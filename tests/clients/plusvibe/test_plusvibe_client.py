"""Unit tests for PlusVibeClient over httpx.MockTransport with canned PlusVibe bodies."""

from __future__ import annotations

from types import SimpleNamespace

import httpx
import pytest
from pydantic import SecretStr

from clients import errors as generic
from clients.plusvibe import PlusVibeAuthenticationError
from clients.plusvibe import PlusVibeBadRequestError
from clients.plusvibe import PlusVibeClient
from clients.plusvibe import PlusVibeNotFoundError
from clients.plusvibe import PlusVibeRateLimitError
from clients.plusvibe import PlusVibeResponseValidationError
from clients.plusvibe import PlusVibeServerError
from clients.plusvibe import PlusVibeTimeoutError
from clients.plusvibe import WarmupSettings

KEY = "pv-key-0123456789abcdef"
OPERATOR_WS = "64b7f0c2a1b2c3d4e5f60718"
STUDENT_WS = "64b7f0c2a1b2c3d4e5f60719"


@pytest.fixture
def pv(fake):
    with PlusVibeClient(
        KEY, base_url="https://pv.test/api/v1", transport=fake.transport, workspace_id=OPERATOR_WS
    ) as client:
        yield client


def test_plusvibe_lists_workspaces_with_underscore_ids(pv, fake, canned, reply):
    fake.on("GET", "/authenticate", reply(200, canned("plusvibe", "authenticate")))
    workspaces = pv.list_workspaces()
    assert [(w.id, w.name) for w in workspaces] == [
        (OPERATOR_WS, "Operator HQ"),
        (STUDENT_WS, "student-42"),
    ]
    assert fake.last().headers["x-api-key"] == KEY
    assert fake.last().url.path == "/api/v1/authenticate"
    assert pv.find_workspace_by_name("student-42").id == STUDENT_WS


def test_plusvibe_create_workspace_uses_operator_workspace_as_auth(pv, fake, canned, reply):
    fake.on("POST", "/workspaces/add/", reply(200, canned("plusvibe", "workspace_added")))
    workspace = pv.create_workspace("student-42")
    assert workspace.id == "65aa00000000000000000001" and workspace.name == "student-42"
    assert fake.last().url.path == "/api/v1/workspaces/add/"  # trailing slash as documented
    assert fake.body() == {"workspace_id": OPERATOR_WS, "workspace_name": "student-42"}


def test_plusvibe_auth_workspace_falls_back_to_authenticate(fake, canned, reply):
    fake.on("GET", "/authenticate", reply(200, canned("plusvibe", "authenticate")))
    fake.on("POST", "/workspaces/add/", reply(200, {"data": {"id": "new-ws"}}))
    with PlusVibeClient(KEY, base_url="https://pv.test/api/v1", transport=fake.transport) as client:
        assert client.create_workspace("x").id == "new-ws"
    assert fake.body("/workspaces/add/")["workspace_id"] == OPERATOR_WS


def test_plusvibe_create_workspace_without_id_is_a_validation_error(pv, fake, reply):
    fake.on("POST", "/workspaces/add/", reply(200, {"status": "success"}))
    with pytest.raises(PlusVibeResponseValidationError):
        pv.create_workspace("x")


def test_plusvibe_create_client_wraps_the_password(pv, fake, canned, reply):
    fake.on("POST", "/client", reply(200, canned("plusvibe", "client_created")))
    login = pv.create_client(
        email="student42@example.com",
        first_name="Stu",
        last_name="Dent",
        business_name="Acme",
        workspace_ids=[STUDENT_WS],
    )
    assert login.client_id == "cl_7f3a" and login.email == "student42@example.com"
    assert isinstance(login.password, SecretStr)
    assert login.password.get_secret_value() == "GENERATED-ONE-TIME-PASSWORD"
    assert "GENERATED-ONE-TIME-PASSWORD" not in repr(login) + str(login)
    assert fake.body() == {
        "workspace_id": OPERATOR_WS,
        "client_email": "student42@example.com",
        "client_first_name": "Stu",
        "client_last_name": "Dent",
        "client_business_name": "Acme",
        "workspaces": [{"id": STUDENT_WS, "permissions": ["FULL_ACCESS"], "hide_labels": []}],
    }


def test_plusvibe_create_client_tolerates_other_shapes(pv, fake, reply):
    fake.on("POST", "/client", reply(200, {"status": "success", "data": {"_id": "cl_9"}}))
    login = pv.create_client(
        email="s@example.com", first_name="S", last_name="T", business_name="B", workspace_ids=["w"]
    )
    assert login.client_id == "cl_9" and login.email == "s@example.com" and login.password is None


def test_plusvibe_list_clients_and_find_by_email(pv, fake, canned, reply):
    fake.on("GET", "/client/", reply(200, canned("plusvibe", "clients_list")))
    clients = pv.list_clients()
    assert [c.id for c in clients] == ["cl_1", "cl_7f3a"]
    assert fake.last().url.params["workspace_id"] == OPERATOR_WS
    assert fake.last().url.path == "/api/v1/client/"
    assert "SHOULD-BE-MASKED" not in repr(clients)
    assert pv.find_client_by_email("student42@EXAMPLE.com").id == "cl_7f3a"


def test_plusvibe_set_client_password_body(pv, fake, reply):
    fake.on("PUT", "/client", reply(200, {"status": "success"}))
    pv.set_client_password("cl_7f3a", SecretStr("NewPassw0rd!"))
    assert fake.body() == {
        "workspace_id": OPERATOR_WS,
        "client_id": "cl_7f3a",
        "client_password": "NewPassw0rd!",
    }


def test_plusvibe_iter_accounts_pages_with_skip_and_reads_minus_one_as_none(
    pv, fake, canned, reply
):
    fake.on(
        "GET",
        "/account/list",
        reply(200, canned("plusvibe", "accounts_page1")),
        reply(200, canned("plusvibe", "accounts_page2")),
        reply(500, {}),
    )
    accounts = list(pv.iter_accounts(STUDENT_WS, page_size=2))
    assert [a.email for a in accounts] == ["tim@getacme.com", "ann@getacme.com", "bob@acme.com"]
    params = [dict(r.url.params) for r in fake.requests]
    assert params == [
        {"workspace_id": STUDENT_WS, "skip": "0", "limit": "2"},
        {"workspace_id": STUDENT_WS, "skip": "2", "limit": "2"},
    ]
    tim, ann, _ = accounts
    assert tim.id == "66aa00000000000000000001" and ann.id == "66aa00000000000000000002"  # id / _id
    health = tim.payload.analytics.health_scores
    assert health.overall_7d == 97 and health.google_7d == 98
    assert health.miss_warmup_rate_1d == 0  # zero stays zero
    assert health.bounce_rate_3d is None  # -1 = no data
    assert tim.payload.analytics.reply_rates.reply_rate_7d is None
    assert tim.payload.analytics.reply_rates.ooo_reply_rate_7d is None  # "-1"
    assert tim.payload.warmup.reply_rate == 35  # read as a percent
    assert tim.warmup_active and not ann.warmup_active
    assert ann.payload.analytics.health_scores.overall_7d is None
    assert "SMTP-SECRET-PW" not in repr(tim)


def test_plusvibe_iter_accounts_filters_by_email(pv, fake, canned, reply):
    fake.on("GET", "/account/list", reply(200, canned("plusvibe", "accounts_page2")))
    assert [a.email for a in pv.iter_accounts(STUDENT_WS, email="bob@acme.com")] == ["bob@acme.com"]
    assert fake.last().url.params["email"] == "bob@acme.com"


def test_plusvibe_iter_accounts_stops_when_skip_is_ignored(pv, fake, canned, reply):
    fake.on("GET", "/account/list", reply(200, canned("plusvibe", "accounts_page1")))
    assert len(list(pv.iter_accounts(STUDENT_WS, page_size=2))) == 2
    assert len(fake.requests) == 2


def test_plusvibe_page_size_is_capped_at_100(pv):
    with pytest.raises(ValueError):
        pv.list_accounts_page(STUDENT_WS, limit=101)


def test_plusvibe_warmup_settings_write_reply_rate_on_0_1_scale():
    settings = WarmupSettings(
        max_daily_limit=30,
        initial_daily_limit=2,
        pace_increment=2,
        slow_rampup=True,
        randomize=False,
        randomize_percent=20,
        reply_rate_percent=30,
        daily_limit=30,
        interval_minutes=5,
    )
    assert settings.to_payload() == {
        "warmup_max_daily_limit": 30,
        "warmup_initial_daily_limit": 2,
        "warmup_pace_increment": 2,
        "bulk_warmup_is_slow_rampup": "yes",
        "warmup_randomize": "no",
        "warmup_randomize_num": 20,
        "warmup_reply_rate": 0.3,
        "daily_limit": 30,
        "interval_limit_in_min": 5,
    }
    with pytest.raises(ValueError):
        WarmupSettings(max_daily_limit=0)  # PlusVibe's minimum is 1
    with pytest.raises(ValueError):
        WarmupSettings(reply_rate_percent=130)


def test_plusvibe_bulk_update_accounts_body(pv, fake, reply):
    fake.on("PUT", "/account/bulk-update", reply(200, {"status": "success"}))
    pv.bulk_update_accounts(
        STUDENT_WS, ["a1", "a2"], WarmupSettings(reply_rate_percent=35, max_daily_limit=30)
    )
    assert fake.body() == {
        "workspace_id": STUDENT_WS,
        "ids": ["a1", "a2"],
        "warmup_max_daily_limit": 30,
        "warmup_reply_rate": 0.35,
    }
    with pytest.raises(ValueError):
        pv.bulk_update_accounts(STUDENT_WS, ["a1"], WarmupSettings())
    with pytest.raises(ValueError):
        pv.bulk_update_accounts(STUDENT_WS, [], WarmupSettings(max_daily_limit=3))


def test_plusvibe_set_warmup_status_uses_patch(pv, fake, canned, reply):
    fake.on(
        "PATCH", "/account/bulk-update-warmup", reply(200, canned("plusvibe", "warmup_updated"))
    )
    result = pv.set_warmup_status(STUDENT_WS, ["a1", "a2"], True)
    assert result.updated_count == 2
    assert fake.last().method == "PATCH"
    assert fake.body() == {
        "workspace_id": STUDENT_WS,
        "ids": ["a1", "a2"],
        "warmup_status": "ACTIVE",
    }
    pv.set_warmup_status(STUDENT_WS, ["a1"], False)
    assert fake.body()["warmup_status"] == "INACTIVE"


def test_plusvibe_404(pv, fake, reply):
    fake.on("GET", "/account/list", reply(404, {"message": "Workspace not found"}))
    with pytest.raises(PlusVibeNotFoundError) as info:
        pv.list_accounts(STUDENT_WS)
    assert isinstance(info.value, generic.NotFoundError) and "Workspace not found" in str(
        info.value
    )


def test_plusvibe_429_with_retry_after(pv, fake, reply):
    fake.on("GET", "/account/list", reply(429, {"error": "rate limited"}, **{"Retry-After": "1.5"}))
    with pytest.raises(PlusVibeRateLimitError) as info:
        pv.list_accounts(STUDENT_WS)
    assert info.value.retryable and info.value.retry_after == 1.5
    assert "rate limited" in str(info.value)


def test_plusvibe_5xx_is_retryable(pv, fake, reply):
    fake.on(
        "PATCH",
        "/account/bulk-update-warmup",
        reply(500, {"errors": ["boom", {"message": "db down"}]}),
    )
    with pytest.raises(PlusVibeServerError) as info:
        pv.set_warmup_status(STUDENT_WS, ["a"], True)
    assert info.value.retryable and "boom; db down" in str(info.value)


def test_plusvibe_timeout(pv, fake):
    fake.on("GET", "/authenticate", httpx.ReadTimeout("timed out"))
    with pytest.raises(PlusVibeTimeoutError) as info:
        pv.list_workspaces()
    assert info.value.retryable


def test_plusvibe_401(pv, fake, reply):
    fake.on("GET", "/authenticate", reply(401, {"message": "Invalid API key"}))
    with pytest.raises(PlusVibeAuthenticationError):
        pv.list_workspaces()


def test_plusvibe_400(pv, fake, canned, reply):
    fake.on("PUT", "/account/bulk-update", reply(400, canned("plusvibe", "error_400")))
    with pytest.raises(PlusVibeBadRequestError, match="workspace_id is invalid"):
        pv.bulk_update_accounts("bad", ["a"], WarmupSettings(max_daily_limit=3))


@pytest.mark.parametrize(
    "body",
    [
        "not json at all",
        {"accounts": [{"id": "a"}]},
        {"accounts": [{"email": "x@y.z"}]},
        # A 2xx without the rows is unreadable, never "no accounts" (exports are decided by it).
        {"status": "success", "message": "ok"},
        {"data": {"message": "ok"}},
        {},
    ],
)
def test_plusvibe_malformed_account_list(pv, fake, reply, body):
    fake.on("GET", "/account/list", reply(200, body))
    with pytest.raises(PlusVibeResponseValidationError):
        pv.list_accounts(STUDENT_WS)


def test_plusvibe_from_settings_passes_the_operator_workspace(fake):
    from core.settings import ConfigurationError

    settings = SimpleNamespace(
        plusvibe_api_key=SecretStr(KEY),
        plusvibe_base_url="https://pv.test/api/v1",
        plusvibe_workspace_id=OPERATOR_WS,
        vendor_timeout_s=20.0,
        vendor_connect_timeout_s=5.0,
    )
    with PlusVibeClient.from_settings(settings, transport=fake.transport) as client:
        assert client.workspace_id == OPERATOR_WS
        assert KEY not in repr(client)
    settings.plusvibe_api_key = None
    with pytest.raises(ConfigurationError):
        PlusVibeClient.from_settings(settings)
