"""Wizard drafts: the student's choices, saved at every step so they survive leaving and returning."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.models import WizardDraft

ORDER = "order"
UPGRADE = "upgrade"
REPLACEMENT = "replacement"

DEFAULTS: dict[str, dict[str, Any]] = {
    ORDER: {
        "tier_id": None,
        "brand": "",
        "candidates": [],
        "domains": [],
        "first_name": "",
        "last_name": "",
        "patterns": [],
        "forward_to": None,
        "checkout_attempt": 0,
    },
    UPGRADE: {
        "upgrade_id": None,
        "to_tier_id": None,
        "brand": "",
        "candidates": [],
        "domains": [],
    },
    # A burned domain's replacement: the domain being replaced and its one successor.
    REPLACEMENT: {
        "domain_id": None,
        "brand": "",
        "candidates": [],
        "domains": [],
    },
}


def load(db: Session, user_id: int, kind: str) -> dict[str, Any]:
    """Return the draft's data with defaults filled in (an empty draft if none is saved)."""
    row = db.scalar(
        select(WizardDraft).where(WizardDraft.user_id == user_id, WizardDraft.kind == kind)
    )
    data = dict(DEFAULTS[kind])
    if row is not None and isinstance(row.data, dict):
        data.update({k: v for k, v in row.data.items() if k in data})
    return data


def save(db: Session, user_id: int, kind: str, data: dict[str, Any]) -> None:
    """Store the draft (the caller commits)."""
    row = db.scalar(
        select(WizardDraft).where(WizardDraft.user_id == user_id, WizardDraft.kind == kind)
    )
    if row is None:
        row = WizardDraft(user_id=user_id, kind=kind, data=dict(data))
        db.add(row)
        try:
            with db.begin_nested():
                db.flush()
        except IntegrityError:
            # A second tab created it first: update that one.
            row = db.scalars(
                select(WizardDraft).where(WizardDraft.user_id == user_id, WizardDraft.kind == kind)
            ).one()
            row.data = dict(data)
    else:
        # Assign a new dict: JSON columns only notice replacement, not in-place changes.
        row.data = dict(data)


def clear(db: Session, user_id: int, kind: str) -> None:
    """Forget a draft (after its purchase is paid)."""
    row = db.scalar(
        select(WizardDraft).where(WizardDraft.user_id == user_id, WizardDraft.kind == kind)
    )
    if row is not None:
        db.delete(row)
