"""Which errors a vendor task retries, and that a failed Prefect slot request is one of them."""

from __future__ import annotations

import socket

import httpx
import pytest
from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError
from prefect.settings import PREFECT_API_URL
from prefect.settings import temporary_settings
from sqlalchemy.exc import OperationalError

from tasks.errors import ProvisioningBlockedError
from tasks.pacing import PrefectSlots
from tasks.pacing import take_slot
from tasks.policies import is_transient


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (
            ConcurrencySlotAcquisitionError("Unable to acquire concurrency slots on ['zapmail']"),
            True,
        ),
        (httpx.ConnectError("Prefect API unreachable"), True),
        (OperationalError("SELECT 1", {}, Exception("gone"), connection_invalidated=True), True),
        (
            OperationalError("SELECT 1", {}, Exception("syntax"), connection_invalidated=False),
            False,
        ),
        (ProvisioningBlockedError("taken", student_message="x", remedy="another_domain"), False),
        (ValueError("a bug"), False),
    ],
)
def test_only_what_can_succeed_later_is_retried(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient


def _key(step: str, addresses: list[str]) -> str:
    from tasks.policies import business_key

    policy = business_key(step, "provision_id", "addresses")
    return policy.cache_key_fn(None, {"provision_id": 7, "addresses": addresses})


def test_short_business_keys_stay_readable() -> None:
    assert _key("mailboxes", ["a@x.com"]).startswith("mailboxes:7:")


def test_long_business_keys_fit_a_file_name_and_still_tell_inputs_apart() -> None:
    # The key names the cached result's file: Growth's 10 addresses used to exceed 255 bytes.
    many = [f"firstname.lastname{i}@some-longer-brand-domain.com" for i in range(10)]
    key = _key("mailboxes", many)
    assert len(key.encode()) <= 200 and key.startswith("mailboxes:sha256:")
    assert key == _key("mailboxes", list(reversed(many))), "order must not matter"
    assert key != _key("mailboxes", many[:-1])


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_prefect_api_fails_a_slot_request_with_the_error_we_retry() -> None:
    # Pins the public import: prefect's own rate_limit must still raise this class for an
    # unreachable API, or is_transient would stop retrying a Prefect server restart.
    api = f"http://127.0.0.1:{_closed_port()}/api"
    # Prefect keeps one slot service (and its API client) per limit name for the process: a name
    # of this test's own, so no later test's requests go to the closed port.
    with (
        temporary_settings({PREFECT_API_URL: api}),
        pytest.raises(ConcurrencySlotAcquisitionError) as caught,
    ):
        take_slot("test-unreachable-prefect-api")
    assert is_transient(caught.value)


def test_the_pacer_reports_an_unreachable_api_as_prefect_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Unreachable:
        def increment_concurrency_slots(self, **_kwargs: object) -> None:
            raise httpx.ConnectError("Prefect API unreachable")

    slots = PrefectSlots()
    monkeypatch.setattr(slots, "_api", Unreachable)  # no server: the call fails at once
    with pytest.raises(ConcurrencySlotAcquisitionError) as caught:
        slots.ask("plusvibe")
    assert is_transient(caught.value)
