"""Upgrade forms: the choice of a larger package."""

from __future__ import annotations

from portal.wizard.forms import TierChoiceForm


class UpgradeForm(TierChoiceForm):
    """Choose one of the packages larger than the student's own."""

    refusal = "Choose one of the larger packages."
