"""Posting to the domain step, shared by the wizard and the upgrade: one action, then a redirect.

The picker (portal/domain_picker.py) checks brands and names and says what is wrong with them;
this form only admits the actions the step has, and says a refused brand or name next to its
field with the typed text kept there.
"""

from __future__ import annotations

from typing import Any

from flask import flash
from flask import redirect
from flask import request
from flask import url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import SelectField
from wtforms import StringField
from wtforms.validators import AnyOf

from core.domains import DomainNameError
from core.domains import brand_label
from core.domains import validate_domain
from portal import drafts
from portal.db import get_db
from portal.domain_picker import Picker

ACTIONS = ("search", "check", "add", "remove", "continue", "back")

# The text fields of the step and the check that refuses what is typed into them.
FIELD_CHECKS = {"search": ("brand", brand_label), "check": ("name", validate_domain)}
# Longest text kept for showing back in a refused field (a field's maxlength is far below).
KEPT_CHARS = 300


class PickerForm(FlaskForm):  # type: ignore[misc]
    """One action of the domain step, with the brand or name it applies to."""

    action = SelectField(
        choices=ACTIONS,
        validate_choice=False,
        validators=[AnyOf(ACTIONS, message="That action is not available here.")],
    )
    brand = StringField(default="")
    name = StringField(default="")


def post(
    picker: Picker,
    kind: str,
    *,
    here: str,
    back: str,
    forward: str,
    args: dict[str, Any] | None = None,
) -> ResponseReturnValue:
    """Apply the posted action to the picker's draft (saved as ``kind``) and redirect onwards.

    ``here``, ``back`` and ``forward`` are endpoints: this step, the one before and the one after;
    ``args`` fill the URL parts of ``here`` and ``forward`` (a step about one domain, say).
    """
    args = args or {}
    form = PickerForm(formdata=request.form)
    if not form.validate():
        # Nothing is saved; the step's buttons are its only fields, so the message is a flash.
        flash(next(iter(form.errors.values()))[0], "error")
        return redirect(url_for(here, **args))
    refused = _refuse_field(form.action.data, form.data)
    if refused:
        return redirect(url_for(here, **args))
    outcome = picker.handle(form.data)
    db = get_db()
    drafts.save(db, current_user.id, kind, picker.draft)
    db.commit()
    if outcome == "back":
        return redirect(url_for(back))
    return redirect(url_for(forward if outcome == "continue" else here, **args))


def _refuse_field(action: str, data: dict[str, str]) -> bool:
    """Refuse an unusable brand or name next to its field, keeping what was typed; True if so.

    The step redirects after every post, so the reason and the typed text travel as flashed
    messages of the field's own categories (``field-error:<name>``, ``field-value:<name>``),
    which the picker template shows at the field and base.html leaves out of the page's flashes.
    """
    if action not in FIELD_CHECKS:
        return False
    field, check = FIELD_CHECKS[action]
    typed = data.get(field) or ""
    try:
        check(typed)
    except DomainNameError as exc:
        flash(str(exc), f"field-error:{field}")
        flash(typed[:KEPT_CHARS], f"field-value:{field}")
        return True
    return False
