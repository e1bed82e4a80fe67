"""Process-wide resources for tasks: settings, the app-DB engine and sessions.

Tasks receive only ids (Prefect caching needs hashable, plain inputs), so they reach the database
and vendors through these accessors, built once per worker process.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from pydantic import SecretStr
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker

from clients.heyreach import HeyReachClient
from clients.plusvibe import PlusVibeClient
from clients.zapmail import ZapmailClient
from core.db import make_engine
from core.db import make_sessionmaker
from core.db import session_scope
from core.settings import Settings
from core.settings import get_settings
from tasks.limits import HEYREACH
from tasks.limits import PLUSVIBE
from tasks.limits import ThrottledTransport
from tasks.limits import no_slot
from tasks.limits import throttled
from tasks.limits import zapmail_limits

_override: Settings | None = None
_resolved: tuple[Settings, Settings] | None = None
# False only for tests of the task code without a Prefect server (tests/tasks/): the clients'
# transports then take no Prefect rate-limit slot, and behave the same otherwise.
_prefect_limits = True


# Prefect Secret blocks that hold the vendor keys when APP_VENDOR_SECRET_BLOCKS is on: operators
# then manage the keys in the Prefect UI and worker hosts need none in their environment.
SECRET_BLOCKS = {
    "zapmail_api_key": "outbound-zapmail-api-key",
    "plusvibe_api_key": "outbound-plusvibe-api-key",
    "heyreach_api_key": "outbound-heyreach-api-key",
    "stripe_api_key": "outbound-stripe-api-key",
}


def settings() -> Settings:
    """Return the settings in force for this process (vendor keys from Secret blocks if so set)."""
    global _resolved
    base = _override or get_settings()
    if _resolved is None or _resolved[0] is not base:
        _resolved = (base, _with_secret_blocks(base) if base.vendor_secret_blocks else base)
    return _resolved[1]


def _with_secret_blocks(base: Settings) -> Settings:
    # Imported lazily: loading a block is an API call, needed only in this mode.
    from prefect.blocks.system import Secret

    keys = {field: SecretStr(str(Secret.load(name).get())) for field, name in SECRET_BLOCKS.items()}
    return base.model_copy(update=keys)


def use_settings(new: Settings | None) -> None:
    """Replace the process settings (tests, the demo) and drop everything built from the old ones."""
    global _override, _resolved
    _override, _resolved = new, None
    # Close what the old settings built: pooled DB connections and vendor HTTP pools.
    if engine.cache_info().currsize:
        engine().dispose()
    for client in (zapmail, plusvibe, heyreach):
        if client.cache_info().currsize:
            client().close()
    for cached in (engine, _factory, zapmail, plusvibe, heyreach):
        cached.cache_clear()


def use_prefect_limits(enabled: bool) -> None:
    """Whether vendor clients take Prefect rate-limit slots (off: tests without a Prefect server)."""
    global _prefect_limits
    _prefect_limits = enabled
    for client in (zapmail, plusvibe, heyreach):
        if client.cache_info().currsize:
            client().close()
        client.cache_clear()


def _take() -> Callable[[str], None] | None:
    return None if _prefect_limits else no_slot


@lru_cache(maxsize=1)
def engine() -> Engine:
    """The app-DB engine: from the SqlAlchemyConnector block when configured, else the URL."""
    current = settings()
    if current.app_db_block:
        # Imported lazily: only deployments that manage DB credentials in Prefect need it.
        from prefect_sqlalchemy import SqlAlchemyConnector

        connector = SqlAlchemyConnector.load(current.app_db_block)
        # Only the credentials come from the block; the engine is built like every other one
        # (pre-ping, SQLite pragmas), so both paths behave the same.
        url = connector.connection_info
        if not isinstance(url, str):
            url = url.create_url().render_as_string(hide_password=False)
        return make_engine(str(url))
    return make_engine(current.database_url)


@lru_cache(maxsize=1)
def _factory() -> sessionmaker[Session]:
    return make_sessionmaker(engine())


@contextmanager
def db() -> Iterator[Session]:
    """Yield a session that commits on success and rolls back on error."""
    with session_scope(_factory()) as session:
        yield session


# One client per vendor and process: connection pools are reused across tasks, and every
# request waits for its slot of the vendor's global rate limit (tasks/limits.py).


@lru_cache(maxsize=1)
def zapmail() -> ZapmailClient:
    """The Zapmail client (use ``.for_workspace(id)`` for workspace-scoped calls)."""
    return ZapmailClient.from_settings(
        settings(), transport=ThrottledTransport(zapmail_limits, take=_take())
    )


@lru_cache(maxsize=1)
def plusvibe() -> PlusVibeClient:
    """The PlusVibe client, authenticated as the operator."""
    return PlusVibeClient.from_settings(settings(), transport=throttled(PLUSVIBE, _take()))


@lru_cache(maxsize=1)
def heyreach() -> HeyReachClient:
    """The HeyReach client."""
    return HeyReachClient.from_settings(settings(), transport=throttled(HEYREACH, _take()))
