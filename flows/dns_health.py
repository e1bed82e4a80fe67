"""Check every live cold domain's DNS records and health score; alert on drift and critical scores.

Two Zapmail reads per domain and run (records, score), paced to leave most of the budget to
provisioning (tasks/dns_health.py). The daily run checks every paying provision's domains and
caches each domain's check for the day, so a retry reads only what it missed; an on-demand run
(one provision, from the dashboard) reads afresh. A domain Zapmail could not be read for fails
the run at the end, after the others were stored. Deployments: ``dns-health/daily`` and
``dns-health/on-demand``.
"""

from __future__ import annotations

from datetime import UTC
from datetime import datetime
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.logging import get_run_logger
from prefect.runtime import flow_run

from tasks.dns_health import check_domain_health
from tasks.dns_health import find_health_domains


class DnsHealthIncompleteError(RuntimeError):
    """Some domains could not be read; the others were stored."""


def run_name() -> str:
    """Name the run after the provision it checks, or "all"."""
    return f"dns-health-{flow_run.parameters.get('provision_id') or 'all'}"


@flow(name="dns-health", flow_run_name=run_name)
def dns_health(provision_id: int | None = None) -> dict[str, Any]:
    """Read, compare and store each live domain's DNS and score; alert on new problems."""
    day = datetime.now(UTC).date().isoformat()
    # The daily run's checks are cached for the day; a run for one provision reads afresh.
    run_key = day if provision_id is None else f"{day}:{flow_run.id or 'local'}"
    results, failed = [], []
    for domain_id in find_health_domains(provision_id):
        try:
            results.append(check_domain_health(domain_id, run_key))
        except Exception as exc:  # noqa: BLE001 - one unreadable domain must not hide the others
            get_run_logger().warning("domain %s not checked: %s", domain_id, exc)
            failed.append(domain_id)
    checked = [r for r in results if "skipped" not in r]
    summary = {
        "day": day,
        "domains": len(checked),
        "with_problems": sum(1 for r in checked if r["problems"]),
        "alerts": sum(len(r["alerts"]) for r in checked),
        "zapmail_calls": sum(r["calls"] for r in checked),
        "failed": failed,
    }
    create_markdown_artifact(
        key=f"dns-health-{provision_id or 'all'}",
        markdown="\n".join(
            [f"# DNS health {day}", "", "| what | count |", "|---|---|"]
            + [f"| {k} | {v} |" for k, v in summary.items() if k != "day"]
        ),
        description="What the latest DNS health check read, found and alerted",
    )
    if failed:
        raise DnsHealthIncompleteError(f"domains {failed} could not be read; the others are stored")
    return summary


if __name__ == "__main__":
    dns_health()
