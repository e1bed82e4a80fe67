"""PlusVibe simulator (docs/vendors/plusvibe-heyreach.md §1): workspaces, clients, email accounts."""

from __future__ import annotations

import hmac
import re
import string
from collections.abc import Awaitable
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.responses import Response
from starlette.routing import Route

from sandbox.context import SandboxContext
from sandbox.ratelimit import Limiter
from sandbox.ratelimit import Rule
from sandbox.ratelimit import guard
from sandbox.vendors import BadBodyError
from sandbox.vendors import json_body
from sandbox.vendors.plusvibe.model import DAY_S
from sandbox.vendors.plusvibe.model import Account
from sandbox.vendors.plusvibe.model import Client
from sandbox.vendors.plusvibe.model import PlusVibeError
from sandbox.vendors.plusvibe.model import error_body
from sandbox.vendors.plusvibe.model import iso
from sandbox.vendors.plusvibe.settings import validate_settings
from sandbox.vendors.plusvibe.warmup import account_view

OBJECT_ID = re.compile(r"^[0-9a-fA-F]{24}$")


class PlusVibeSim:
    """The PlusVibe simulator; `app` is mounted at /plusvibe/api/v1."""

    def __init__(self, ctx: SandboxContext) -> None:
        self.ctx = ctx
        self.limiter = Limiter()
        ctx.register_vendor("plusvibe", error_body)
        ctx.on_reset(self.reset)
        self.reset()
        self.app = Starlette(routes=self._routes(), exception_handlers={HTTPException: _http_error})

    def reset(self) -> None:
        """Forget everything but a primary workspace."""
        self.workspaces: dict[str, dict[str, Any]] = {}
        self.clients: dict[str, Client] = {}
        self.accounts: dict[str, Account] = {}
        self.pending: list[tuple[float, list[str], list[dict[str, Any]]]] = []
        self.forced_health: dict[str, int] = {}
        # workspace id -> [status, remaining (None = until cleared)]: a vendor outage per workspace.
        self.failing: dict[str, list[Any]] = {}
        self.limiter.clear()
        primary = self._new_id()
        self.primary_id = primary
        self.workspaces[primary] = {
            "_id": primary,
            "name": "Sandbox Workspace",
            "created_at": self.now(),
        }

    def now(self) -> float:
        """Simulated epoch seconds."""
        return self.ctx.clock.timestamp()

    def _new_id(self) -> str:
        """A 24-hex ObjectId: 4-byte timestamp + 8 random bytes from the seeded RNG."""
        return f"{int(self.now()):08x}{self.ctx.rng.getrandbits(64):016x}"

    def _routes(self) -> list[Route]:
        w = self._endpoint
        return [
            Route("/authenticate", w(self.authenticate, needs_workspace=False), methods=["GET"]),
            Route("/workspaces/add/", w(self.add_workspace), methods=["POST"]),
            Route("/workspaces/add", w(self.add_workspace), methods=["POST"]),
            Route("/client", w(self.create_client), methods=["POST"]),
            Route("/client", w(self.edit_client), methods=["PUT"]),
            Route("/client", w(self.list_clients), methods=["GET"]),
            Route("/client/", w(self.list_clients), methods=["GET"]),
            Route("/account/list", w(self.list_accounts), methods=["GET"]),
            Route("/account/status", w(self.account_status), methods=["GET"]),
            Route("/account/bulk-update", w(self.bulk_update), methods=["PUT"]),
            Route("/account/bulk-update-warmup", w(self.bulk_update_warmup), methods=["PATCH"]),
            Route("/account/bulk-update-warmup", _method_not_allowed, methods=["PUT", "POST"]),
            Route("/account/warmup/enable", w(self.warmup_enable), methods=["POST"]),
            Route("/account/warmup/pause", w(self.warmup_pause), methods=["POST"]),
        ]

    def _endpoint(
        self,
        handler: Callable[[Request, dict[str, Any], str | None], Awaitable[Any]],
        *,
        needs_workspace: bool = True,
    ) -> Callable[[Request], Awaitable[Response]]:
        """Wrap a handler with auth, the ~5/s limit, workspace_id checks and error bodies."""

        async def endpoint(request: Request) -> Response:
            cfg = self.ctx.config
            limits = [Rule("second", cfg.plusvibe_per_second, 1.0)]
            refused = guard(
                request,
                self.limiter,
                header="x-api-key",
                expected_key=cfg.plusvibe_api_key,
                rules=limits if cfg.rate_limits_enabled else None,
                error=_error,
            )
            if refused is not None:
                return refused
            try:
                body = (
                    await json_body(request) if request.method in ("POST", "PUT", "PATCH") else {}
                )
                self._settle()
                workspace_id = self._workspace_id(request, body) if needs_workspace else None
                if workspace_id is not None:
                    self._maybe_fail(workspace_id)
                result = await handler(request, body, workspace_id)
            except PlusVibeError as exc:
                return JSONResponse(error_body(exc.status, exc.message), exc.status)
            except BadBodyError as exc:
                return JSONResponse(error_body(400, str(exc)), 400)
            return JSONResponse(result)

        endpoint.__name__ = handler.__name__
        return endpoint

    def _workspace_id(self, request: Request, body: dict[str, Any]) -> str:
        raw = (
            request.query_params.get("workspace_id")
            if request.method == "GET"
            else body.get("workspace_id")
        )
        if raw is None or raw == "":
            raise PlusVibeError(400, "workspace_id is required")
        if not isinstance(raw, str) or not OBJECT_ID.match(raw):
            raise PlusVibeError(400, "workspace_id must be a 24 character hex ObjectId")
        if raw.lower() not in self.workspaces:
            raise PlusVibeError(404, "Workspace not found")
        return raw.lower()

    # -- lifecycle shared with Zapmail's PIPL export -------------------------------------------

    def login_workspaces(self, email: str, password: str) -> list[str] | None:
        """Workspaces a client login was granted, or None when the login is wrong."""
        client = next((c for c in self.clients.values() if c.email == email.strip().lower()), None)
        if client is None or not hmac.compare_digest(client.password.encode(), password.encode()):
            return None
        return [g["id"] for g in client.grants if g["id"] in self.workspaces]

    def schedule_import(
        self, email: str, password: str, accounts: list[dict[str, Any]], due: float
    ) -> str | None:
        """Queue exported mailboxes for the login's workspaces; return a failure reason or None."""
        targets = self.login_workspaces(email, password)
        if targets is None:
            return "Invalid PlusVibe credentials"
        if not targets:
            return "The PlusVibe login has no workspace"
        self.pending.append((due, targets, accounts))
        return None

    def _settle(self) -> None:
        """Materialise every import whose delay has elapsed (exported boxes arrive with warmup off)."""
        now = self.now()
        due = [p for p in self.pending if p[0] <= now]
        if not due:
            return
        self.pending = [p for p in self.pending if p[0] > now]
        for arrived, targets, accounts in sorted(due, key=lambda p: p[0]):
            for workspace_id in targets:
                present = {
                    a.email for a in self.accounts.values() if a.workspace_id == workspace_id
                }
                for spec in accounts:
                    if spec["email"] in present:
                        continue
                    acc = Account(
                        id=self._new_id(), workspace_id=workspace_id, email=spec["email"],
                        first_name=spec["first_name"], last_name=spec["last_name"],
                        provider=spec.get("provider", "GOOGLE_WORKSPACE"), created_at=arrived,
                        updated_at=arrived, smtp={k: spec.get(k) for k in ("imap_host", "imap_port", "smtp_host", "smtp_port")},
                    )  # fmt: skip
                    self.accounts[acc.id] = acc
                    present.add(acc.email)

    def fail_workspace(self, workspace_id: str, status: int, times: int | None) -> None:
        """Answer ``status`` to the next ``times`` requests on a workspace (None = until cleared)."""
        if times == 0:
            self.failing.pop(workspace_id.lower(), None)
        else:
            self.failing[workspace_id.lower()] = [status, times]

    def _maybe_fail(self, workspace_id: str) -> None:
        fault = self.failing.get(workspace_id)
        if fault is None:
            return
        status, remaining = fault
        if remaining is not None:
            if remaining <= 1:
                del self.failing[workspace_id]
            else:
                fault[1] = remaining - 1
        raise PlusVibeError(status, "Internal server error" if status >= 500 else "Refused")

    def seed(self, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Create workspaces with connected accounts warming up for ``warmup_days`` (benchmarks).

        What a real provisioning leaves behind at PlusVibe, without the hundreds of calls it
        takes to get there; returns each workspace's id in the order given.
        """
        now = self.now()
        created = []
        for spec in specs:
            workspace_id = self._new_id()
            self.workspaces[workspace_id] = {
                "_id": workspace_id,
                "name": spec["name"],
                "created_at": now,
            }
            started = now - spec["warmup_days"] * DAY_S
            for email in spec["emails"]:
                first = email.split("@", 1)[0]
                acc = Account(
                    id=self._new_id(), workspace_id=workspace_id, email=email,
                    first_name=first, last_name="", provider="GOOGLE_WORKSPACE",
                    created_at=started, updated_at=started,
                )  # fmt: skip
                acc.set_warmup(True, started)
                self.accounts[acc.id] = acc
            created.append(
                {
                    "name": spec["name"],
                    "workspace_id": workspace_id,
                    "accounts": len(spec["emails"]),
                }
            )
        return created

    def force_health(self, email: str, health: int | None) -> int:
        """Pin (or with None, release) a mailbox's warmup health; return matching accounts."""
        email = email.strip().lower()
        if health is None:
            self.forced_health.pop(email, None)
        else:
            self.forced_health[email] = health
        return sum(1 for a in self.accounts.values() if a.email == email)

    def dump(self) -> dict[str, Any]:
        """Raw state for tests and debugging."""
        self._settle()
        now = self.now()
        return {
            "primaryWorkspaceId": self.primary_id,
            "workspaces": list(self.workspaces.values()),
            "clients": [{**c.public(), "password": c.password} for c in self.clients.values()],
            "accounts": [
                {
                    "workspace_id": a.workspace_id,
                    **account_view(a, now, self.forced_health.get(a.email)),
                }
                for a in self.accounts.values()
            ],
            "pendingImports": [
                {"dueAt": iso(due), "workspaces": targets, "emails": [s["email"] for s in specs]}
                for due, targets, specs in self.pending
            ],
            "forcedHealth": dict(self.forced_health),
            "failingWorkspaces": {
                k: {"status": v[0], "remaining": v[1]} for k, v in self.failing.items()
            },
        }

    # -- endpoints -----------------------------------------------------------------------------

    async def authenticate(self, _request: Request, _body: dict, _ws: str | None) -> dict[str, Any]:
        """GET /authenticate: the workspaces this key reaches."""
        return {
            "status": "success",
            "workspaces": [{"_id": w["_id"], "name": w["name"]} for w in self.workspaces.values()],
        }

    async def add_workspace(self, _request: Request, body: dict, _ws: str | None) -> dict[str, Any]:
        """POST /workspaces/add/: create a workspace (workspace_id only authenticates)."""
        name = body.get("workspace_name")
        if not isinstance(name, str) or not name.strip():
            raise PlusVibeError(400, "workspace_name is required")
        new_id = self._new_id()
        self.workspaces[new_id] = {"_id": new_id, "name": name.strip(), "created_at": self.now()}
        return {"status": "success", "_id": new_id}

    def _grants(self, raw: Any) -> list[dict[str, Any]]:
        if raw is None:
            return []
        if not isinstance(raw, list):
            raise PlusVibeError(400, "workspaces must be an array")
        grants = []
        for item in raw:
            if (
                not isinstance(item, dict)
                or not isinstance(item.get("id"), str)
                or not OBJECT_ID.match(item["id"])
            ):
                raise PlusVibeError(400, "each workspaces item needs a 24-hex id")
            if item["id"].lower() not in self.workspaces:
                raise PlusVibeError(404, f"Workspace {item['id']} not found")
            permissions = item.get("permissions", ["FULL_ACCESS"])
            hide = item.get("hide_labels", [])
            if not isinstance(permissions, list) or not isinstance(hide, list):
                raise PlusVibeError(400, "permissions and hide_labels must be arrays")
            grants.append(
                {"id": item["id"].lower(), "permissions": permissions, "hide_labels": hide}
            )
        return grants

    def _password(self) -> str:
        alphabet = string.ascii_letters + string.digits
        return "".join(self.ctx.rng.choice(alphabet) for _ in range(14))

    async def create_client(self, _request: Request, body: dict, _ws: str | None) -> dict[str, Any]:
        """POST /client: create a client login; the generated password is shown only here."""
        for key in ("client_email", "client_last_name", "client_business_name"):
            if not isinstance(body.get(key), str) or not body[key].strip():
                raise PlusVibeError(400, f"{key} is required")
        email = body["client_email"].strip().lower()
        if "@" not in email:
            raise PlusVibeError(400, "client_email must be an email address")
        if any(c.email == email for c in self.clients.values()):
            raise PlusVibeError(400, "A client with this email already exists")
        client = Client(
            id=self._new_id(), email=email, password=self._password(),
            first_name=str(body.get("client_first_name") or ""), last_name=body["client_last_name"].strip(),
            business_name=body["client_business_name"].strip(), grants=self._grants(body.get("workspaces")),
            created_at=self.now(),
        )  # fmt: skip
        self.clients[client.id] = client
        return {"client_id": client.id, "email": client.email, "password": client.password}

    async def list_clients(self, _request: Request, _body: dict, _ws: str | None) -> dict[str, Any]:
        """GET /client/: every client, without passwords."""
        return {"status": "success", "clients": [c.public() for c in self.clients.values()]}

    async def edit_client(self, _request: Request, body: dict, _ws: str | None) -> dict[str, Any]:
        """PUT /client: edit a client; client_password sets a new login password."""
        client = self.clients.get(str(body.get("client_id", "")).lower())
        if client is None:
            raise PlusVibeError(404, "Client not found")
        if "client_password" in body:
            password = body["client_password"]
            if not isinstance(password, str) or len(password) < 8:
                raise PlusVibeError(400, "client_password must be at least 8 characters")
            client.password = password
        for key, attr in (("client_first_name", "first_name"), ("client_last_name", "last_name"),
                          ("client_business_name", "business_name")):  # fmt: skip
            if isinstance(body.get(key), str):
                setattr(client, attr, body[key].strip())
        if "workspaces" in body:
            client.grants = self._grants(body["workspaces"])
        return {"status": "success", "client_id": client.id}

    def _in_workspace(self, workspace_id: str) -> list[Account]:
        rows = [a for a in self.accounts.values() if a.workspace_id == workspace_id]
        return sorted(rows, key=lambda a: (a.created_at, a.email))

    async def list_accounts(self, request: Request, _body: dict, ws: str | None) -> dict[str, Any]:
        """GET /account/list: one page of accounts (skip/limit, limit at most 100)."""
        q = request.query_params
        skip, limit = (
            _int_param(q.get("skip"), "skip", 0, 0, None),
            _int_param(q.get("limit"), "limit", 10, 1, 100),
        )
        rows = self._in_workspace(ws or "")
        if q.get("email"):
            rows = [a for a in rows if a.email == q["email"].strip().lower()]
        if q.get("tags"):
            rows = []  # the sandbox never tags accounts
        now = self.now()
        return {
            "accounts": [
                account_view(a, now, self.forced_health.get(a.email))
                for a in rows[skip : skip + limit]
            ]
        }

    def _by_email(self, ws: str, email: Any) -> Account:
        if not isinstance(email, str) or not email.strip():
            raise PlusVibeError(400, "email is required")
        acc = next((a for a in self._in_workspace(ws) if a.email == email.strip().lower()), None)
        if acc is None:
            raise PlusVibeError(404, "Email account not found")
        return acc

    async def account_status(self, request: Request, _body: dict, ws: str | None) -> dict[str, Any]:
        """GET /account/status: connection and warmup status of one address."""
        acc = self._by_email(ws or "", request.query_params.get("email"))
        return {
            "account": acc.email,
            "status": "ACTIVE",
            "warmup_status": "ACTIVE" if acc.warmup_active else "INACTIVE",
        }

    def _ids(self, body: dict, ws: str) -> list[Account]:
        ids = body.get("ids")
        if not isinstance(ids, list) or not ids:
            raise PlusVibeError(400, "ids must be a non-empty array")
        if not all(isinstance(i, str) and OBJECT_ID.match(i) for i in ids):
            raise PlusVibeError(400, "ids must be 24 character hex ObjectIds")
        return [
            self.accounts[i.lower()]
            for i in ids
            if i.lower() in self.accounts and self.accounts[i.lower()].workspace_id == ws
        ]

    async def bulk_update(self, _request: Request, body: dict, ws: str | None) -> dict[str, Any]:
        """PUT /account/bulk-update: write only the settings sent (write names, 0-1 reply rate)."""
        accounts = self._ids(body, ws or "")
        if len(accounts) != len(body["ids"]):
            raise PlusVibeError(400, "Some ids do not belong to this workspace")
        changes = validate_settings(
            {k: v for k, v in body.items() if k not in ("workspace_id", "ids")}
        )
        now = self.now()
        for acc in accounts:
            for key, value in changes.items():
                if key == "first_name":
                    acc.first_name = value
                elif key == "last_name":
                    acc.last_name = value
                else:
                    acc.settings[key] = value
            acc.updated_at = now
        return {"status": "success", "updated_count": len(accounts)}

    async def bulk_update_warmup(
        self, _request: Request, body: dict, ws: str | None
    ) -> dict[str, Any]:
        """PATCH /account/bulk-update-warmup: flip warmup on/off for ids."""
        status = body.get("warmup_status")
        if status not in ("ACTIVE", "INACTIVE"):
            raise PlusVibeError(400, "warmup_status must be ACTIVE or INACTIVE")
        accounts = self._ids(body, ws or "")
        now = self.now()
        for acc in accounts:
            acc.set_warmup(status == "ACTIVE", now)
        return {"updated_count": len(accounts), "updated_ids": [a.id for a in accounts]}

    async def warmup_enable(self, _request: Request, body: dict, ws: str | None) -> dict[str, Any]:
        """POST /account/warmup/enable {email}."""
        self._by_email(ws or "", body.get("email")).set_warmup(True, self.now())
        return {"status": "success"}

    async def warmup_pause(self, _request: Request, body: dict, ws: str | None) -> dict[str, Any]:
        """POST /account/warmup/pause {email}."""
        self._by_email(ws or "", body.get("email")).set_warmup(False, self.now())
        return {"status": "success"}


def _int_param(raw: str | None, name: str, default: int, low: int, high: int | None) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise PlusVibeError(400, f"{name} must be an integer") from None
    if value < low or (high is not None and value > high):
        raise PlusVibeError(
            400, f"{name} must be between {low} and {high}" if high else f"{name} must be >= {low}"
        )
    return value


async def _method_not_allowed(request: Request) -> Response:
    """PUT on a PATCH-only path answers 405 (the documented method is PATCH)."""
    return JSONResponse(error_body(405, f"Method {request.method} not allowed"), 405)


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse(
        error_body(exc.status_code, "Not found" if exc.status_code == 404 else exc.detail),
        exc.status_code,
    )


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message), status, headers)
