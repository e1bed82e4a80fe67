"""The admin home's capacity panel: Zapmail wallet and mailbox slots against what orders need.

Supply comes from the latest snapshot the capacity-snapshot deployment stored, demand from the
app DB (core/capacity.py); nothing here calls Zapmail. The admin enters the size of the next
cohort so the panel warns before a launch runs short.
"""

from __future__ import annotations

from flask import flash
from flask import redirect
from flask import url_for
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm
from wtforms import IntegerField
from wtforms.validators import NumberRange
from wtforms.validators import Optional

from core.capacity import Capacity
from core.capacity import assess
from core.capacity import next_cohort_size
from core.capacity import set_next_cohort_size
from portal.admin import bp
from portal.db import get_db
from portal.extensions import admin_required
from portal.security import audit


class CohortSizeForm(FlaskForm):  # type: ignore[misc]
    """How many students the next cohort brings (empty: no cohort planned)."""

    next_cohort_size = IntegerField(
        "Next cohort (students)", validators=[Optional(), NumberRange(min=0, max=10_000)]
    )


def capacity_panel() -> dict[str, object]:
    """What ``admin/_capacity.html`` shows: the assessment and the cohort-size form."""
    db = get_db()
    capacity: Capacity = assess(db)
    form = CohortSizeForm(formdata=None, data={"next_cohort_size": next_cohort_size(db)})
    return {"capacity": capacity, "form": form}


@bp.post("/capacity/cohort")
@admin_required
def set_cohort_size() -> ResponseReturnValue:
    """Store the next cohort's size, for the capacity warnings."""
    form = CohortSizeForm()
    back = redirect(url_for("admin.cohort") + "#capacity", code=303)
    if not form.validate_on_submit():
        flash(" ".join(form.next_cohort_size.errors) or "Enter a number of students.", "error")
        return back
    db = get_db()
    size = form.next_cohort_size.data or None
    set_next_cohort_size(db, size)
    audit(db, "next_cohort_size_set", target_type="operator_settings", target_id=1,
          details={"next_cohort_size": size})  # fmt: skip
    db.commit()
    flash(f"Next cohort: {size} students." if size else "No next cohort planned.", "success")
    return back
