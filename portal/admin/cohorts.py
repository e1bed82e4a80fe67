"""Cohorts: create one, import its students from CSV (preview first, all or nothing), invite them.

An import is previewed before anything is written: every row with its line number and problems.
Only a file without a bad row can be imported, and the import is one transaction: the students,
their invitations (queued emails with single-use links) and the audit row commit together.
"""

from __future__ import annotations

from typing import Any

from flask import abort
from flask import flash
from flask import redirect
from flask import render_template
from flask import url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from core.models import Cohort
from core.models import Provision
from core.models import Role
from core.models import User
from portal.admin import bp
from portal.admin.cohort_csv import MAX_ROWS
from portal.admin.cohort_csv import CsvCheck
from portal.admin.cohort_csv import CsvError
from portal.admin.cohort_csv import check_csv
from portal.admin.cohort_csv import decode_upload
from portal.admin.forms import MAX_CSV_CHARS
from portal.admin.forms import CohortForm
from portal.admin.forms import ConfirmForm
from portal.admin.forms import ImportForm
from portal.auth.invites import InviteState
from portal.auth.invites import invite_states
from portal.auth.invites import queue_invite
from portal.auth.invites import revoke_invite
from portal.auth.invites import send_invite
from portal.auth.invites import unknown_password_hash
from portal.db import get_db
from portal.extensions import admin_required
from portal.security import audit
from portal.security import client_ip

CONFIRMED = "yes"


def _cohort_or_404(cohort_id: int) -> Cohort:
    cohort = get_db().get(Cohort, cohort_id)
    if cohort is None:
        abort(404)
    return cohort


def _action_target(cohort_id: int, user_id: int) -> tuple[Cohort, User]:
    """The cohort and student of a re-send or revoke (its form is only the CSRF token)."""
    if not ConfirmForm().validate_on_submit():
        abort(400)
    cohort = _cohort_or_404(cohort_id)
    user = get_db().get(User, user_id)
    if user is None or user.cohort_id != cohort.id or user.role != Role.STUDENT.value:
        abort(404)
    return cohort, user


def _to_students(cohort: Cohort) -> ResponseReturnValue:
    return redirect(url_for("admin.cohort_students", cohort_id=cohort.id), code=303)


def _cohorts_page(form: CohortForm, status: int) -> ResponseReturnValue:
    db = get_db()
    counts = dict(
        db.execute(
            select(User.cohort_id, func.count())
            .where(User.cohort_id.is_not(None))
            .group_by(User.cohort_id)
        ).all()
    )
    rows = list(db.scalars(select(Cohort).order_by(Cohort.starts_on.desc(), Cohort.name)))
    return render_template("admin/cohorts.html", cohorts=rows, counts=counts, form=form), status


def _students_page(cohort: Cohort, form: ImportForm, status: int) -> ResponseReturnValue:
    db = get_db()
    students = db.execute(
        select(User, Provision.status)
        .outerjoin(Provision, Provision.user_id == User.id)
        .where(User.cohort_id == cohort.id)
        .order_by(User.name, User.email)
    ).all()
    states = invite_states(db, [user.id for user, _ in students])
    rows = [
        {"user": user, "invite": states[user.id], "order": status or "no_order"}
        for user, status in students
    ]
    tally: dict[str, int] = {}
    for row in rows:
        tally[row["invite"]] = tally.get(row["invite"], 0) + 1
    page = render_template(
        "admin/cohorts_students.html",
        cohort=cohort,
        rows=rows,
        tally=tally,
        form=form,
        action_form=ConfirmForm(),
        max_rows=MAX_ROWS,
        states=InviteState,
    )
    return page, status


def _preview_page(cohort: Cohort, check: CsvCheck, text: str, status: int) -> ResponseReturnValue:
    form = ImportForm(formdata=None, csv_text=text, confirm=CONFIRMED)
    page = render_template("admin/cohorts_preview.html", cohort=cohort, check=check, form=form)
    return page, status


@bp.get("/cohorts")
@admin_required
def cohorts() -> ResponseReturnValue:
    """Every cohort with its size, and the form to create one."""
    return _cohorts_page(CohortForm(), 200)


@bp.post("/cohorts/new")
@admin_required
def cohort_create() -> ResponseReturnValue:
    """Create a cohort (names are unique)."""
    form = CohortForm()
    if not form.validate_on_submit():
        return _cohorts_page(form, 400)
    db = get_db()
    if db.scalar(select(Cohort.id).where(Cohort.name == form.name.data)) is not None:
        form.name.errors.append("A cohort already has this name.")
        return _cohorts_page(form, 400)
    cohort = Cohort()
    form.populate_obj(cohort)
    db.add(cohort)
    try:
        db.flush()
    except IntegrityError:  # created by someone else since the check above
        db.rollback()
        form.name.errors.append("A cohort already has this name.")
        return _cohorts_page(form, 400)
    details = {"name": cohort.name, "starts_on": cohort.starts_on.isoformat()}
    audit(db, "cohort_created", target_type="cohort", target_id=cohort.id, details=details)
    db.commit()
    flash(f"Cohort {cohort.name} created. Import its students below.", "success")
    return _to_students(cohort)


@bp.get("/cohorts/<int:cohort_id>")
@admin_required
def cohort_students(cohort_id: int) -> ResponseReturnValue:
    """A cohort's students with their invitation and order, and the import form."""
    return _students_page(_cohort_or_404(cohort_id), ImportForm(), 200)


@bp.post("/cohorts/<int:cohort_id>/import")
@admin_required
def cohort_import(cohort_id: int) -> ResponseReturnValue:
    """Preview a student list; a confirmed preview without bad rows imports it and invites all."""
    cohort = _cohort_or_404(cohort_id)
    form = ImportForm()
    if not form.validate_on_submit():
        return _students_page(cohort, form, 400)
    try:
        upload = form.csv_file.data
        text = decode_upload(upload.read()) if upload else form.csv_text.data or ""
    except CsvError as exc:
        form.csv_file.errors.append(str(exc))
        return _students_page(cohort, form, 400)
    if not text.strip() or len(text) > MAX_CSV_CHARS:
        # Pasted text has its own limit on the form; a file must fit it too to be confirmed.
        form.csv_file.errors.append(
            "Choose a CSV file, or paste its lines."
            if not text.strip()
            else f"The file is longer than {MAX_CSV_CHARS:,} characters."
        )
        return _students_page(cohort, form, 400)
    db = get_db()
    check = check_csv(db, text, cohort.id)
    confirmed = form.confirm.data == CONFIRMED and not upload
    if not confirmed or not check.ok:
        # A preview, or a refused confirmation (the accounts changed since the preview).
        return _preview_page(cohort, check, text, 400 if confirmed else 200)
    users = _create_students(cohort, check)
    if users is None:
        flash("Some of these addresses got an account meanwhile. Check the file again.", "error")
        return _preview_page(cohort, check_csv(db, text, cohort.id), text, 409)
    details: dict[str, Any] = {"count": len(users), "user_ids": [user.id for user in users]}
    audit(
        db, "cohort_students_imported", target_type="cohort", target_id=cohort.id, details=details
    )
    db.commit()
    skipped = len(check.rows) - len(users)
    flash(
        f"Imported {len(users)} student{'s' if len(users) != 1 else ''} and queued their "
        f"invitations."
        + (f" {skipped} already in this cohort were left as they are." if skipped else ""),
        "success",
    )
    return _to_students(cohort)


def _create_students(cohort: Cohort, check: CsvCheck) -> list[User] | None:
    """Add the new students and queue their invitations; None if an address was taken meanwhile."""
    db = get_db()
    users = [
        User(
            email=row.email,
            name=row.name,
            password_hash=unknown_password_hash(),
            role=Role.STUDENT.value,
            cohort_id=cohort.id,
        )
        for row in check.to_import
    ]
    db.add_all(users)
    try:
        db.flush()
    except IntegrityError:
        db.rollback()
        return None
    ip = client_ip()
    for user in users:
        queue_invite(db, user, cohort, ip)
    return users


@bp.post("/cohorts/<int:cohort_id>/students/<int:user_id>/resend")
@admin_required
def invite_resend(cohort_id: int, user_id: int) -> ResponseReturnValue:
    """Send a student a new invitation; their earlier links stop working."""
    cohort, user = _action_target(cohort_id, user_id)
    db = get_db()
    if invite_states(db, [user.id])[user.id] == InviteState.ACCEPTED:
        flash(f"{user.email} has chosen a password already: nothing was sent.", "error")
        return _to_students(cohort)
    row = send_invite(db, user, cohort, client_ip())
    audit(db, "invite_resent", target_type="user", target_id=user.id, details={"invite_id": row.id})
    db.commit()
    flash(f"A new invitation to {user.email} is queued; earlier links no longer work.", "success")
    return _to_students(cohort)


@bp.post("/cohorts/<int:cohort_id>/students/<int:user_id>/revoke")
@admin_required
def invite_revoke(cohort_id: int, user_id: int) -> ResponseReturnValue:
    """Withdraw a student's invitation: the link stops working and the account is disabled."""
    cohort, user = _action_target(cohort_id, user_id)
    db = get_db()
    state = invite_states(db, [user.id])[user.id]
    if state in (InviteState.ACCEPTED, InviteState.REVOKED):
        flash(f"{user.email}'s invitation is {state.value}: nothing to revoke.", "error")
        return _to_students(cohort)
    revoke_invite(db, user)
    audit(db, "invite_revoked", target_type="user", target_id=user.id)
    db.commit()
    flash(f"The invitation of {user.email} is revoked; re-send it to let them in.", "success")
    return _to_students(cohort)
