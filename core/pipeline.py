"""The one step registry: every pipeline step's key, order, words for students and usual duration.

Flows name their steps by these keys, the task mirror (tasks/records.py) writes them, the
progress page (portal/progress.py) and the admin pages present them. The durations are what the
vendors usually take (domains minutes to hours, Google mailboxes about an hour); ``slow_s`` is the
point after which the page says a step is taking longer than usual. ``durations`` rescales them
for a vendor clock that runs faster than real time (the demo's sandbox).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    """One pipeline step: how it is presented, how long it usually takes, what its failure says."""

    key: str
    title: str
    description: str
    typical_s: int
    slow_s: int
    failure: str


_STEPS = (
    Step(
        "zapmail_workspace",
        "Prepare your workspace",
        "A private workspace for your domains and mailboxes.",
        20,
        120,
        "We could not prepare your domain workspace.",
    ),
    Step(
        "buy_domains",
        "Buy your domains",
        "We register the domains you picked.",
        60,
        600,
        "We could not complete your domain purchase.",
    ),
    Step(
        "wait_domains",
        "Domains go live",
        "The registry activates each domain and we set up its mail records (MX, SPF, DKIM).",
        30 * 60,
        3 * 3600,
        "Your domains are taking longer than usual to activate.",
    ),
    Step(
        "dmarc",
        "Email authentication",
        "DMARC tells inboxes your mail is genuine.",
        30,
        300,
        "We could not configure email authentication (DMARC) for your domains.",
    ),
    Step(
        "forwarding",
        "Website forwarding",
        "Visitors of your domains land on your main website (when you gave one).",
        15,
        300,
        "We could not point your domains at your website.",
    ),
    Step(
        "mailboxes",
        "Create mailboxes",
        "Two mailboxes per domain with your sender name.",
        60,
        600,
        "We could not create your mailboxes.",
    ),
    Step(
        "wait_mailboxes",
        "Mailboxes go live",
        "The mail provider activates each mailbox.",
        60 * 60,
        3 * 3600,
        "Your mailboxes are taking longer than usual to activate.",
    ),
    Step(
        "plusvibe_workspace",
        "Warmup account",
        "Your own PlusVibe login to watch warmup.",
        30,
        300,
        "We could not prepare your warmup workspace.",
    ),
    Step(
        "connect_plusvibe",
        "Connect mailboxes to warmup",
        "Each mailbox is linked to the warmup tool.",
        5 * 60,
        45 * 60,
        "We could not connect your mailboxes to the warmup tool.",
    ),
    Step(
        "warmup",
        "Start warmup",
        "Warmup starts gently: 2 emails a day, rising slowly.",
        30,
        300,
        "We could not switch on warmup for your mailboxes.",
    ),
    Step(
        "heyreach_list",
        "LinkedIn lead list",
        "An empty HeyReach list, ready for your leads.",
        15,
        300,
        "We could not create your LinkedIn lead list.",
    ),
    Step(
        "finish",
        "Final checks",
        "We check everything and open your dashboard.",
        10,
        120,
        "We could not finish setting up your account.",
    ),
)

# Only a burned-domain replacement retires a domain (after its successor warms up).
RETIRE_STEP = Step(
    "retire_domain",
    "Retire the old domain",
    "Its mailboxes stop sending and are removed at renewal, so they stop costing.",
    30,
    300,
    "We could not retire your old domain.",
)

STEPS: dict[str, Step] = {step.key: step for step in (*_STEPS, RETIRE_STEP)}

# However fast the vendors' clock runs, a step still takes our own calls' time: a rescaled
# estimate never goes below these (at real speed every step is well above them).
MIN_TYPICAL_S = 2
MIN_SLOW_S = 30

# The provisioning run walks every step, in this order.
PROVISION_STEPS: tuple[str, ...] = tuple(step.key for step in _STEPS)

# An upgrade reuses the provision's workspaces: it skips creating them and the lead list.
UPGRADE_STEPS: tuple[str, ...] = (
    "buy_domains",
    "wait_domains",
    "dmarc",
    "forwarding",
    "mailboxes",
    "wait_mailboxes",
    "connect_plusvibe",
    "warmup",
    "finish",
)


# A replacement walks the upgrade's steps for its one new domain, then retires the old one.
REPLACEMENT_STEPS: tuple[str, ...] = (*UPGRADE_STEPS[:-1], "retire_domain", "finish")


def base_key(key: str) -> str:
    """The pipeline step a mirror key names (``upgrade-3:mailboxes`` -> ``mailboxes``)."""
    return key.rsplit(":", 1)[-1]


def failure_words(key: str, default: str) -> str:
    """What a student reads when step ``key`` (a mirror key too) fails; ``default`` if unknown."""
    step = STEPS.get(base_key(key))
    return step.failure if step else default


def upgrade_step_key(upgrade_id: int, step: str) -> str:
    """Return the mirror key of an upgrade's step (unique next to the provision's own steps)."""
    return f"upgrade-{upgrade_id}:{step}"


def replacement_step_key(replacement_id: int, step: str) -> str:
    """Return the mirror key of a domain replacement's step."""
    return f"replacement-{replacement_id}:{step}"


def durations(key: str, time_scale: float = 1.0) -> tuple[int, int]:
    """(typical, slow) seconds of step ``key`` when vendor time runs ``time_scale`` x real time."""
    step = STEPS[base_key(key)]
    typical = max(round(step.typical_s / time_scale), MIN_TYPICAL_S)
    return typical, max(round(step.slow_s / time_scale), MIN_SLOW_S, typical)
