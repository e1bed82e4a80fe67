"""Stand-in flows registered under the real deployment names, so the portal can start runs in tests.

No worker runs them: a started run stays Scheduled, which is all the portal's tests look at.
"""

from __future__ import annotations

from prefect import flow


@flow(name="provision")
def provision(provision_id: int) -> None:
    """Stand-in for flows/provision.py."""


@flow(name="upgrade")
def upgrade(upgrade_id: int) -> None:
    """Stand-in for flows/upgrade.py."""


@flow(name="refresh-dashboard")
def refresh_dashboard(provision_id: int) -> None:
    """Stand-in for flows/refresh_dashboard.py."""


@flow(name="cancel-provision")
def cancel_provision(provision_id: int) -> None:
    """Stand-in for the cancellation flow."""


STANDINS = (provision, upgrade, refresh_dashboard, cancel_provision)
