"""Which errors a vendor task retries (a narrow unit: exceptions built by hand)."""

from __future__ import annotations

import httpx
import pytest
from prefect.concurrency._asyncio import ConcurrencySlotAcquisitionError
from sqlalchemy.exc import OperationalError

from tasks.errors import ProvisioningBlockedError
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
