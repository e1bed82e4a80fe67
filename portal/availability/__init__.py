"""Domain availability for the wizard: a shared cache in front of Zapmail's scarce budget.

Zapmail allows 100 availability checks per 30 minutes for the whole operator account, shared by
every student and by the flows' re-checks before buying. So answers are cached in
``domain_checks`` for every student (``cache``), and uncached names are coalesced across
students: a request queues its names in ``pending_checks`` (``pending``, shared by every gunicorn
worker through the DB), and whoever holds the drain lock sends the oldest queued names of any
student, 20 per call, as soon as 20 are queued or the oldest has waited the gathering window
(``service``, ``vendor``). Every call is counted in ``availability_calls`` before it is sent
(``budget``); the portal stops at its share of the budget, or earlier when Zapmail answers 429
with Retry-After, and tells every waiting request.
"""

from portal.availability.answers import AVAILABLE
from portal.availability.answers import CLAIMED
from portal.availability.answers import INVALID
from portal.availability.answers import PREMIUM
from portal.availability.answers import TAKEN
from portal.availability.answers import TOO_EXPENSIVE
from portal.availability.answers import UNKNOWN
from portal.availability.answers import Availability
from portal.availability.answers import CheckResult
from portal.availability.config import AvailabilityConfig
from portal.availability.service import AvailabilityService
from portal.availability.service import service_for

__all__ = [
    "AVAILABLE",
    "CLAIMED",
    "INVALID",
    "PREMIUM",
    "TAKEN",
    "TOO_EXPENSIVE",
    "UNKNOWN",
    "Availability",
    "AvailabilityConfig",
    "AvailabilityService",
    "CheckResult",
    "service_for",
]
