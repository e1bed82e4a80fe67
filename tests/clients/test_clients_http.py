"""Shared plumbing: the status -> exception map, Retry-After, timeouts, field parsers."""

from __future__ import annotations

import dataclasses
import importlib
import pickle
from datetime import UTC
from datetime import datetime
from decimal import Decimal

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr
from pydantic import TypeAdapter

from clients import errors as generic
from clients._http import DEFAULT_TIMEOUT
from clients._http import make_timeout
from clients._http import parse_retry_after
from clients._http import status_error
from clients._models import Count
from clients._models import Metric
from clients._models import Price
from clients._models import VendorModel
from clients.heyreach.errors import ERRORS as HEYREACH
from clients.plusvibe.errors import ERRORS as PLUSVIBE
from clients.zapmail.errors import ERRORS as ZAPMAIL


@pytest.mark.parametrize(
    ("status", "generic_cls", "retryable"),
    [
        (400, generic.BadRequestError, False),
        (401, generic.AuthenticationError, False),
        (403, generic.AuthenticationError, False),
        (404, generic.NotFoundError, False),
        (408, generic.VendorStatusError, True),
        (409, generic.ConflictError, True),
        (410, generic.VendorStatusError, False),
        (422, generic.BadRequestError, False),
        (429, generic.RateLimitError, True),
        (500, generic.ServerError, True),
        (502, generic.ServerError, True),
        (503, generic.ServerError, True),
        (504, generic.ServerError, True),
    ],
)
@pytest.mark.parametrize(
    "errors", [ZAPMAIL, PLUSVIBE, HEYREACH], ids=["zapmail", "plusvibe", "heyreach"]
)
def test_status_error_maps_every_status(errors, status, generic_cls, retryable):
    exc = status_error(httpx.Response(status), errors, message="msg", request_id="r-1")
    assert isinstance(exc, generic_cls)
    assert isinstance(exc, errors.base)
    assert exc.retryable is retryable
    assert exc.status == status and exc.request_id == "r-1"
    assert exc.vendor in str(exc) and "msg" in str(exc)


@pytest.mark.parametrize("status", [400, 402, 404, 409, 422, 429, 500, 504])
def test_status_error_on_a_paid_call_marks_every_status_unknown(status):
    # Issue 13: a vendor may execute a purchase and then answer 409 or 429; only a connection
    # never made proves a refusal.
    exc = status_error(
        httpx.Response(status), ZAPMAIL, message=None, request_id=None, spends_money=True
    )
    assert exc.outcome_unknown and not exc.retryable
    free = status_error(httpx.Response(status), ZAPMAIL, message=None, request_id=None)
    assert not free.outcome_unknown


def test_status_error_falls_back_to_the_reason_phrase_and_request_id_header():
    exc = status_error(
        httpx.Response(503, headers={"x-request-id": "hdr-1"}),
        HEYREACH,
        message=None,
        request_id=None,
    )
    assert "Service Unavailable" in str(exc) and exc.request_id == "hdr-1"


def test_rate_limit_reads_retry_after_ms_when_seconds_are_absent():
    exc = status_error(
        httpx.Response(429, headers={"retry-after-ms": "1500"}),
        PLUSVIBE,
        message=None,
        request_id=None,
    )
    assert isinstance(exc, generic.RateLimitError) and exc.retry_after == 1.5


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("42", 42.0),
        (" 0.5 ", 0.5),
        ("-3", 0.0),
        ("Wed, 26 Nov 2026 10:00:30 GMT", 30.0),
        ("Wed, 26 Nov 2026 09:00:00 GMT", 0.0),
        ("soon", None),
        ("", None),
        (None, None),
        ("nan", None),
    ],
)
def test_parse_retry_after(header, expected):
    now = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)
    assert parse_retry_after(header, now=now) == expected


@given(st.text(max_size=40))
def test_parse_retry_after_never_raises(text):
    value = parse_retry_after(text)
    assert value is None or value >= 0


def test_make_timeout_is_always_explicit():
    assert make_timeout(None) == DEFAULT_TIMEOUT == httpx.Timeout(20.0, connect=5.0)
    assert make_timeout(0.5) == httpx.Timeout(0.5, connect=0.5)
    custom = httpx.Timeout(3.0, connect=1.0)
    assert make_timeout(custom) is custom


def test_exceptions_pickle_with_their_attributes():
    exc = ZAPMAIL.rate_limit("Too many", status=429, request_id="e-1", retry_after=3.0)
    copy = pickle.loads(pickle.dumps(exc))
    assert type(copy) is type(exc)
    assert (copy.status, copy.request_id, copy.retry_after, copy.retryable) == (
        429,
        "e-1",
        3.0,
        True,
    )
    unknown = ZAPMAIL.timeout("read timed out", retryable=False, outcome_unknown=True)
    copy = pickle.loads(pickle.dumps(unknown))
    assert copy.outcome_unknown and not copy.retryable


def test_vendor_classes_are_catchable_both_ways():
    exc = HEYREACH.server("boom", status=500)
    assert isinstance(exc, generic.ServerError)
    assert isinstance(exc, HEYREACH.base)
    assert isinstance(exc, generic.VendorError)
    assert not isinstance(exc, ZAPMAIL.base)


@pytest.mark.parametrize("tree", [ZAPMAIL, PLUSVIBE, HEYREACH], ids=lambda t: t.base.vendor)
def test_every_vendor_class_is_importable_by_its_name_and_pickles(tree):
    vendor_cls = {f.name: getattr(tree, f.name) for f in dataclasses.fields(tree)}
    module = importlib.import_module(f"clients.{tree.base.vendor}")
    for field, cls in vendor_cls.items():
        # Pickle finds a class by module and name: both must lead back to this very class.
        assert getattr(importlib.import_module(cls.__module__), cls.__qualname__) is cls
        assert getattr(module, cls.__name__) is cls  # the package still exports it
        assert field == "base" or cls.__name__.endswith(field.title().replace("_", "") + "Error")
        copy = pickle.loads(pickle.dumps(cls("m", status=500, request_id="r-1")))
        assert type(copy) is cls and (copy.status, copy.request_id) == (500, "r-1")
        assert issubclass(cls, tree.base)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("12.99", Decimal("12.99")),
        ("0.00", Decimal("0.00")),
        ("NaN", None),
        ("nan", None),
        ("$1,012.50", Decimal("1012.50")),
        (12.5, Decimal("12.5")),
        (7, Decimal("7")),
        (float("nan"), None),
        ("", None),
        ("n/a", None),
        (None, None),
        ("Infinity", None),
    ],
)
def test_price_parsing(raw, expected):
    assert TypeAdapter(Price).validate_python(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (-1, None),
        ("-1", None),
        (-1.0, None),
        (0, 0.0),
        ("35", 35.0),
        ("97%", 97.0),
        (None, None),
        ("", None),
    ],
)
def test_metric_reads_minus_one_as_no_data(raw, expected):
    assert TypeAdapter(Metric).validate_python(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"), [("3", 3), (3, 3), ("", None), (None, None), ("4.0", 4)]
)
def test_count_accepts_strings(raw, expected):
    assert TypeAdapter(Count).validate_python(raw) == expected


def test_extra_fields_that_look_like_credentials_are_masked():
    class Row(VendorModel):
        id: str

    row = Row.model_validate(
        {
            "id": 5,
            "smtpPassword": "S1",
            "nested": {"imap_password": "S2", "host": "h"},
            "tokens": ["S3"],
        }
    )
    assert row.id == "5"
    assert isinstance(row.smtpPassword, SecretStr)  # type: ignore[attr-defined]
    assert row.nested["imap_password"].get_secret_value() == "S2"  # type: ignore[attr-defined]
    assert row.nested["host"] == "h"  # type: ignore[attr-defined]
    for secret in ("S1", "S2", "S3"):
        assert f"'{secret}'" not in repr(row)


def test_from_settings_builds_every_client_from_real_settings(tmp_path):
    from clients.heyreach import HeyReachClient
    from clients.plusvibe import PlusVibeClient
    from clients.stripe import make_stripe_client
    from clients.zapmail import ZapmailClient
    from core.settings import Settings

    settings = Settings(
        env="test", instance_dir=tmp_path, sandbox_url="http://127.0.0.1:8799", _env_file=None
    )
    expected_timeout = httpx.Timeout(
        settings.vendor_timeout_s, connect=settings.vendor_connect_timeout_s
    )
    for cls in (ZapmailClient, PlusVibeClient, HeyReachClient):
        with cls.from_settings(settings) as client:
            assert client._http.base_url.startswith("http://127.0.0.1:8799/")
            assert client._http.timeout == expected_timeout
    stripe_client = make_stripe_client(settings)
    assert stripe_client._requestor._options.base_addresses["api"] == "http://127.0.0.1:8799/stripe"
    assert stripe_client._requestor._options.max_network_retries == 0
    stripe_client._requestor._client.close()
