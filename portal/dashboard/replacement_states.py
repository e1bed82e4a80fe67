"""What the dashboard says about burned and replaced domains, per domain card and as banners.

The overview template calls the template global :func:`domain_replacements` once; it reads the
provision's replacements in one query and asks core/replacements.py whether each live domain is
burned, so the dashboard and the replace page always agree on which domains may be replaced.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from core.models import DomainReplacement
from core.models import Provision
from core.models import ReplacementStatus
from core.replacements import REPLACEABLE_PROVISION
from core.replacements import burned_reason
from core.replacements import live_domains
from portal.dashboard import bp
from portal.db import get_db
from portal.replacement_support import BURNED_WORDS

# Replacements the dashboard reports in a banner: awaiting payment, being set up, or stopped.
UNFINISHED = {
    ReplacementStatus.PENDING_PAYMENT.value,
    ReplacementStatus.PROVISIONING.value,
    ReplacementStatus.FAILED.value,
}


@dataclass
class DomainLine:
    """One domain card's replacement facts."""

    # Why the domain counts as burned, in words (None: it does not).
    burned: str | None = None
    # The student may ask for a replacement now.
    replaceable: bool = False
    # Retired: the name of the domain that replaced it.
    replaced_by: str | None = None
    # A replacement of this domain that has not finished (awaiting payment, running, stopped).
    replacement: DomainReplacement | None = None
    # A new domain: the name it replaces.
    replaces: str | None = None
    # A successor not paid for yet: it has no card (nothing is bought or set up).
    hidden: bool = False


@dataclass
class Board:
    """Every domain's line, and the unfinished replacements for the banners (newest first)."""

    lines: dict[int, DomainLine] = field(default_factory=dict)
    unfinished: list[DomainReplacement] = field(default_factory=list)

    def line(self, domain_id: int) -> DomainLine:
        """The facts of one domain (an empty line for a domain with none)."""
        return self.lines.get(domain_id) or DomainLine()


@bp.app_template_global()
def domain_replacements(provision: Provision) -> Board:
    """The replacement facts of every domain of ``provision``."""
    db = get_db()
    replacements = list(
        db.scalars(
            select(DomainReplacement)
            .where(DomainReplacement.provision_id == provision.id)
            .options(
                selectinload(DomainReplacement.old_domain),
                selectinload(DomainReplacement.new_domain),
            )
            .order_by(DomainReplacement.id.desc())
        )
    )
    board = Board()
    for replacement in replacements:
        old = board.lines.setdefault(replacement.old_domain_id, DomainLine())
        new = board.lines.setdefault(replacement.new_domain_id, DomainLine())
        new.replaces = replacement.old_domain.name
        if (
            replacement.status == ReplacementStatus.COMPLETED.value
            or replacement.old_domain.retired_at is not None
        ):
            old.replaced_by = replacement.new_domain.name
        if replacement.status in UNFINISHED:
            old.replacement = replacement
            board.unfinished.append(replacement)
        new.hidden = replacement.status in (
            ReplacementStatus.PENDING_PAYMENT.value,
            ReplacementStatus.CANCELLED.value,
        )
    replaced = {r.old_domain_id for r in replacements}
    active = provision.status in REPLACEABLE_PROVISION
    for domain in live_domains(provision):
        if domain.id in replaced:
            continue
        reason = burned_reason(db, domain)
        if reason is not None:
            line = board.lines.setdefault(domain.id, DomainLine())
            line.burned = BURNED_WORDS.get(reason, "Burned")
            line.replaceable = active
    # A domain retired outside a replacement record still says so.
    for domain in provision.domains:
        if domain.retired_at is not None and domain.id not in board.lines:
            board.lines[domain.id] = DomainLine(replaced_by="another domain")
    return board
