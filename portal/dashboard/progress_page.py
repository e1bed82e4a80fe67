"""The live progress of the student's setup: the page, and the progress.json it polls."""

from __future__ import annotations

from flask import current_app
from flask import jsonify
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from portal import change_cache
from portal import progress as progress_data
from portal.auth.session_cache import cached_session
from portal.change_listener import PROGRESS
from portal.dashboard import bp
from portal.db import get_db
from portal.extensions import student_required
from portal.progress import build_document
from portal.progress import load_snapshot
from portal.progress import progress_for_user


def _time_scale() -> float:
    """How much faster than real time the vendors' clock runs (the estimates follow it)."""
    return float(current_app.extensions["settings"].vendor_time_scale)


@bp.get("/progress")
@student_required
def progress() -> ResponseReturnValue:
    """Live progress of the student's setup (the page polls progress.json)."""
    data = progress_for_user(get_db(), current_user.id, _time_scale())
    if data is None:
        return redirect(url_for("wizard.start"))
    return render_template("dashboard/progress.html", progress=data)


@bp.get("/progress.json")
@cached_session
@student_required
def progress_json() -> ResponseReturnValue:
    """The progress document: one indexed query, no Prefect call (polled every 3 s).

    On PostgreSQL an unchanged provision's 304 needs no query at all: the tag is kept per student
    until the change listener hears of a change (portal/change_listener.py); SQLite reads.
    """
    tags = change_cache.cache(PROGRESS)
    user_id = current_user.id
    scale = _time_scale()
    # Whatever else the version covers besides the rows is in the key: a tag kept under another
    # release or clock scale never answers.
    key = (user_id, progress_data.code_version(), scale)
    mark = None
    if tags is not None:
        kept = tags.get(key)
        if kept is not None and request.if_none_match.contains_weak(kept):
            return _not_modified(kept)
        mark = tags.mark()
    snapshot = load_snapshot(get_db(), user_id, scale)
    if snapshot is None:
        return jsonify(error="not_found", reason="You have no order yet."), 404
    if tags is not None:
        tags.put(key, user_id, snapshot.version, mark)
    # Weak tag: a 304 says nothing but the clock moved (the page advances the durations itself);
    # it skips building and serialising the document, and sends nothing back to the page.
    if request.if_none_match.contains_weak(snapshot.version):
        return _not_modified(snapshot.version)
    response = jsonify(build_document(snapshot))
    response.set_etag(snapshot.version, weak=True)
    return response


def _not_modified(version: str) -> ResponseReturnValue:
    response = current_app.response_class(status=304)
    response.set_etag(version, weak=True)
    return response
