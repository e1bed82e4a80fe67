"""HeyReach client: API key check, lead lists and adding leads in batches of 100."""

from clients.heyreach.client import HEYREACH_BASE_URL
from clients.heyreach.client import MAX_LEADS_PER_REQUEST
from clients.heyreach.client import HeyReachClient
from clients.heyreach.errors import HeyReachAuthenticationError
from clients.heyreach.errors import HeyReachBadRequestError
from clients.heyreach.errors import HeyReachConflictError
from clients.heyreach.errors import HeyReachConnectionError
from clients.heyreach.errors import HeyReachError
from clients.heyreach.errors import HeyReachNotFoundError
from clients.heyreach.errors import HeyReachRateLimitError
from clients.heyreach.errors import HeyReachResponseValidationError
from clients.heyreach.errors import HeyReachServerError
from clients.heyreach.errors import HeyReachStatusError
from clients.heyreach.errors import HeyReachTimeoutError
from clients.heyreach.models import AddLeadsResult
from clients.heyreach.models import CustomUserField
from clients.heyreach.models import HeyReachList
from clients.heyreach.models import Lead
from clients.heyreach.models import LeadPage
from clients.heyreach.models import ListLead
from clients.heyreach.models import ListPage

__all__ = [
    "HEYREACH_BASE_URL",
    "MAX_LEADS_PER_REQUEST",
    "AddLeadsResult",
    "CustomUserField",
    "HeyReachAuthenticationError",
    "HeyReachBadRequestError",
    "HeyReachClient",
    "HeyReachConflictError",
    "HeyReachConnectionError",
    "HeyReachError",
    "HeyReachList",
    "HeyReachNotFoundError",
    "HeyReachRateLimitError",
    "HeyReachResponseValidationError",
    "HeyReachServerError",
    "HeyReachStatusError",
    "HeyReachTimeoutError",
    "Lead",
    "LeadPage",
    "ListLead",
    "ListPage",
]
