"""Run summaries: what a provisioning, upgrade or replacement run set up, as data and artifact.

Vendor ids and states only, never a secret: these go into Prefect artifacts and run results.
"""

from __future__ import annotations

from typing import Any

from core.models import Domain
from core.models import DomainReplacement
from core.models import Provision
from core.models import PurchaseState
from core.models import Upgrade
from tasks import runtime


def provision_summary(provision: Provision) -> dict[str, Any]:
    """Vendor ids and resources of a provision, with no secrets."""
    domains = [d for d in provision.domains if d.purchase_state == PurchaseState.PURCHASED]
    return {
        "provision_id": provision.id,
        "student": provision.user.email,
        "tier": provision.tier.name,
        "zapmail_workspace_id": provision.zapmail_workspace_id,
        "plusvibe_workspace_id": provision.plusvibe_workspace_id,
        "plusvibe_login": provision.plusvibe_client_email,
        "heyreach_list_id": provision.heyreach_list_id,
        "domains": domain_summaries(domains),
        "mailbox_count": sum(len(d.mailboxes) for d in domains),
    }


def domain_summaries(domains: list[Domain]) -> list[dict[str, Any]]:
    """Each domain's and mailbox's vendor ids and state, for run summaries (never a secret)."""
    return [
        {
            "name": d.name,
            "zapmail_id": d.zapmail_domain_id,
            "status": d.status,
            "dmarc": d.dmarc_email,
            "mailboxes": [
                {
                    "address": m.address,
                    "zapmail_id": m.zapmail_mailbox_id,
                    "plusvibe_id": m.plusvibe_account_id,
                    "warmup": m.warmup_enabled,
                }
                for m in d.mailboxes
            ],
        }
        for d in domains
    ]


def student_email(provision_id: int) -> str:
    """The provision's student, for run names; "unknown" when it cannot be read."""
    try:
        with runtime.db() as session:
            provision = session.get(Provision, provision_id)
            return provision.user.email if provision else "unknown"
    except Exception:  # noqa: BLE001 - a run name must never stop a run
        return "unknown"


def provision_markdown(summary: dict[str, Any]) -> str:
    """Render a provision summary as the Prefect artifact's markdown."""
    lines = [
        f"# Provision {summary['provision_id']}: {summary['student']} ({summary['tier']})",
        "",
        f"- Zapmail workspace: `{summary['zapmail_workspace_id']}`",
        f"- PlusVibe workspace: `{summary['plusvibe_workspace_id']}`, "
        f"login `{summary['plusvibe_login']}` (password stored encrypted, not shown)",
        f"- HeyReach list: `{summary['heyreach_list_id']}`",
        "",
        *domain_table(summary["domains"]),
    ]
    return "\n".join(lines)


def domain_table(domains: list[dict[str, Any]]) -> list[str]:
    """Markdown table lines of ``domain_summaries``: one row per mailbox."""
    lines = [
        "| domain | Zapmail id | status | DMARC | mailbox | Zapmail id | PlusVibe id | warmup |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for domain in domains:
        for box in domain["mailboxes"]:
            lines.append(
                f"| {domain['name']} | {domain['zapmail_id']} | {domain['status']} | "
                f"{domain['dmarc']} | {box['address']} | {box['zapmail_id']} | "
                f"{box['plusvibe_id']} | {'on' if box['warmup'] else 'off'} |"
            )
    return lines


def upgrade_summary(upgrade: Upgrade) -> dict[str, Any]:
    """Vendor ids of what an upgrade added, with no secrets."""
    provision = upgrade.provision
    domains = [d for d in provision.domains if d.upgrade_id == upgrade.id]
    return {
        "upgrade_id": upgrade.id,
        "provision_id": provision.id,
        "student": provision.user.email,
        "from_tier": upgrade.from_tier.name,
        "to_tier": upgrade.to_tier.name,
        "zapmail_workspace_id": provision.zapmail_workspace_id,
        "plusvibe_workspace_id": provision.plusvibe_workspace_id,
        "domains": domain_summaries(domains),
        "mailbox_count": sum(len(d.mailboxes) for d in domains),
    }


def upgrade_markdown(summary: dict[str, Any]) -> str:
    """Render an upgrade summary as the Prefect artifact's markdown."""
    lines = [
        f"# Upgrade {summary['upgrade_id']} of provision {summary['provision_id']}: "
        f"{summary['student']} ({summary['from_tier']} -> {summary['to_tier']})",
        "",
        f"- Zapmail workspace: `{summary['zapmail_workspace_id']}`",
        f"- PlusVibe workspace: `{summary['plusvibe_workspace_id']}` (the student's existing one)",
        "",
        "New domains:",
        "",
        *domain_table(summary["domains"]),
    ]
    return "\n".join(lines)


def replacement_summary(replacement: DomainReplacement) -> dict[str, Any]:
    """Vendor ids of a replacement's new domain and what was retired, with no secrets."""
    provision, old, new = replacement.provision, replacement.old_domain, replacement.new_domain
    return {
        "replacement_id": replacement.id,
        "provision_id": provision.id,
        "student": provision.user.email,
        "old_domain": old.name,
        "new_domain": new.name,
        "retired_mailboxes": sorted(m.address for m in old.mailboxes),
        "domains": domain_summaries([new]),
        "mailbox_count": len(new.mailboxes),
    }


def replacement_markdown(summary: dict[str, Any]) -> str:
    """Render a replacement summary as the Prefect artifact's markdown."""
    retired = ", ".join(summary["retired_mailboxes"]) or "none"
    lines = [
        f"# Replacement {summary['replacement_id']} of provision {summary['provision_id']}: "
        f"{summary['student']} ({summary['old_domain']} -> {summary['new_domain']})",
        "",
        f"- Retired: `{summary['old_domain']}` (warmup paused, auto-renew off); its mailboxes "
        f"are removed at renewal: {retired}",
        "",
        "New domain:",
        "",
        *domain_table(summary["domains"]),
    ]
    return "\n".join(lines)
