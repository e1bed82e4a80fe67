"""The provisioning and upgrade pipelines' step keys, in order (shared by flows and the portal)."""

from __future__ import annotations

PROVISION_STEPS: tuple[str, ...] = (
    "zapmail_workspace",
    "buy_domains",
    "wait_domains",
    "dmarc",
    "mailboxes",
    "wait_mailboxes",
    "plusvibe_workspace",
    "connect_plusvibe",
    "warmup",
    "heyreach_list",
    "finish",
)

UPGRADE_STEPS: tuple[str, ...] = (
    "buy_domains",
    "wait_domains",
    "dmarc",
    "mailboxes",
    "wait_mailboxes",
    "connect_plusvibe",
    "warmup",
    "finish",
)


def upgrade_step_key(upgrade_id: int, step: str) -> str:
    """Return the mirror key of an upgrade's step (unique next to the provision's own steps)."""
    return f"upgrade-{upgrade_id}:{step}"
