"""PlusVibe client: workspaces, agency client logins, email accounts and warmup settings."""

from clients.plusvibe.client import PLUSVIBE_BASE_URL
from clients.plusvibe.client import PlusVibeClient
from clients.plusvibe.errors import PlusVibeAuthenticationError
from clients.plusvibe.errors import PlusVibeBadRequestError
from clients.plusvibe.errors import PlusVibeConflictError
from clients.plusvibe.errors import PlusVibeConnectionError
from clients.plusvibe.errors import PlusVibeError
from clients.plusvibe.errors import PlusVibeNotFoundError
from clients.plusvibe.errors import PlusVibeRateLimitError
from clients.plusvibe.errors import PlusVibeResponseValidationError
from clients.plusvibe.errors import PlusVibeServerError
from clients.plusvibe.errors import PlusVibeStatusError
from clients.plusvibe.errors import PlusVibeTimeoutError
from clients.plusvibe.models import Account
from clients.plusvibe.models import AccountPayload
from clients.plusvibe.models import Analytics
from clients.plusvibe.models import ClientLogin
from clients.plusvibe.models import DailyCounters
from clients.plusvibe.models import HealthScores
from clients.plusvibe.models import PlusVibeClientAccount
from clients.plusvibe.models import PlusVibeWorkspace
from clients.plusvibe.models import ReplyRates
from clients.plusvibe.models import WarmupConfig
from clients.plusvibe.models import WarmupSettings
from clients.plusvibe.models import WarmupStatusUpdate

__all__ = [
    "PLUSVIBE_BASE_URL",
    "Account",
    "AccountPayload",
    "Analytics",
    "ClientLogin",
    "DailyCounters",
    "HealthScores",
    "PlusVibeAuthenticationError",
    "PlusVibeBadRequestError",
    "PlusVibeClient",
    "PlusVibeClientAccount",
    "PlusVibeConflictError",
    "PlusVibeConnectionError",
    "PlusVibeError",
    "PlusVibeNotFoundError",
    "PlusVibeRateLimitError",
    "PlusVibeResponseValidationError",
    "PlusVibeServerError",
    "PlusVibeStatusError",
    "PlusVibeTimeoutError",
    "PlusVibeWorkspace",
    "ReplyRates",
    "WarmupConfig",
    "WarmupSettings",
    "WarmupStatusUpdate",
]
