"""The domain step, shared by the wizard and the upgrade: brand search, manual check, pick N.

Suggestions are at most 20 names, so a brand search costs one availability call at most (and
nothing when every name is cached); the service packs names from concurrent students into shared
calls, so a manual check usually rides along with someone else's. Choices live in the draft;
nothing here buys anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import current_app
from flask import flash
from sqlalchemy.orm import Session

from core.domains import DomainNameError
from core.domains import suggest_domains
from core.domains import validate_domain
from portal.availability import AVAILABLE
from portal.availability import Availability
from portal.availability import service_for

MAX_CANDIDATES = 40


@dataclass
class Picker:
    """The domain step for one draft."""

    db: Session
    draft: dict[str, Any]
    required: int
    user_id: int
    owned: frozenset[str] = frozenset()

    def _service(self) -> Any:
        return service_for(self.db, current_app.config, current_app.extensions["settings"])

    def results(self) -> dict[str, Availability]:
        """Cached answers for every shown and selected name (never calls the vendor)."""
        names = list(dict.fromkeys([*self.draft["domains"], *self.draft["candidates"]]))
        results = self._service().lookup(names, user_id=self.user_id)
        for name in names:
            if name in self.owned:
                results[name] = Availability(name, "owned", "Already one of your domains.")
        return results

    def handle(self, form: Any) -> str | None:
        """Apply one posted action; return "continue" or "back" when the student moves on."""
        action = form.get("action", "")
        if action == "search":
            self._search(form.get("brand", ""))
        elif action == "check":
            self._check(form.get("name", ""))
        elif action == "add":
            self._add(form.get("name", ""))
        elif action == "remove":
            name = form.get("name", "")
            self.draft["domains"] = [d for d in self.draft["domains"] if d != name]
        elif action == "continue":
            return "continue" if self.ready(report=True) else None
        elif action == "back":
            return "back"
        else:
            flash("That action is not available here.", "error")
        return None

    def ready(self, *, report: bool = False) -> bool:
        """Whether exactly the required number of still-available names is selected."""
        chosen = self.draft["domains"]
        if len(chosen) != self.required:
            if report:
                missing = self.required - len(chosen)
                flash(
                    f"Pick exactly {self.required} domains: "
                    + (f"{missing} more to go." if missing > 0 else f"remove {-missing}."),
                    "error",
                )
            return False
        results = self.results()
        bad = [name for name in chosen if not results[name].selectable]
        if bad:
            if report:
                flash(
                    "Some of your domains are no longer available: "
                    + ", ".join(f"{n} ({results[n].reason})" for n in bad),
                    "error",
                )
            return False
        return True

    def _report(self, outcome: Any) -> None:
        if outcome.message:
            flash(outcome.message, "warning")

    def _search(self, brand: str) -> None:
        try:
            names = suggest_domains(brand)
        except DomainNameError as exc:
            flash(str(exc), "error")
            return
        self.draft["brand"] = brand.strip()[:100]
        self.draft["candidates"] = names
        self._report(self._service().check(names, user_id=self.user_id))

    def _check(self, raw: str) -> None:
        try:
            name = validate_domain(raw)
        except DomainNameError as exc:
            flash(str(exc), "error")
            return
        outcome = self._service().check([name], user_id=self.user_id)
        self._report(outcome)
        others = [n for n in self.draft["candidates"] if n != name]
        self.draft["candidates"] = [name, *others][:MAX_CANDIDATES]
        result = outcome.results.get(name)
        if result is not None and result.status == AVAILABLE and name not in self.owned:
            if name not in self.draft["domains"] and len(self.draft["domains"]) < self.required:
                self.draft["domains"] = [*self.draft["domains"], name]
                flash(f"{name} is available and was added to your domains.", "success")
        elif result is not None:
            flash(f"{name}: {result.reason}", "warning")

    def _add(self, raw: str) -> None:
        try:
            name = validate_domain(raw)
        except DomainNameError as exc:
            flash(str(exc), "error")
            return
        if name in self.draft["domains"]:
            return
        if len(self.draft["domains"]) >= self.required:
            flash(f"You already picked {self.required} domains; remove one first.", "error")
            return
        result = self._service().lookup([name], user_id=self.user_id)[name]
        if name in self.owned:
            flash(f"{name} is already one of your domains.", "error")
        elif not result.selectable:
            flash(f"{name} cannot be added: {result.reason}", "error")
        else:
            self.draft["domains"] = [*self.draft["domains"], name]
