"""The wizard's first three steps: resume, choose a package, pick domains, name the mailboxes.

Step 4 (review and pay) and the return from Stripe are in portal/wizard/checkout.py.
"""

from __future__ import annotations

from flask import current_app
from flask import jsonify
from flask import redirect
from flask import request
from flask import url_for
from flask.typing import ResponseReturnValue

from core.mailboxes import DEFAULT_PATTERNS
from core.mailboxes import PATTERNS
from core.mailboxes import MailboxNameError
from core.mailboxes import render_username
from core.pricing import daily_capacity
from portal import drafts
from portal.availability import service_for
from portal.db import get_db
from portal.extensions import student_required
from portal.wizard import bp
from portal.wizard import domain_step
from portal.wizard import state
from portal.wizard.forms import TierChoiceForm
from portal.wizard.forms import mailboxes_form
from portal.wizard.forms import posted


@bp.get("/")
@student_required
def start() -> ResponseReturnValue:
    """Resume the wizard at the furthest step the saved choices allow."""
    closed = state.closed()
    if closed is not None:
        return closed
    return redirect(url_for(f"wizard.{state.furthest(state.load())}"))


@bp.route("/package", methods=["GET", "POST"])
@student_required
def package() -> ResponseReturnValue:
    """Step 1: choose a package."""
    closed = state.closed()
    if closed is not None:
        return closed
    draft = state.load()
    tiers = state.offered_tiers()
    form = posted(TierChoiceForm, tier_id=str(draft["tier_id"] or ""))
    form.offer(tiers)
    if request.method == "POST" and form.validate():
        chosen = next(t for t in tiers if t.id == form.chosen)
        draft["tier_id"] = chosen.id
        if len(draft["patterns"]) != chosen.mailboxes_per_domain:
            draft["patterns"] = list(DEFAULT_PATTERNS[: chosen.mailboxes_per_domain])
        state.save(draft)
        return redirect(url_for("wizard.domains"))
    page = state.page(
        "wizard/package.html", "package", draft, form=form, tiers=tiers, capacity=daily_capacity
    )
    # A POST that gets here was refused: nothing was saved, the reason stands above the cards.
    return (page, 400) if request.method == "POST" else page


@bp.route("/domains", methods=["GET", "POST"])
@student_required
def domains() -> ResponseReturnValue:
    """Step 2: pick exactly the package's number of domains."""
    closed = state.closed()
    if closed is not None:
        return closed
    draft = state.load()
    guard = state.guard("domains", draft)
    if guard is not None:
        return guard
    tier = state.chosen_tier(draft)
    assert tier is not None
    picker = state.picker(draft, tier)
    if request.method == "POST":
        return domain_step.post(
            picker,
            drafts.ORDER,
            here="wizard.domains",
            back="wizard.package",
            forward="wizard.mailboxes",
        )
    service = service_for(get_db(), current_app.config, current_app.extensions["settings"])
    left, wait = service.budget_left()
    return state.page(
        "wizard/domains.html",
        "domains",
        draft,
        tier=tier,
        results=picker.results(),
        paused_s=wait if (wait or not left) else 0,
        post_url=url_for("wizard.domains"),
        required=tier.domain_count,
    )


def _pattern_examples(first: str, last: str) -> dict[str, str]:
    """Each pattern shown with the student's own name once it is known (else "tim.keen")."""
    examples = {}
    for template, example in PATTERNS.items():
        try:
            examples[template] = (
                render_username(template, first, last) if first and last else example
            )
        except MailboxNameError:
            examples[template] = example
    return examples


@bp.route("/mailboxes", methods=["GET", "POST"])
@student_required
def mailboxes() -> ResponseReturnValue:
    """Step 3: sender name and username patterns, with a preview of every address."""
    closed = state.closed()
    if closed is not None:
        return closed
    draft = state.load()
    guard = state.guard("mailboxes", draft)
    if guard is not None:
        return guard
    tier = state.chosen_tier(draft)
    assert tier is not None
    saved = {f"pattern_{i}": pattern for i, pattern in enumerate(draft["patterns"])}
    form = posted(
        mailboxes_form(tier.mailboxes_per_domain),
        first_name=draft["first_name"],
        last_name=draft["last_name"],
        **saved,
    )
    status = 200
    if request.method == "POST":
        # Back keeps what was typed, valid or not, for when the student returns.
        back = form.action.data == "back"
        if back or form.validate():
            draft.update(form.draft_fields(draft))
            state.save(draft)
            if back:
                return redirect(url_for("wizard.domains"))
            if form.action.data == "continue":
                return redirect(url_for("wizard.review"))
        else:
            status = 400  # nothing saved; the errors stand next to their fields
    # What is in the fields now (a refused post included), never the draft's older choice.
    first, last = form.first_name.data or "", form.last_name.data or ""
    preview, reason = state.preview_or_reason(
        draft["domains"], [field.data for field in form.pattern_fields()], first, last
    )
    return state.page(
        "wizard/mailboxes.html",
        "mailboxes",
        draft,
        form=form,
        tier=tier,
        patterns=_pattern_examples(first, last),
        preview=preview,
        preview_reason=reason,
        sender=" ".join((first.strip(), last.strip())),
    ), status


@bp.get("/mailboxes/preview.json")
@student_required
def mailboxes_preview() -> ResponseReturnValue:
    """The live preview as the student types: the same rules as the step (core/mailboxes.py)."""
    draft = state.load()
    tier = state.chosen_tier(draft)
    if state.closed() is not None or tier is None or state.guard("mailboxes", draft) is not None:
        return jsonify(error="not_found", reason="Choose a package and domains first."), 404
    args = request.args
    first, last = args.get("first_name", "")[:200], args.get("last_name", "")[:200]
    patterns = [args.get(f"pattern_{i}", "") for i in range(tier.mailboxes_per_domain)]
    rows, reason = state.preview_or_reason(draft["domains"], patterns, first, last)
    return jsonify(
        rows=[{"domain": domain, "addresses": addresses} for domain, addresses in rows],
        reason=reason,
        examples=_pattern_examples(first, last),
        sender=" ".join((first.strip(), last.strip())),
    )
