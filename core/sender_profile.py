"""Sender profile requests: what may change, where the picture is served, and asking for a change.

A student may change the display names and the picture of all their mailboxes at once. The
username (the part before the @) never changes here: at Zapmail that changes the address and
restarts its warmup from nothing (vendors/zapmail.md §7.6). The request is a row plus an outbox
start in the caller's transaction; the sender-profile run applies it after the commit.
"""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from core import outbox
from core.db import utcnow
from core.models import ProvisionStatus
from core.models import SenderProfile
from core.models import SenderProfileStatus

USERNAME_REFUSAL = (
    "Mailbox usernames cannot be changed: a new username is a new email address, and its "
    "warmup starts again from zero (weeks of sending reputation lost). Only the sender names "
    "and the picture can be changed."
)
# Where the portal serves a picture to Zapmail (portal/dashboard/profile.py). The key is random,
# so only whoever holds the URL (Zapmail, the student) can fetch it.
PICTURE_PATH = "/sender-picture"
# Orders whose mailboxes exist and stay as they are while the run applies the change (not an
# upgrade's: its new mailboxes would miss it; not a cancelled one's).
CHANGEABLE = frozenset({ProvisionStatus.ACTIVE.value, ProvisionStatus.PAST_DUE.value})


class ProfileConflictError(RuntimeError):
    """Another request changed the profile between reading and writing it (a second tab)."""


def picture_url(public_url: str, token: str) -> str:
    """The absolute address of a stored picture, the one Zapmail is given."""
    return f"{public_url.rstrip('/')}{PICTURE_PATH}?key={token}"


def step_key(revision: int) -> str:
    """The step-mirror key of one request's run (never one of the provisioning steps)."""
    return f"profile-{revision}:apply"


def request_profile(
    session: Session,
    provision_id: int,
    *,
    first_name: str,
    last_name: str,
    picture: bytes | None = None,
    content_type: str | None = None,
) -> SenderProfile:
    """Record the names (and a new picture) as the next revision and queue the run applying it.

    Names must have passed core/mailboxes.py and the picture core/images.py. Raises
    ProfileConflictError if another request wrote the profile meanwhile.
    """
    values: dict[str, object] = {
        "first_name": first_name,
        "last_name": last_name,
        "status": SenderProfileStatus.PENDING.value,
        "error": None,
        "requested_at": utcnow(),
    }
    if picture is not None:
        values.update(
            picture=picture,
            picture_sha256=hashlib.sha256(picture).hexdigest(),
            content_type=content_type,
            # A new URL per picture: Zapmail (or a mail client) may cache the old one.
            picture_token=secrets.token_urlsafe(32),
        )
    row = session.scalar(select(SenderProfile).where(SenderProfile.provision_id == provision_id))
    if row is None:
        row = SenderProfile(provision_id=provision_id, revision=1, **values)
        session.add(row)
        session.flush()
    else:
        # Compare-and-set on the revision read: a second tab's request in between wins alone.
        won = session.execute(
            update(SenderProfile)
            .where(SenderProfile.id == row.id, SenderProfile.revision == row.revision)
            .values(revision=SenderProfile.revision + 1, **values)
            .execution_options(synchronize_session=False)
        ).rowcount
        if won != 1:
            raise ProfileConflictError(f"sender profile of provision {provision_id} changed")
        session.refresh(row)
    outbox.enqueue(
        session,
        key=f"sender-profile:{provision_id}:{row.revision}",
        deployment=outbox.SENDER_PROFILE_DEPLOYMENT,
        parameters={"provision_id": provision_id, "revision": row.revision},
    )
    return row
