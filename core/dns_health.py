"""What each cold domain's DNS must hold, and plain words for what is wrong with it.

Zapmail sets up Google Workspace mail on the domains it sells: an MX to Google, one SPF record
that includes Google's, a DKIM key at ``google._domainkey``, and (our DMARC step) a DMARC record
whose ``rua`` is the address the provision's domains report to. :func:`assess` compares the
records read from Zapmail with that, marks each record ok, missing or changed, and lists the
problems with advice a student can act on. A health score of 30 or less is critical
(zapmail.md §7.5). Alerts go out for new problems only (:func:`new_alerts`).
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from typing import Any

CRITICAL_SCORE = 30
LOW_SCORE = 70
GOOGLE_MX_SUFFIXES = ("google.com", "googlemail.com")
SPF_INCLUDE = "include:_spf.google.com"
DKIM_HOST = "google._domainkey"
DMARC_HOST = "_dmarc"
FIXING = "Our team has been told and restores it; you do not need to do anything."

# code -> (the record it concerns, what it means for the student).
PROBLEMS: dict[str, tuple[str, str]] = {
    "mx_missing": ("MX", "The domain has no mail server record, so replies to it bounce."),
    "mx_changed": ("MX", "The mail server record no longer points at Google, so replies get lost."),
    "spf_missing": ("SPF", "No SPF record: inboxes cannot check that Google may send for you."),
    "spf_changed": ("SPF", "The SPF record no longer allows Google to send for this domain."),
    "spf_duplicate": ("SPF", "The domain has two SPF records; inboxes then ignore both."),
    "dkim_missing": ("DKIM", "No DKIM key: your emails arrive unsigned and look forged."),
    "dkim_changed": ("DKIM", "The DKIM key was edited; signatures no longer verify."),
    "dmarc_missing": ("DMARC", "No DMARC record: inboxes treat the domain as less trustworthy."),
    "dmarc_changed": ("DMARC", "The DMARC record no longer sends reports to us."),
    "score_critical": ("Score", "Zapmail rates this domain critical: stop sending from it."),
    "score_low": ("Score", "Zapmail rates this domain below healthy: keep volumes low."),
}
# Worth an email to the student and the admins when they appear (a low score is shown only).
ALERTING = frozenset(PROBLEMS) - {"score_low"}


def relative_host(host: str | None, domain: str) -> str:
    """The record's host relative to the domain: ``@`` for the apex, else the label(s)."""
    name = (host or "").strip().lower().rstrip(".")
    domain = domain.strip().lower().rstrip(".")
    if name in ("", "@", domain):
        return "@"
    return name.removesuffix(f".{domain}")


@dataclass
class Assessment:
    """One domain's records with their state, and its problems (code, record, state, advice)."""

    records: list[dict[str, Any]] = field(default_factory=list)
    problems: list[dict[str, Any]] = field(default_factory=list)

    @property
    def codes(self) -> set[str]:
        """The problem codes found."""
        return {p["code"] for p in self.problems}


def _problem(code: str) -> dict[str, Any]:
    record, meaning = PROBLEMS[code]
    state = "missing" if code.endswith("_missing") else "changed"
    advice = meaning if record == "Score" else f"{meaning} {FIXING}"
    return {"code": code, "record": record, "state": state, "advice": advice}


def _mark(row: dict[str, Any], check: str, ok: bool) -> str | None:
    row["check"], row["state"] = check, "ok" if ok else "changed"
    return None if ok else f"{check.lower()}_changed"


def assess(
    domain: str,
    records: Iterable[Mapping[str, Any]],
    *,
    dmarc_email: str | None,
    score: int | None,
) -> Assessment:
    """Compare a domain's records and score with what the product set up."""
    result = Assessment()
    found: dict[str, list[dict[str, Any]]] = {"MX": [], "SPF": [], "DKIM": [], "DMARC": []}
    for raw in records:
        row = {
            "type": str(raw.get("type") or "").upper(),
            "host": relative_host(raw.get("host"), domain),
            "value": str(raw.get("value") or ""),
            "check": None,
            "state": "other",
        }
        value = row["value"].strip().strip('"')
        lowered = value.lower()
        if row["type"] == "MX" and row["host"] == "@":
            found["MX"].append(row)
        elif row["type"] == "TXT" and row["host"] == "@" and lowered.startswith("v=spf1"):
            found["SPF"].append(row)
        elif row["type"] == "TXT" and row["host"] == DKIM_HOST:
            found["DKIM"].append(row)
        elif row["type"] == "TXT" and row["host"] == DMARC_HOST:
            found["DMARC"].append(row)
        result.records.append(row)
    codes: list[str | None] = []
    if not found["MX"]:
        codes.append("mx_missing")
    for row in found["MX"]:
        host = row["value"].strip().lower().rstrip(".")
        codes.append(_mark(row, "MX", host.endswith(GOOGLE_MX_SUFFIXES)))
    if not found["SPF"]:
        codes.append("spf_missing")
    elif len(found["SPF"]) > 1:
        codes.append("spf_duplicate")
    for row in found["SPF"]:
        codes.append(_mark(row, "SPF", SPF_INCLUDE in row["value"].lower()))
    if not found["DKIM"]:
        codes.append("dkim_missing")
    for row in found["DKIM"]:
        value = row["value"].replace(" ", "").lower()
        key = value.split("p=", 1)[1].split(";")[0] if "p=" in value else ""
        codes.append(_mark(row, "DKIM", value.startswith("v=dkim1") and bool(key)))
    if not found["DMARC"]:
        codes.append("dmarc_missing")
    for row in found["DMARC"]:
        value = row["value"].lower()
        wanted = f"mailto:{dmarc_email.lower()}" if dmarc_email else ""
        codes.append(_mark(row, "DMARC", value.startswith("v=dmarc1") and wanted in value))
    for check in ("MX", "SPF", "DKIM", "DMARC"):
        if not found[check]:
            result.records.append(
                {"type": "MX" if check == "MX" else "TXT", "host": _host_of(check),
                 "value": None, "check": check, "state": "missing"}
            )  # fmt: skip
    if score is not None and score <= CRITICAL_SCORE:
        codes.append("score_critical")
    elif score is not None and score < LOW_SCORE:
        codes.append("score_low")
    result.problems = [_problem(code) for code in dict.fromkeys(c for c in codes if c)]
    return result


def _host_of(check: str) -> str:
    return {"DKIM": DKIM_HOST, "DMARC": DMARC_HOST}.get(check, "@")


def new_alerts(current: Iterable[str], previous: Iterable[str] | None) -> list[str]:
    """Alerting problem codes that the previous check did not have (all of them on a first check)."""
    before = set(previous or ())
    return sorted(code for code in set(current) & ALERTING if code not in before)
