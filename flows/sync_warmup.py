"""Scheduled warmup sync: every warming provision's daily snapshot and labels, and run reconciling.

1. Reconcile: provisioning and upgrade runs that crashed or were cancelled outside the portal
   (no hook could report it) are mirrored into the app DB as failed.
2. Sync: one PlusVibe listing per workspace page for every active, upgrading or past-due
   provision, written in batches (today's snapshots kept for the charts, labels recomputed).
   A few batches run at once so listings overlap their latency and each other's DB writes,
   while the global PlusVibe rate limit paces the calls themselves: the sync asks for each slot
   only once the last one has refilled (tasks/pacing.py), so its own asks are never refused.

A workspace PlusVibe could not list fails the run at the end, after everything else is
written, so operators see it; the next scheduled run tries it again. Deployment:
``sync-warmup/every-15-minutes`` (never overlaps itself: concurrency limit 1, CANCEL_NEW).
"""

from __future__ import annotations

from collections import deque
from datetime import UTC
from datetime import datetime
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.futures import PrefectFuture
from prefect.logging import get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from tasks.reconcile import reconcile_runs
from tasks.warmup_sync import find_sync_provisions
from tasks.warmup_sync import sync_warmup_batch

MAX_PARALLEL = 16
MAX_BATCH = 100


class WarmupSyncIncompleteError(RuntimeError):
    """Some workspaces could not be read; the others were written."""


@flow(
    name="sync-warmup",
    flow_run_name="sync-warmup",
    task_runner=ThreadPoolTaskRunner(max_workers=MAX_PARALLEL),
)
def sync_warmup(batch_size: int = 10, parallel: int = 4) -> dict[str, Any]:
    """Reconcile dead runs, then store today's warmup numbers and labels of every provision."""
    if not 1 <= batch_size <= MAX_BATCH or not 1 <= parallel <= MAX_PARALLEL:
        raise ValueError(f"batch_size must be 1-{MAX_BATCH} and parallel 1-{MAX_PARALLEL}")
    reconciled = reconcile_runs()
    day = datetime.now(UTC).date()
    ids = find_sync_provisions()
    batches = [ids[start : start + batch_size] for start in range(0, len(ids), batch_size)]
    results: list[dict[str, Any]] = []
    pending: deque[PrefectFuture[dict[str, Any]]] = deque()
    for batch in batches:
        # A sliding window: at most `parallel` batches in flight, oldest collected first.
        if len(pending) >= parallel:
            results.append(pending.popleft().result())
        pending.append(sync_warmup_batch.submit(batch, day))
    while pending:
        results.append(pending.popleft().result())
    summary = {
        "day": day.isoformat(),
        "provisions": len(ids),
        "workspaces": sum(r["workspaces"] for r in results),
        "snapshots": sum(r["snapshots"] for r in results),
        "labels": sum(r["labels"] for r in results),
        "failed": sorted(pid for r in results for pid in r["failed"]),
        "reconciled": reconciled,
    }
    get_run_logger().info("warmup sync: %s", {k: v for k, v in summary.items() if k != "failed"})
    create_markdown_artifact(
        key="warmup-sync",
        markdown="\n".join(
            [f"# Warmup sync {summary['day']}", "", "| what | count |", "|---|---|"]
            + [f"| {k} | {v} |" for k, v in summary.items() if k != "day"]
        ),
        description="What the latest warmup sync read and wrote (counts and provision ids)",
    )
    if summary["failed"]:
        raise WarmupSyncIncompleteError(
            f"PlusVibe could not list the workspaces of provisions {summary['failed']}; "
            "every other provision was synced"
        )
    return summary


if __name__ == "__main__":
    sync_warmup()
