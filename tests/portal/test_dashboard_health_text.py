"""Dashboard health wording: advice said once, young mailboxes not called at risk."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import utcnow
from core.health import ADVICE
from core.health import HealthLabel
from core.models import Mailbox
from tests.factories import add_snapshots
from tests.factories import make_provision


@pytest.mark.parametrize("label", [HealthLabel.AT_RISK, HealthLabel.BURNED])
def test_the_advice_of_an_at_risk_mailbox_is_printed_once(
    client: Any, ann: Any, session: Session, label: HealthLabel
) -> None:
    provision = make_provision(session, ann, status="active", activated_at=utcnow())
    add_snapshots(session, provision, days=20)
    box = session.scalars(select(Mailbox).order_by(Mailbox.id)).first()
    assert box is not None
    box.health_label = label.value
    session.commit()
    page = client.get("/dashboard").get_data(as_text=True)
    assert page.count(ADVICE[label]) == 1
    mailbox_page = client.get(f"/dashboard/mailboxes/{box.id}").get_data(as_text=True)
    assert mailbox_page.count(ADVICE[label]) == 1


def test_a_two_day_old_mailbox_with_a_low_score_is_warming_not_at_risk(
    client: Any, ann: Any, session: Session
) -> None:
    provision = make_provision(session, ann, status="active", activated_at=utcnow())
    add_snapshots(session, provision, days=2, health=63.0)  # no stored label: computed here
    session.commit()
    page = client.get("/dashboard").get_data(as_text=True)
    assert "at risk" not in page.lower()
    assert "Not yet: 13 days of warmup left." in page  # started yesterday
    assert "health-warming" in page
