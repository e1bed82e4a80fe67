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
