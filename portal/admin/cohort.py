"""The cohort page: every student's order, current step, last error and readiness, read once.

The step titles and step-log rows the provision page shows live here too, beside the cohort's
own reading of the same steps.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from core.db import utcnow
from core.health import HealthLabel
from core.health import mailbox_verdict
from core.health import overall_verdict
from core.models import Cohort
from core.models import Domain
from core.models import Mailbox
from core.models import Provision
from core.models import ProvisioningStep
from core.models import ProvisionStatus
from core.models import Role
from core.models import StepStatus
from core.models import Tier
from core.models import User
from core.pipeline import PROVISION_STEPS
from core.pipeline import STEPS
from core.pipeline import base_key
from portal.admin import bp
from portal.admin.capacity import capacity_panel
from portal.db import get_db
from portal.extensions import admin_required

SORT_KEYS = ("email", "tier", "status", "step", "time_in_step", "created")
ATTENTION = {ProvisionStatus.FAILED.value, ProvisionStatus.PAST_DUE.value}
# A step that is under way or stopped: the one the cohort shows as "current".
LIVE_STEP = (StepStatus.RUNNING.value, StepStatus.WAITING.value, StepStatus.FAILED.value)


def step_title(key: str) -> str:
    """The student-facing title of a step key (an upgrade's steps say so)."""
    base = base_key(key)
    info = STEPS.get(base)
    title = info.title if info else base
    return f"Upgrade: {title}" if key.startswith("upgrade-") else title


def step_log(steps: list[ProvisioningStep], now: datetime) -> list[dict[str, Any]]:
    """The admin step log: the provision's steps in pipeline order, then each upgrade's in theirs.

    Each row has the step's title and key, status, start time to the second, how long it took
    (or has taken so far), the attempt where one was made (waits poll, they have no attempts)
    and the errors.
    """
    order = {key: i for i, key in enumerate(PROVISION_STEPS)}
    ordered = sorted(
        steps,
        key=lambda s: (
            s.step_key.split(":")[0] if ":" in s.step_key else "",
            order.get(base_key(s.step_key), 99),
            s.id,
        ),
    )
    return [
        {
            "title": step_title(s.step_key),
            "key": s.step_key,
            "status": s.status,
            "started": s.started_at.strftime("%Y-%m-%d %H:%M:%S") if s.started_at else "—",
            "took": _took(s, now),
            "attempt": str(s.attempt) if s.attempt else "—",
            "retried": s.attempt > 1,
            "error_message": s.error_message,
            "error_detail": s.error_detail,
        }
        for s in ordered
    ]


def _took(step: ProvisioningStep, now: datetime) -> str:
    """How long the step took ("4m 05s"), or "… so far" while it runs or waits."""
    if step.started_at is None or step.status == StepStatus.PENDING.value:
        return "—"
    seconds = max(0, int(((step.finished_at or now) - step.started_at).total_seconds()))
    # To the second: an admin compares steps that take seconds with ones that take minutes.
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    text = (
        f"{hours}h {minutes:02d}m"
        if hours
        else f"{minutes}m {secs:02d}s"
        if minutes
        else f"{secs}s"
    )
    return text if step.finished_at else f"{text} so far"


def _current_step(provision: Provision, own: list[Any], row: dict[str, Any], now: datetime) -> None:
    order = {key: i for i, key in enumerate(PROVISION_STEPS)}
    own.sort(key=lambda s: (s.step_key.startswith("upgrade-"), order.get(s.step_key, 99), s.id))
    current = next((s for s in own if s.status in LIVE_STEP), None)
    if current is None and provision.status == ProvisionStatus.PROVISIONING.value:
        current = next((s for s in own if s.status == StepStatus.PENDING.value), None)
    if current is not None:
        row["step"] = step_title(current.step_key)
        row["step_key"] = current.step_key
        row["step_status"] = current.status
        if current.started_at is not None:
            row["time_in_step"] = int(
                ((current.finished_at or now) - current.started_at).total_seconds()
            )
    failed = [s for s in own if s.status == StepStatus.FAILED.value]
    if failed:
        row["error"] = failed[-1].error_detail or failed[-1].error_message
    elif provision.status_reason and provision.status in ATTENTION:
        row["error"] = provision.status_reason


def _readiness(provision: Provision, boxes: list[Any], row: dict[str, Any], now: datetime) -> None:
    started = provision.activated_at.date() if provision.activated_at else None
    verdicts = []
    for box in boxes:
        label = HealthLabel(box.health_label) if box.health_label in set(HealthLabel) else None
        if label is not None:
            row["labels"][label.value] = row["labels"].get(label.value, 0) + 1
        verdicts.append(
            mailbox_verdict(
                label=label,
                warmup_started_on=started,
                today=now.date(),
                dns_ok=(box.status or "").upper() == "ACTIVE" and bool(box.dmarc_email),
            )
        )
    row["readiness"] = overall_verdict(verdicts) if verdicts else None


def cohort_rows() -> list[dict[str, Any]]:
    """One row per student: user, order, tier, status, current step, last error, readiness."""
    db = get_db()
    now = utcnow()
    students = db.execute(
        select(User, Provision, Tier)
        .outerjoin(Provision, Provision.user_id == User.id)
        .outerjoin(Tier, Tier.id == Provision.tier_id)
        .where(User.role == Role.STUDENT.value)
    ).all()
    provision_ids = [p.id for _, p, _ in students if p is not None]
    steps: dict[int, list[Any]] = {}
    boxes: dict[int, list[Any]] = {}
    if provision_ids:
        for step in db.scalars(
            select(ProvisioningStep)
            .where(ProvisioningStep.provision_id.in_(provision_ids))
            .order_by(ProvisioningStep.provision_id, ProvisioningStep.id)
        ):
            steps.setdefault(step.provision_id, []).append(step)
        for row in db.execute(
            select(Domain.provision_id, Domain.status, Domain.dmarc_email, Mailbox.health_label)
            .join(Mailbox, Mailbox.domain_id == Domain.id)
            .where(Domain.provision_id.in_(provision_ids))
        ):
            boxes.setdefault(row.provision_id, []).append(row)
    rows = []
    for user, provision, tier in students:
        row: dict[str, Any] = {
            "user": user,
            "provision": provision,
            "tier": tier,
            "status": provision.status if provision else "no_order",
            "step": None,
            "step_key": None,
            "step_status": None,
            "time_in_step": None,
            "error": None,
            "readiness": None,
            "labels": {},
        }
        if provision is not None:
            _current_step(provision, steps.get(provision.id, []), row, now)
            _readiness(provision, boxes.get(provision.id, []), row, now)
        rows.append(row)
    return rows


def _sort_value(row: dict[str, Any], key: str) -> Any:
    if key == "email":
        return row["user"].email
    if key == "tier":
        return row["tier"].sort_order if row["tier"] else -1
    if key == "status":
        return row["status"]
    if key == "step":
        return row["step"] or ""
    if key == "time_in_step":
        return row["time_in_step"] or -1
    created: datetime = row["provision"].created_at if row["provision"] else row["user"].created_at
    return created


def _needs_attention(row: dict[str, Any]) -> bool:
    return bool(
        row["status"] in ATTENTION
        or row["labels"].get("at-risk")
        or row["labels"].get("burned")
        or row["step_status"] == StepStatus.FAILED.value
    )


@bp.get("/")
@admin_required
def index() -> ResponseReturnValue:
    """The admin home is the cohort."""
    return redirect(url_for("admin.cohort"))


@bp.get("/cohort")
@admin_required
def cohort() -> ResponseReturnValue:
    """Every student with tier, status, current step, time in step, last error and readiness."""
    everyone = cohort_rows()
    # The status counts are over the whole cohort, whatever the filters show.
    counts: dict[str, int] = {}
    for row in everyone:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    status = request.args.get("status", "")
    tier_slug = request.args.get("tier", "")
    query = request.args.get("q", "").strip().lower()
    attention = request.args.get("attention") == "1"
    cohort_id = request.args.get("cohort", type=int)
    rows = everyone
    if cohort_id is not None:
        rows = [r for r in rows if r["user"].cohort_id == cohort_id]
    if status:
        rows = [r for r in rows if r["status"] == status]
    if tier_slug:
        rows = [r for r in rows if r["tier"] is not None and r["tier"].slug == tier_slug]
    if query:
        rows = [
            r
            for r in rows
            if query in r["user"].email.lower() or query in (r["user"].name or "").lower()
        ]
    if attention:
        rows = [r for r in rows if _needs_attention(r)]
    sort = request.args.get("sort", "time_in_step")
    if sort not in SORT_KEYS:
        sort = "time_in_step"
    descending = request.args.get("dir", "desc" if sort == "time_in_step" else "asc") == "desc"
    rows = sorted(rows, key=lambda r: _sort_value(r, sort), reverse=descending)
    tiers = list(get_db().scalars(select(Tier).order_by(Tier.sort_order, Tier.id)))
    cohorts = list(get_db().scalars(select(Cohort).order_by(Cohort.starts_on.desc(), Cohort.name)))
    return render_template(
        "admin/cohort.html",
        rows=rows,
        tiers=tiers,
        cohorts=cohorts,
        statuses=[s.value for s in ProvisionStatus] + ["no_order"],
        counts=counts,
        filters={
            "status": status,
            "tier": tier_slug,
            "q": query,
            "attention": attention,
            "cohort": cohort_id,
        },
        sort=sort,
        descending=descending,
        capacity=capacity_panel(),
    )
