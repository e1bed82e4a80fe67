"""Read the operator's Zapmail wallet and mailbox slots and store them for the admin home.

Two Zapmail reads per run, whatever the number of students. A reading that fails is stored as
failed, so the admin home says the numbers are missing rather than showing old ones as current.
Deployment: ``capacity-snapshot/every-15-minutes``.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from tasks.capacity import record_failed_snapshot
from tasks.capacity import take_capacity_snapshot


@flow(name="capacity-snapshot", flow_run_name="capacity-snapshot")
def capacity_snapshot() -> dict[str, Any]:
    """Store the wallet balance and mailbox slots; admins get an email when they run short."""
    try:
        return take_capacity_snapshot()
    except Exception as exc:
        record_failed_snapshot(f"{type(exc).__name__}: {exc}")
        raise


if __name__ == "__main__":
    capacity_snapshot()
