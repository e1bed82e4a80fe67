"""Retry and cache policies shared by every vendor task.

Retries: transient errors only (the client's `.retryable`, lost DB connections, lock waits, an
unreachable Prefect API),
exponential backoff with jitter; never a 4xx. Caching: business keys only (provision + what it
touches), never task source or run id, so a rerun, a UI retry or a second run for the same
provision reuses finished steps (docs/prefect.md 2.2).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from typing import Any

import httpx
from prefect.cache_policies import NO_CACHE
from prefect.cache_policies import CacheKeyFnPolicy
from prefect.client.schemas.objects import State
from prefect.client.schemas.objects import TaskRun
from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError
from prefect.tasks import Task
from prefect.tasks import exponential_backoff
from sqlalchemy.exc import DBAPIError

from clients.errors import VendorError
from tasks.errors import PipelineError
from tasks.locks import LockTimeoutError

RETRIES = 4
MAX_RETRY_AFTER_S = 60.0
RETRY_DELAYS = exponential_backoff(backoff_factor=2)
RETRY_JITTER = 0.5
# Short keys stay readable (and keep matching the records already stored); longer ones are hashed.
MAX_KEY_BYTES = 200


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the same call later can succeed."""
    if isinstance(exc, VendorError | PipelineError):
        return exc.retryable
    if isinstance(exc, LockTimeoutError):
        return True
    # The Prefect API was unreachable (a server restart) while taking a rate-limit slot: our
    # vendor clients wrap their own transport errors, so a bare one here is Prefect's.
    # (prefect.concurrency.sync's rate_limit raises the class prefect.concurrency.asyncio exports;
    # tests/tasks/test_policies.py fails if a Prefect upgrade changes that.)
    if isinstance(exc, ConcurrencySlotAcquisitionError | httpx.TransportError):
        return True
    # A dropped or restarted app DB connection: the next attempt gets a fresh one.
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def retry_if_transient(_task: Task[..., Any], _task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect retry condition: retry transient errors only, after any wait the vendor asked for."""
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001 - classification, the error is re-raised by Prefect
        if not is_transient(exc):
            return False
        retry_after = getattr(exc, "retry_after", None)
        if retry_after:
            # A 429's Retry-After is the vendor's own answer to "when": honour it (capped)
            # before the task's backoff adds its jittered delay.
            time.sleep(min(float(retry_after), MAX_RETRY_AFTER_S))
        return True
    return False


def signature(items: Iterable[str]) -> str:
    """Order-independent text of a set of names, for cache keys."""
    return ",".join(sorted(items))


def business_key(step: str, *fields: str) -> CacheKeyFnPolicy:
    """Cache on ``step`` plus the named task inputs, nothing else."""

    def key(_context: Any, inputs: dict[str, Any]) -> str:
        parts = []
        for field in fields:
            value = inputs[field]
            parts.append(signature(value) if isinstance(value, list | tuple) else str(value))
        text = f"{step}:" + ":".join(parts)
        # The key names the result file in local storage: past the filesystem's 255-byte name
        # limit the record is never written (Prefect only logs it) and every retry misses.
        if len(text.encode()) > MAX_KEY_BYTES:
            return f"{step}:sha256:{hashlib.sha256(text.encode()).hexdigest()}"
        return text

    return CacheKeyFnPolicy(cache_key_fn=key)


TaskKwargs = dict[str, Any]


def vendor_task_options(cache: CacheKeyFnPolicy | None, **extra: Any) -> TaskKwargs:
    """Options of a vendor-calling task: transient retries and a business-keyed JSON cache."""
    options: TaskKwargs = {
        "retries": RETRIES,
        "retry_delay_seconds": RETRY_DELAYS,
        "retry_jitter_factor": RETRY_JITTER,
        "retry_condition_fn": retry_if_transient,
        "result_serializer": "json",
    }
    if cache is None:
        options["cache_policy"] = NO_CACHE
    else:
        options["cache_policy"] = cache
        options["persist_result"] = True
    options.update(extra)
    return options
