"""The simulator's in-memory state: objects by id, ids, events, rendering, expansion, lists."""

from __future__ import annotations

import copy
import secrets
import string
from collections.abc import Callable
from collections.abc import Iterable
from typing import Any

from sandbox.vendors.stripe.errors import invalid
from sandbox.vendors.stripe.errors import no_such

API_VERSION = "2026-10-28.endive"
_ALPHABET = string.ascii_letters + string.digits


def _diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Top-level previous values of fields that changed, the way Stripe reports them."""
    return {k: before.get(k) for k in after if before.get(k) != after.get(k)}


class State:
    """Every Stripe object the simulator holds, plus the event outbox."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self.on_flush: Callable[[list[dict[str, Any]]], None] = lambda _batch: None
        # called as hook(state, invoice, paid) after every invoice payment success or failure
        self.invoice_hooks: list[Callable[[State, dict[str, Any], bool], None]] = []
        self.reset()

    def reset(self) -> None:
        """Forget every object, event, idempotency key and armed failure."""
        self.objects: dict[str, dict[str, Any]] = {}
        self.outbox: list[dict[str, Any]] = []
        self.seq = 0
        self.request: dict[str, Any] | None = None
        self.idempotency: dict[str, dict[str, Any]] = {}
        # customer id (or "*" for anyone) -> number of payment attempts to decline
        self.armed_failures: dict[str, int] = {}
        self.async_payment_delay_s: float | None = 60.0
        self.async_payment_outcome = "succeeded"

    def now(self) -> int:
        """Simulated epoch seconds, as Stripe's integer timestamps."""
        return int(self.ctx.clock.timestamp())

    def new_id(self, prefix: str) -> str:
        """Return a fresh id with a Stripe prefix (random, so ids never repeat across resets)."""
        return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(24))

    def add(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Store a new object (which has `id`) and return it."""
        self.seq += 1
        obj["_seq"] = self.seq
        self.objects[obj["id"]] = obj
        return obj

    def base(self, prefix: str, object_type: str, **fields: Any) -> dict[str, Any]:
        """Return the fields every Stripe object shares."""
        return {
            "id": self.new_id(prefix),
            "object": object_type,
            "created": self.now(),
            "livemode": False,
            **fields,
        }

    def find(self, object_id: Any, object_type: str) -> dict[str, Any] | None:
        """Return the stored object of that type, or None."""
        obj = self.objects.get(object_id) if isinstance(object_id, str) else None
        return obj if obj is not None and obj["object"] == object_type else None

    def get(
        self, object_id: Any, object_type: str, *, param: str = "id", status: int = 400
    ) -> dict[str, Any]:
        """Return the stored object or raise Stripe's resource_missing error."""
        obj = self.find(object_id, object_type)
        if obj is None or obj.get("deleted"):
            kind = object_type.split(".")[-1].replace("_", " ")
            raise no_such(kind, str(object_id), param, status)
        return obj

    def product_name(self, product_id: str) -> str:
        """Name of a product (its id when it is unknown)."""
        product = self.objects.get(product_id)
        return product["name"] if product else product_id

    def all(self, object_type: str, pred: Callable[[dict[str, Any]], bool] | None = None):
        """Return stored objects of a type, newest first."""
        found = [
            o
            for o in self.objects.values()
            if o["object"] == object_type and not o.get("deleted") and (pred is None or pred(o))
        ]
        return sorted(found, key=lambda o: o["_seq"], reverse=True)

    def render(self, obj: Any, expand: Iterable[str] = ()) -> Any:
        """Return the public JSON of an object (private `_` keys dropped), expanding paths."""
        out = _public(obj)
        for path in expand:
            if path.count(".") > 3:
                raise invalid("You cannot expand more than 4 levels of a property.", "expand")
            out = self._expand(out, path.split("."), path)
        return out

    def _expand(self, node: Any, parts: list[str], path: str) -> Any:
        if not parts or not isinstance(node, dict):
            return node
        head, rest = parts[0], parts[1:]
        if head == "data" and node.get("object") == "list":
            node["data"] = [self._expand(item, rest, path) for item in node["data"]]
            return node
        if node.get("object") == "checkout.session" and head == "line_items":
            stored = self.objects.get(node["id"], {})
            node["line_items"] = self._expand(_public(self.line_item_list(stored)), rest, path)
            return node
        if head not in node:
            raise invalid(
                f"This property cannot be expanded ({path}).", "expand", "parameter_invalid"
            )
        value = node[head]
        if isinstance(value, str) and value in self.objects:
            value = _public(self.objects[value])
        node[head] = self._expand(value, rest, path)
        return node

    def line_item_list(self, session: dict[str, Any]) -> dict[str, Any]:
        """Return a Checkout Session's line items as a Stripe list."""
        return self.list_object(
            session.get("_line_items", []), f"/v1/checkout/sessions/{session.get('id')}/line_items"
        )

    def list_object(self, items: list[Any], url: str, has_more: bool = False) -> dict[str, Any]:
        """Wrap items in Stripe's list envelope."""
        return {"object": "list", "data": items, "has_more": has_more, "url": url}

    def paginate(self, items: list[dict[str, Any]], params: dict[str, Any], url: str):
        """Apply limit / starting_after / ending_before to a newest-first list."""
        raw_limit = params.get("limit") or "10"
        try:
            limit = int(raw_limit)
        except ValueError:
            raise invalid(f"Invalid integer: {raw_limit}", "limit") from None
        if not 1 <= limit <= 100:
            raise invalid("This value must be between 1 and 100.", "limit")
        ids = [o["id"] for o in items]
        if params.get("starting_after"):
            cursor = params["starting_after"]
            if cursor not in ids:
                raise no_such("object", cursor, "starting_after")
            items = items[ids.index(cursor) + 1 :]
            page = items[:limit]
        elif params.get("ending_before"):
            cursor = params["ending_before"]
            if cursor not in ids:
                raise no_such("object", cursor, "ending_before")
            items = items[: ids.index(cursor)]
            page = items[-limit:]
        else:
            page = items[:limit]
        return self.list_object(page, url, has_more=len(items) > len(page))

    def snapshot(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Return a deep copy of an object's public JSON, for previous_attributes diffs."""
        return _public(obj)

    def emit(
        self,
        type_: str,
        obj: dict[str, Any],
        before: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Record an event whose data.object is a snapshot of `obj` now."""
        data: dict[str, Any] = {"object": self.render(obj)}
        if before is not None:
            data["previous_attributes"] = _diff(before, data["object"])
        request = self.request or {"id": None, "idempotency_key": None}
        event = self.add(
            self.base(
                "evt_",
                "event",
                api_version=API_VERSION,
                type=type_,
                data=data,
                pending_webhooks=0,
                request=dict(request),
                context=None,
            )
        )
        self.outbox.append(event)
        return event

    def flush(self) -> None:
        """Hand the events emitted by one action to the webhook dispatcher, as one batch."""
        batch, self.outbox = self.outbox, []
        if batch:
            self.on_flush(batch)

    def take_failure(self, customer: str | None) -> bool:
        """Consume one armed payment failure for this customer (or any customer)."""
        for key in (customer or "", "*"):
            if self.armed_failures.get(key, 0) > 0:
                self.armed_failures[key] -= 1
                return True
        return False


def retriever(object_type: str) -> Callable[[State, dict[str, Any], str], dict[str, Any]]:
    """Return a GET /v1/<things>/{id} handler for a stored object type."""

    def handler(state: State, params: dict[str, Any], object_id: str) -> dict[str, Any]:
        del params
        return state.get(object_id, object_type, status=404)

    handler.__doc__ = f"GET a {object_type} by id."
    return handler


def _public(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _public(v) for k, v in obj.items() if not k.startswith("_")}
    if isinstance(obj, list):
        return [_public(v) for v in obj]
    return copy.copy(obj)
