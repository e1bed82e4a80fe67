"""clients.stripe: the StripeClient built from settings, and webhook verification."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from types import SimpleNamespace

import pytest
import stripe
from pydantic import SecretStr

from clients.stripe import make_stripe_client
from clients.stripe import verify_webhook

SECRET = "whsec_test_secret"


def _settings(**overrides):
    values = {
        "stripe_api_key": SecretStr("sk_test_123"),
        "stripe_api_base": None,
        "vendor_timeout_s": 20.0,
        "vendor_connect_timeout_s": 5.0,
    }
    values.update(overrides)
    return SimpleNamespace(**values)


def _options(client: stripe.StripeClient):
    return client._requestor._options


def test_make_stripe_client_targets_real_stripe_with_sdk_retries():
    client = make_stripe_client(_settings())
    options = _options(client)
    assert options.base_addresses["api"] == "https://api.stripe.com"
    assert options.max_network_retries == 2
    assert client._requestor._client._timeout == (5.0, 20.0)
    client._requestor._client.close()


def test_make_stripe_client_points_at_the_sandbox_without_retries():
    client = make_stripe_client(_settings(stripe_api_base="http://127.0.0.1:8700/stripe/"))
    options = _options(client)
    assert options.base_addresses["api"] == "http://127.0.0.1:8700/stripe"
    assert options.max_network_retries == 0
    assert "sk_test_123" not in repr(client)
    client._requestor._client.close()


def test_make_stripe_client_overrides_win_and_missing_key_is_refused():
    from core.settings import ConfigurationError

    client = make_stripe_client(_settings(), max_network_retries=5)
    assert _options(client).max_network_retries == 5
    client._requestor._client.close()
    with pytest.raises(ConfigurationError, match="APP_STRIPE_API_KEY"):
        make_stripe_client(_settings(stripe_api_key=None))


def _signed(body: bytes, *, secret: str = SECRET, ts: int | None = None) -> str:
    ts = int(time.time()) if ts is None else ts
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


def test_verify_webhook_returns_the_event():
    body = json.dumps(
        {
            "id": "evt_1",
            "object": "event",
            "type": "checkout.session.completed",
            "data": {"object": {"id": "cs_1"}},
        }
    ).encode()
    event = verify_webhook(body, _signed(body), SECRET)
    assert event.id == "evt_1" and event.type == "checkout.session.completed"


def test_verify_webhook_raises_the_sdk_errors_unchanged():
    body = b'{"id": "evt_1", "object": "event"}'
    with pytest.raises(stripe.SignatureVerificationError):
        verify_webhook(body, _signed(body, secret="whsec_other"), SECRET)
    with pytest.raises(stripe.SignatureVerificationError):
        verify_webhook(body, _signed(body, ts=int(time.time()) - 3600), SECRET)
    with pytest.raises(stripe.SignatureVerificationError):
        verify_webhook(body, "", SECRET)
    bad = b"{not json"
    with pytest.raises(ValueError):
        verify_webhook(bad, _signed(bad), SECRET)
