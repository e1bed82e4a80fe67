"""Events API (list, retrieve) and webhook endpoint registrations (which receive signed events)."""

from __future__ import annotations

import fnmatch
from typing import Any

from sandbox.vendors.stripe import params as allowed
from sandbox.vendors.stripe.errors import invalid
from sandbox.vendors.stripe.errors import missing
from sandbox.vendors.stripe.forms import as_bool
from sandbox.vendors.stripe.forms import as_list
from sandbox.vendors.stripe.forms import as_str
from sandbox.vendors.stripe.forms import merge_metadata
from sandbox.vendors.stripe.store import API_VERSION
from sandbox.vendors.stripe.store import State
from sandbox.vendors.stripe.store import retriever


def list_events(state: State, params: dict[str, Any]) -> dict[str, Any]:
    """GET /v1/events (type with `*` wildcards, types[], delivery_success)."""
    if params.get("type") and params.get("types"):
        raise invalid("You may only specify one of these parameters: type, types.", "types")
    patterns = as_list(params, "types") or ([params["type"]] if params.get("type") else [])
    delivered = as_bool(params, "delivery_success")

    def keep(event: dict[str, Any]) -> bool:
        if patterns and not any(fnmatch.fnmatchcase(event["type"], p) for p in patterns):
            return False
        return delivered is None or (event["pending_webhooks"] == 0) == delivered

    return state.paginate(state.all("event", keep), params, "/v1/events")


def _url(params: dict[str, Any]) -> str:
    url = as_str(params, "url", required=True) or ""
    if not url.startswith(("http://", "https://")):
        raise invalid("Invalid URL: must be an http or https URL.", "url")
    return url


def _enabled_events(params: dict[str, Any]) -> list[str]:
    events = [e for e in as_list(params, "enabled_events") if e]
    if not events:
        raise missing("enabled_events")
    return events


def create_endpoint(state: State, params: dict[str, Any]) -> dict[str, Any]:
    """POST /v1/webhook_endpoints: the response (only) carries the signing secret."""
    endpoint = state.add(
        state.base(
            "we_",
            "webhook_endpoint",
            api_version=as_str(params, "api_version") or API_VERSION,
            application=None,
            description=as_str(params, "description"),
            enabled_events=_enabled_events(params),
            metadata=merge_metadata({}, params.get("metadata")),
            status="enabled",
            url=_url(params),
            _secret="whsec_" + state.new_id("")[:32],
        )
    )
    return {**state.render(endpoint), "secret": endpoint["_secret"]}


def update_endpoint(state: State, params: dict[str, Any], endpoint_id: str) -> dict[str, Any]:
    """POST /v1/webhook_endpoints/{id}: url, enabled_events, disabled, description, metadata."""
    endpoint = state.get(endpoint_id, "webhook_endpoint", status=404)
    if "url" in params:
        endpoint["url"] = _url(params)
    if "enabled_events" in params:
        endpoint["enabled_events"] = _enabled_events(params)
    if "disabled" in params:
        endpoint["status"] = "disabled" if as_bool(params, "disabled") else "enabled"
    if "description" in params:
        endpoint["description"] = as_str(params, "description")
    endpoint["metadata"] = merge_metadata(endpoint["metadata"], params.get("metadata"))
    return endpoint


def delete_endpoint(state: State, params: dict[str, Any], endpoint_id: str) -> dict[str, Any]:
    """DELETE /v1/webhook_endpoints/{id}."""
    del params
    endpoint = state.get(endpoint_id, "webhook_endpoint", status=404)
    endpoint["deleted"] = True
    return {"id": endpoint_id, "object": "webhook_endpoint", "deleted": True}


def list_endpoints(state: State, params: dict[str, Any]) -> dict[str, Any]:
    """GET /v1/webhook_endpoints."""
    return state.paginate(state.all("webhook_endpoint"), params, "/v1/webhook_endpoints")


ROUTES = [
    ("GET", "/v1/events", allowed.EVENT_LIST, list_events),
    ("GET", "/v1/events/{id}", allowed.RETRIEVE, retriever("event")),
    ("POST", "/v1/webhook_endpoints", allowed.WEBHOOK_ENDPOINT_CREATE, create_endpoint),
    ("GET", "/v1/webhook_endpoints", allowed.WEBHOOK_ENDPOINT_LIST, list_endpoints),
    ("GET", "/v1/webhook_endpoints/{id}", allowed.RETRIEVE, retriever("webhook_endpoint")),
    (
        "POST",
        "/v1/webhook_endpoints/{id}",
        allowed.RETRIEVE | {"url", "enabled_events", "disabled", "description", "metadata"},
        update_endpoint,
    ),
    ("DELETE", "/v1/webhook_endpoints/{id}", frozenset(), delete_endpoint),
]
