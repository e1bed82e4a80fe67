"""Secrets never leak: not in client reprs, exception text/args/pickles, nor log records."""

from __future__ import annotations

import logging
import pickle
import traceback

import httpx
import pytest
from pydantic import SecretStr

from clients.errors import VendorError
from clients.heyreach import HeyReachClient
from clients.plusvibe import PlusVibeClient
from clients.zapmail import ZapmailClient

KEY = "KEY-7d1e0c9a-SUPERSECRET"
PASSWORD = "PW-Zx81!-TOPSECRET"
SECRETS = (KEY, PASSWORD)


def _echo(status: int):
    """A vendor that (badly) echoes the request headers and body into its error message."""

    def handler(request: httpx.Request) -> httpx.Response:
        echoed = f"rejected {dict(request.headers)} {request.content.decode()}"
        return httpx.Response(status, json={"message": echoed, "errorMessage": echoed})

    return handler


def _leaky_transport_error(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadError(f"reset while sending {request.headers} {request.content.decode()}")


def _calls(transport: httpx.BaseTransport):
    zm = ZapmailClient(KEY, transport=transport)
    pv = PlusVibeClient(KEY, transport=transport, workspace_id="w" * 24)
    hr = HeyReachClient(KEY, transport=transport)
    calls = [
        lambda: zm.add_third_party_account("ops@example.com", SecretStr(PASSWORD)),
        lambda: zm.get_wallet_balance(),
        lambda: zm.buy_domains(["a.com"]),
        lambda: pv.set_client_password("cl_1", PASSWORD),
        lambda: pv.list_workspaces(),
        lambda: hr.create_list("x"),
        lambda: hr.check_api_key() or hr.get_list(1),
    ]
    return (zm, pv, hr), calls


@pytest.mark.parametrize(
    "handler",
    [_echo(400), _echo(401), _echo(500), _echo(429), _leaky_transport_error],
    ids=["400", "401", "500", "429", "transport-error"],
)
def test_errors_and_logs_never_contain_the_key_or_password(handler, caplog):
    caplog.set_level(logging.DEBUG)
    clients, calls = _calls(httpx.MockTransport(handler))
    raised = 0
    for call in calls:
        try:
            call()
        except VendorError as exc:
            raised += 1
            rendered = [str(exc), repr(exc), *map(str, exc.args), exc.message]
            rendered.append("".join(traceback.format_exception(exc)))
            rendered.append(pickle.dumps(exc).decode("latin-1"))
            for text in rendered:
                for secret in SECRETS:
                    assert secret not in text
            # The echoed key was there and got masked, not merely absent.
            assert "***" in str(exc)
    assert raised >= len(calls) - 1  # check_api_key swallows a 401 by design
    for client in clients:
        for secret in SECRETS:
            assert secret not in repr(client)
        client.close()
    for secret in SECRETS:
        assert secret not in caplog.text
    assert caplog.records  # the clients did log something (method, path, status)


def test_success_logs_name_method_and_path_only(caplog):
    caplog.set_level(logging.DEBUG, logger="clients")
    body = {"accounts": [{"id": "a", "email": "x@y.z", "payload": {"smtp_password": PASSWORD}}]}
    transport = httpx.MockTransport(lambda _request: httpx.Response(200, json=body))
    with PlusVibeClient(KEY, transport=transport) as client:
        client.list_accounts("w" * 24)
    assert "GET /account/list -> 200" in caplog.text
    for secret in SECRETS:
        assert secret not in caplog.text
