"""The signed-in student's own provision, and the statuses that open the dashboard (M4 scoping)."""

from __future__ import annotations

from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from core.models import Provision
from core.models import ProvisionStatus
from portal.db import get_db

DASHBOARD_STATES = {
    ProvisionStatus.ACTIVE.value,
    ProvisionStatus.PAST_DUE.value,
    ProvisionStatus.UPGRADING.value,
    ProvisionStatus.CANCELLED.value,
}


def own_provision(*, with_tier: bool = False) -> Provision | None:
    """The signed-in student's provision (with its tier loaded when asked), or None."""
    query = select(Provision).where(Provision.user_id == current_user.id)
    if with_tier:
        query = query.options(selectinload(Provision.tier))
    return get_db().scalar(query)
