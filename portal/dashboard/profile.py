"""The sender profile page: names and picture for every mailbox, the last request's state, and
the picture itself at its unguessable address (what Zapmail is given)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import abort
from flask import current_app
from flask import flash
from flask import g
from flask import make_response
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import RequestEntityTooLarge

from core.images import MAX_BYTES
from core.models import Domain
from core.models import Mailbox
from core.models import Provision
from core.models import SenderProfile
from core.models import SenderProfileStatus
from core.sender_profile import CHANGEABLE
from core.sender_profile import PICTURE_PATH
from core.sender_profile import USERNAME_REFUSAL
from core.sender_profile import ProfileConflictError
from core.sender_profile import request_profile
from portal import outbox_sender
from portal.dashboard import bp
from portal.dashboard.forms import SenderProfileForm
from portal.dashboard.scope import DASHBOARD_STATES
from portal.dashboard.scope import own_provision
from portal.db import get_db
from portal.extensions import csrf
from portal.extensions import student_required

# The whole request may be larger than the 1 MB picture limit, so that a bigger picture gets its
# error next to the field instead of a bare 413 page; beyond this, the page says so too.
UPLOAD_LIMIT = 4 * MAX_BYTES
TOO_LARGE = "The picture is larger than 4 MB; the limit is 1 MB. Save it smaller and try again."
# The picture of a key never changes (a new picture gets a new key), so caches may keep it.
PICTURE_CACHE = "public, max-age=86400, immutable"


def _profile(provision_id: int) -> SenderProfile | None:
    return get_db().scalar(select(SenderProfile).where(SenderProfile.provision_id == provision_id))


def _page(
    provision: Provision, profile: SenderProfile | None, form: SenderProfileForm, status: int = 200
) -> ResponseReturnValue:
    mailboxes = get_db().scalar(
        select(func.count(Mailbox.id)).join(Domain).where(Domain.provision_id == provision.id)
    )
    page = render_template(
        "dashboard/profile.html",
        provision=provision,
        profile=profile,
        form=form,
        mailboxes=mailboxes or 0,
        changeable=provision.status in CHANGEABLE,
    )
    return page, status


def _blank(provision: Provision, profile: SenderProfile | None) -> SenderProfileForm:
    # Before any request the mailboxes carry the names given in the wizard.
    first = profile.first_name if profile else provision.sender_first_name
    last = profile.last_name if profile else provision.sender_last_name
    return SenderProfileForm(formdata=None, data={"first_name": first, "last_name": last})


def _upload_checked(view: Callable[..., ResponseReturnValue]) -> Callable[..., ResponseReturnValue]:
    """Raise this request's size limit for the picture, then check CSRF (before any sign-in check).

    The app-wide CSRF hook would read the form under the 1 MB app limit first, so the view is
    exempt from it and checked here instead, in the same order: the token before the role.
    """

    @wraps(view)
    def checked(*args: Any, **kwargs: Any) -> ResponseReturnValue:
        if request.method == "POST":
            request.max_content_length = UPLOAD_LIMIT
            try:
                if current_app.config.get("WTF_CSRF_ENABLED", True):
                    csrf.protect()
                else:
                    request.form  # noqa: B018 - parse now, under the limit just set
            except RequestEntityTooLarge:
                # Nothing was read, so nothing can change: the view shows the reason.
                g.upload_too_large = True
        return view(*args, **kwargs)

    return checked


@bp.route("/dashboard/profile", methods=["GET", "POST"])
@csrf.exempt  # checked by _upload_checked, once this request's upload limit is set
@_upload_checked
@student_required
def profile() -> ResponseReturnValue:
    """Show and change the sender names and picture of every mailbox (never the usernames)."""
    db = get_db()
    provision = own_provision()
    if provision is None:
        return redirect(url_for("wizard.start"))
    if provision.status not in DASHBOARD_STATES:
        return redirect(url_for("dashboard.progress"))
    current = _profile(provision.id)
    if request.method == "GET":
        return _page(provision, current, _blank(provision, current))
    if g.get("upload_too_large"):
        form = _blank(provision, current)
        form.too_large(TOO_LARGE)
        return _page(provision, current, form, 413)
    if any("username" in key.lower() for key in [*request.form, *request.files]):
        abort(400, USERNAME_REFUSAL)
    if provision.status not in CHANGEABLE:
        abort(409, "The sender profile can be changed while your order is active.")
    form = SenderProfileForm()
    if not form.validate():
        return _page(provision, current, form, 400)
    assert form.name is not None
    data, picture = form.upload if form.upload else (None, None)
    unchanged = (
        current is not None
        and data is None
        and (current.first_name, current.last_name) == (form.name.first, form.name.last)
        and current.status != SenderProfileStatus.FAILED.value
    )
    if unchanged:
        flash(
            "Nothing to change: your mailboxes already have (or are getting) this profile.", "info"
        )
        return redirect(url_for("dashboard.profile"), code=303)
    try:
        request_profile(
            db,
            provision.id,
            first_name=form.name.first,
            last_name=form.name.last,
            picture=data,
            content_type=picture.content_type if picture else None,
        )
        db.commit()
    except (ProfileConflictError, IntegrityError):
        db.rollback()
        flash("Your profile was just changed in another tab; check it and save again.", "warning")
        return redirect(url_for("dashboard.profile"), code=303)
    outbox_sender.send_committed(db)
    flash("Saved. Your mailboxes are being updated; this page shows when it is done.", "success")
    return redirect(url_for("dashboard.profile"), code=303)


@bp.get(PICTURE_PATH)
def profile_picture() -> ResponseReturnValue:
    """A stored sender picture, by the random key in its address (Zapmail fetches it unsigned)."""
    key = request.args.get("key", "")
    row = None
    if 20 <= len(key) <= 64:
        row = (
            get_db()
            .execute(
                select(SenderProfile.picture, SenderProfile.content_type).where(
                    SenderProfile.picture_token == key
                )
            )
            .one_or_none()
        )
    if row is None or row.picture is None:
        abort(404)
    response = make_response(row.picture)
    response.mimetype = row.content_type or "application/octet-stream"
    response.headers["Cache-Control"] = PICTURE_CACHE
    response.headers["Content-Disposition"] = "inline"
    return response
