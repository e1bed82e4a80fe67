"""The step mirror (tasks/records.py) on its own, against the test database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import ProvisioningStep
from core.settings import Settings
from tasks import records
from tasks import runtime
from tests.factories import make_paid_provision


@pytest.fixture
def mirror(settings: Settings, session: Session) -> Iterator[Session]:
    """The task runtime on the test database."""
    runtime.use_settings(settings)
    try:
        yield session
    finally:
        runtime.use_settings(None)


def test_a_step_nobody_prepared_is_mirrored_from_its_first_attempt(mirror: Session) -> None:
    """Found in review: a key without prepare_steps crashed on ``attempt`` (None + 1)."""
    provision = make_paid_provision(mirror, email="mirror@student.test", domains=["a-b.com"])
    mirror.commit()

    with records.step(provision.id, "profile-1:apply") as details:
        details["note"] = "done"

    mirror.expire_all()
    row = mirror.scalars(
        select(ProvisioningStep).where(ProvisioningStep.step_key == "profile-1:apply")
    ).one()
    assert (row.status, row.attempt, row.details) == ("completed", 1, {"note": "done"})
