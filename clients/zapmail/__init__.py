"""Zapmail v2 client: domains, mailboxes, wallet and exports to sequencers."""

from clients.zapmail.client import MAX_AVAILABILITY_NAMES
from clients.zapmail.client import ZAPMAIL_BASE_URL
from clients.zapmail.client import ZapmailClient
from clients.zapmail.dns import DnsRecord
from clients.zapmail.dns import DnsRecords
from clients.zapmail.dns import HealthScore
from clients.zapmail.errors import ZapmailAuthenticationError
from clients.zapmail.errors import ZapmailBadRequestError
from clients.zapmail.errors import ZapmailConflictError
from clients.zapmail.errors import ZapmailConnectionError
from clients.zapmail.errors import ZapmailError
from clients.zapmail.errors import ZapmailNotFoundError
from clients.zapmail.errors import ZapmailRateLimitError
from clients.zapmail.errors import ZapmailResponseValidationError
from clients.zapmail.errors import ZapmailServerError
from clients.zapmail.errors import ZapmailStatusError
from clients.zapmail.errors import ZapmailTimeoutError
from clients.zapmail.models import AvailabilityResult
from clients.zapmail.models import BillingDetails
from clients.zapmail.models import Domain
from clients.zapmail.models import DomainAvailability
from clients.zapmail.models import DomainPage
from clients.zapmail.models import ExportStatus
from clients.zapmail.models import Mailbox
from clients.zapmail.models import MailboxDomain
from clients.zapmail.models import MailboxPage
from clients.zapmail.models import MailboxSpec
from clients.zapmail.models import PurchaseResult
from clients.zapmail.models import ThirdPartyAccount
from clients.zapmail.models import WalletBalance
from clients.zapmail.models import Workspace
from clients.zapmail.models import WorkspacePage

__all__ = [
    "MAX_AVAILABILITY_NAMES",
    "ZAPMAIL_BASE_URL",
    "AvailabilityResult",
    "BillingDetails",
    "DnsRecord",
    "DnsRecords",
    "Domain",
    "DomainAvailability",
    "DomainPage",
    "ExportStatus",
    "HealthScore",
    "Mailbox",
    "MailboxDomain",
    "MailboxPage",
    "MailboxSpec",
    "PurchaseResult",
    "ThirdPartyAccount",
    "WalletBalance",
    "Workspace",
    "WorkspacePage",
    "ZapmailAuthenticationError",
    "ZapmailBadRequestError",
    "ZapmailClient",
    "ZapmailConflictError",
    "ZapmailConnectionError",
    "ZapmailError",
    "ZapmailNotFoundError",
    "ZapmailRateLimitError",
    "ZapmailResponseValidationError",
    "ZapmailServerError",
    "ZapmailStatusError",
    "ZapmailTimeoutError",
]
