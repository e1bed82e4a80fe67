"""The rules the parity features share: which website a domain may forward to, what DNS must hold."""

from __future__ import annotations

import pytest

from core.dns_health import assess
from core.dns_health import new_alerts
from core.forwarding import WebsiteError
from core.forwarding import clean_website

GOOD = [
    {"type": "MX", "host": "@", "value": "smtp.google.com."},
    {"type": "TXT", "host": "acme.com", "value": '"v=spf1 include:_spf.google.com ~all"'},
    {"type": "TXT", "host": "google._domainkey.acme.com", "value": "v=DKIM1; k=rsa; p=MIIB"},
    {"type": "TXT", "host": "_dmarc", "value": "v=DMARC1; p=none; rua=mailto:Reports@Ops.test"},
    {"type": "A", "host": "@", "value": "203.0.113.7"},
]


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("acme.io", "https://acme.io/"),
        ("  HTTP://Acme.io/About?x=1#top ", "http://acme.io/About?x=1"),
        ("https://shop.acme.io:8443/a", "https://shop.acme.io:8443/a"),
        ("", None),
        (None, None),
    ],
)
def test_a_website_is_stored_normalised(raw: str | None, stored: str | None) -> None:
    assert clean_website(raw, ["cold.com"]) == stored


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("https://cold.com", "cold.com is one of your cold-email domains"),
        ("https://mail.cold.com/x", "cold.com is one of your cold-email domains"),
        ("javascript:alert(1)", "for example https://yourcompany.com"),
        ("ftp://acme.io", "starting with https:// or http://"),
        ("https://me:pw@acme.io", "for example https://yourcompany.com"),
        ("https://localhost", "for example https://yourcompany.com"),
        ("https://10.0.0.1", "for example https://yourcompany.com"),
        ("https://acme.io:70000", "invalid port"),
        ("https://" + "a" * 2050 + ".io", "at most 2048 characters"),
    ],
)
def test_a_website_that_cannot_be_a_target_is_refused_with_the_reason(
    raw: str, reason: str
) -> None:
    with pytest.raises(WebsiteError, match=reason):
        clean_website(raw, ["cold.com"])


def test_records_as_zapmail_sets_them_are_all_ok() -> None:
    result = assess("acme.com", GOOD, dmarc_email="reports@ops.test", score=95)
    assert result.problems == []
    states = {(r["check"], r["state"]) for r in result.records}
    assert states == {("MX", "ok"), ("SPF", "ok"), ("DKIM", "ok"), ("DMARC", "ok"), (None, "other")}


@pytest.mark.parametrize(
    ("change", "codes"),
    [
        ({0: {"type": "MX", "host": "@", "value": "mx.other-host.net"}}, {"mx_changed"}),
        ({0: None}, {"mx_missing"}),
        ({1: {"type": "TXT", "host": "@", "value": "v=spf1 -all"}}, {"spf_changed"}),
        (
            {4: {"type": "TXT", "host": "@", "value": "v=spf1 include:_spf.google.com -all"}},
            {"spf_duplicate"},
        ),
        (
            {2: {"type": "TXT", "host": "google._domainkey", "value": "v=DKIM1; k=rsa; p="}},
            {"dkim_changed"},
        ),
        (
            {3: {"type": "TXT", "host": "_dmarc", "value": "v=DMARC1; p=none; rua=mailto:x@y.z"}},
            {"dmarc_changed"},
        ),
        ({3: None, 2: None}, {"dmarc_missing", "dkim_missing"}),
    ],
)
def test_each_drift_is_named_with_advice(change: dict, codes: set[str]) -> None:
    records = [change.get(i, row) for i, row in enumerate(GOOD)]
    result = assess("acme.com", [r for r in records if r], dmarc_email="reports@ops.test", score=90)
    assert result.codes == codes
    assert all(p["advice"].endswith("you do not need to do anything.") for p in result.problems)
    missing = {r["check"] for r in result.records if r["state"] == "missing"}
    assert missing == {c.split("_")[0].upper() for c in codes if c.endswith("_missing")}


def test_scores_are_critical_at_30_and_low_below_70() -> None:
    assert assess("acme.com", GOOD, dmarc_email="reports@ops.test", score=30).codes == {
        "score_critical"
    }
    assert assess("acme.com", GOOD, dmarc_email="reports@ops.test", score=69).codes == {"score_low"}
    assert assess("acme.com", GOOD, dmarc_email="reports@ops.test", score=None).codes == set()


def test_only_new_alerting_problems_alert() -> None:
    assert new_alerts({"dmarc_missing", "score_low"}, None) == ["dmarc_missing"]
    assert new_alerts({"dmarc_missing", "score_critical"}, {"dmarc_missing"}) == ["score_critical"]
    assert new_alerts({"dmarc_missing"}, {"dmarc_missing", "mx_missing"}) == []
