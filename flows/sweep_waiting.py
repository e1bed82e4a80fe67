"""Resume provisioning, upgrade and replacement runs whose vendor resources became ready.

Each of these runs holds its provision's claim while it waits, so one waiting provision names
the run to resume, whichever kind it is.

One listing per waiting provision's workspace per sweep (never one call per domain; waits that
Zapmail's webhooks cover are checked on a backoff schedule while webhooks arrive), then
``resume_flow_run`` for the ready ones; the resumed run replays its cached steps and continues.
It also sends every queued notification still unsent (a failed send, or one queued by a run
that died before delivering), so no queued email is lost.
Deployment: ``sweep-waiting/every-minute`` (never overlaps itself).
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from tasks.notifications import deliver_notifications
from tasks.plusvibe import check_accounts_connected
from tasks.sweep import find_waiting
from tasks.sweep import resume_run
from tasks.zapmail import check_domains_active
from tasks.zapmail import check_mailboxes_active

CHECKS = {
    "domains_active": (check_domains_active, "domains"),
    "mailboxes_active": (check_mailboxes_active, "addresses"),
    "accounts_connected": (check_accounts_connected, "addresses"),
}


@flow(name="sweep-waiting", flow_run_name="sweep-waiting")
def sweep_waiting(limit: int = 500, interval_s: float = 60.0) -> dict[str, Any]:
    """Resume the waiting runs whose resources are ready, then send unsent notifications.

    ``interval_s`` is how often the deployment runs the sweep (prefect.yaml: every minute).
    """
    resumed, still_waiting = [], []
    for waiting in find_waiting(limit, interval_s):
        check, items = CHECKS.get(str(waiting["waiting_for"]), (None, ""))
        if check is None:
            continue
        if check(waiting["provision_id"], waiting[items]) and resume_run(waiting["flow_run_id"]):
            resumed.append(waiting["provision_id"])
        else:
            still_waiting.append(waiting["provision_id"])
    emails = deliver_notifications()
    return {"resumed": resumed, "waiting": still_waiting, "emails": emails}


if __name__ == "__main__":
    sweep_waiting()
