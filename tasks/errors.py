"""Pipeline errors that carry what the student should read and whether a retry can help."""

from __future__ import annotations


class PipelineError(Exception):
    """Base of the pipeline's own errors."""

    retryable = False
    student_message = "Something went wrong; our team has been notified."


class ProvisioningBlockedError(PipelineError):
    """Failure for good, detected before spending: needs a decision, not a retry."""

    def __init__(self, detail: str, *, student_message: str, remedy: str) -> None:
        super().__init__(detail)
        self.student_message = student_message
        self.remedy = remedy


class AmbiguousPurchaseError(PipelineError):
    """A purchase call's outcome is unknown; the next attempt reconciles by listing, never re-buys."""

    retryable = True
    student_message = "Confirming your domain purchase with the registrar; this resolves itself."


class NotReadyError(PipelineError):
    """A vendor resource is still being set up (used by polling fallbacks)."""

    retryable = True
    student_message = "Still being set up by the provider."
