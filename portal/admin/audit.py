"""The audit log page: who did what, when and from where; filtered, paged, newest first."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from dataclasses import dataclass
from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import time
from datetime import timedelta
from typing import Any

from flask import render_template
from flask import request
from flask.typing import ResponseReturnValue
from sqlalchemy import Select
from sqlalchemy import and_
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.crud import get_user_by_email
from core.crud import normalize_email
from core.models import AuditLog
from core.models import Provision
from core.models import User
from portal.admin import bp
from portal.db import get_db
from portal.extensions import admin_required

PER_PAGE = 50


@dataclass
class AuditFilters:
    """What the page is filtered by (from the query string; empty means any)."""

    actor: str = ""
    action: str = ""
    student: str = ""
    since: str = ""
    until: str = ""
    page: int = 1

    def query_args(self, **changes: Any) -> dict[str, Any]:
        """The filters as url_for arguments (empty ones left out), with ``changes`` applied."""
        values = {**asdict(self), **changes}
        return {key: value for key, value in values.items() if value not in ("", None, 1)}


def _day(value: str, errors: list[str], name: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        errors.append(f"{name}: enter a date as YYYY-MM-DD.")
        return None


def parse_filters(args: Mapping[str, str]) -> tuple[AuditFilters, list[str]]:
    """Read the filters from the query string; return them and what was wrong with them."""
    errors: list[str] = []
    text = {key: (args.get(key) or "").strip() for key in ("actor", "action", "student")}
    for key, value in text.items():
        if len(value) > 254 or any(ord(ch) < 32 for ch in value):
            errors.append(f"{key}: too long or not text.")
            text[key] = ""
    page = args.get("page") or "1"
    if not page.isdigit() or not 1 <= int(page) <= 100_000:
        errors.append("page: a page number, please.")
        page = "1"
    filters = AuditFilters(
        actor=normalize_email(text["actor"]) if text["actor"] else "",
        action=text["action"],
        student=normalize_email(text["student"]) if text["student"] else "",
        since=(args.get("since") or "").strip()[:10],
        until=(args.get("until") or "").strip()[:10],
        page=int(page),
    )
    since = _day(filters.since, errors, "From")
    until = _day(filters.until, errors, "To")
    if since and until and since > until:
        errors.append("From is after To.")
    return filters, errors


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def filtered(db: Session, filters: AuditFilters) -> Select[tuple[AuditLog]] | None:
    """The rows matching ``filters``, newest first; None when a named person does not exist."""
    stmt = select(AuditLog).order_by(AuditLog.id.desc())
    if filters.actor:
        actor = get_user_by_email(session=db, email=filters.actor)
        if actor is None:
            return None
        stmt = stmt.where(AuditLog.actor_id == actor.id)
    if filters.action:
        stmt = stmt.where(AuditLog.action == filters.action)
    if filters.since:
        stmt = stmt.where(AuditLog.created_at >= _midnight(date.fromisoformat(filters.since)))
    if filters.until:
        end = date.fromisoformat(filters.until) + timedelta(days=1)
        stmt = stmt.where(AuditLog.created_at < _midnight(end))
    if filters.student:
        student = get_user_by_email(session=db, email=filters.student)
        if student is None:
            return None
        # About the student: their account (sign-ins, resets, revocations) or their order.
        orders = select(Provision.id).where(Provision.user_id == student.id)
        stmt = stmt.where(
            or_(
                and_(AuditLog.target_type == "user", AuditLog.target_id == student.id),
                and_(AuditLog.target_type == "provision", AuditLog.target_id.in_(orders)),
            )
        )
    return stmt


def _labels(db: Session, rows: list[AuditLog]) -> tuple[dict[int, str], dict[int, str]]:
    """Emails of the users rows name, and the owner's email of the orders they name."""
    user_ids = {r.actor_id for r in rows if r.actor_id} | {
        r.target_id for r in rows if r.target_type == "user" and r.target_id
    }
    order_ids = {r.target_id for r in rows if r.target_type == "provision" and r.target_id}
    users = db.execute(select(User.id, User.email).where(User.id.in_(user_ids)))
    orders = db.execute(
        select(Provision.id, User.email)
        .join(User, User.id == Provision.user_id)
        .where(Provision.id.in_(order_ids))
    )
    emails = {user_id: email for user_id, email in users}
    owners = {order_id: email for order_id, email in orders}
    return emails, owners


@bp.get("/audit", endpoint="audit")
@admin_required
def audit_page() -> ResponseReturnValue:
    """The audit log, filtered by actor, action, dates and student; 50 rows a page."""
    db = get_db()
    filters, errors = parse_filters(request.args)
    stmt = None if errors else filtered(db, filters)
    rows: list[AuditLog] = []
    if stmt is not None:
        offset = (filters.page - 1) * PER_PAGE
        rows = list(db.scalars(stmt.offset(offset).limit(PER_PAGE + 1)))
    has_next = len(rows) > PER_PAGE
    rows = rows[:PER_PAGE]
    emails, owners = _labels(db, rows)
    actions = list(db.scalars(select(AuditLog.action).distinct().order_by(AuditLog.action)))
    page = render_template(
        "admin/audit.html",
        rows=rows,
        emails=emails,
        owners=owners,
        filters=filters,
        errors=errors,
        actions=actions,
        has_next=has_next,
    )
    return page, 400 if errors else 200
