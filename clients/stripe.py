"""Thin Stripe wrapper: build the official ``StripeClient`` from Settings; verify webhooks.

Retries are the SDK's own: it adds an ``Idempotency-Key`` to every POST and reuses it on its
network retries, so retrying money calls is safe. The sandbox is local and deterministic, so
retrying there only slows tests and hides faults injected on purpose: retries are 0 whenever
``stripe_api_base`` points at a loopback host, 2 otherwise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any
from urllib.parse import urlsplit

import stripe

from clients._http import require_key

if TYPE_CHECKING:
    from core.settings import Settings

PROD_MAX_NETWORK_RETRIES = 2
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}


def _is_local(api_base: str | None) -> bool:
    if not api_base:
        return False
    host = urlsplit(api_base).hostname or ""
    return host in _LOOPBACK_HOSTS or host.startswith("127.")


def make_stripe_client(settings: Settings, **overrides: Any) -> stripe.StripeClient:
    """Return a ``StripeClient`` for ``settings`` (sandbox when ``stripe_api_base`` is set).

    Keyword overrides are passed to ``StripeClient`` (e.g. ``max_network_retries=0``).
    """
    api_key = require_key(settings.stripe_api_key, "stripe_api_key")
    base = settings.stripe_api_base
    kwargs: dict[str, Any] = {
        "max_network_retries": 0 if _is_local(base) else PROD_MAX_NETWORK_RETRIES,
        # requests is the SDK's own dependency; a (connect, read) tuple keeps timeouts explicit.
        "http_client": stripe.RequestsClient(
            timeout=(float(settings.vendor_connect_timeout_s), float(settings.vendor_timeout_s))
        ),
    }
    if base:
        kwargs["base_addresses"] = {"api": base.rstrip("/")}
    kwargs.update(overrides)
    return stripe.StripeClient(api_key, **kwargs)


def verify_webhook(payload: bytes, sig_header: str, secret: str) -> stripe.Event:
    """Verify a ``Stripe-Signature`` header and parse the event.

    Raises ``stripe.SignatureVerificationError`` (bad, missing or stale signature) or
    ``ValueError`` (invalid JSON), unchanged, so the webhook view can answer 400.
    """
    return stripe.Webhook.construct_event(payload, sig_header, secret)
