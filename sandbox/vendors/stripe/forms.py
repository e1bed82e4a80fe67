"""Decode Stripe's nested form encoding (`a[b][0][c]=v`, `expand[]=x`) and coerce values."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

from sandbox.vendors.stripe.errors import invalid
from sandbox.vendors.stripe.errors import missing

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_APPEND = object()


def parse_qs(raw: str) -> dict[str, Any]:
    """Decode a query string or form body into nested dicts and lists."""
    return decode_pairs(parse_qsl(raw, keep_blank_values=True))


def decode_pairs(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Build nested params from (key, value) pairs; numeric keys and `[]` become lists."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        match = _KEY.match(key)
        if not match:
            raise invalid(f"Invalid parameter name: {key}", key)
        parts: list[Any] = [match.group(1)]
        parts += [p or _APPEND for p in re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        _insert(root, parts, value, key)
    return _listify(root)


def _insert(node: dict[str, Any], parts: list[Any], value: str, key: str) -> None:
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part is _APPEND:
            # `a[]=x` appends: give each value the next free numeric slot.
            part = str(sum(1 for k in node if k.isdigit()))
        if last:
            if isinstance(node.get(part), dict):
                raise invalid(f"Invalid parameter: {key} is both a value and a hash", key)
            node[part] = value
            return
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            # `metadata=` (clear) followed by `metadata[k]=v`: the nested form wins.
            child = node[part] = {}
        node = child


def _listify(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    if value and all(k.isdigit() for k in value):
        return [_listify(value[k]) for k in sorted(value, key=int)]
    return {k: _listify(v) for k, v in value.items()}


def as_int(params: dict[str, Any], name: str, *, required: bool = False) -> int | None:
    """Return params[name] as an int (None when absent), or raise a Stripe 400."""
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            raise missing(name)
        return None
    try:
        return int(str(raw))
    except ValueError:
        raise invalid(f"Invalid integer: {raw}", name) from None


def as_bool(params: dict[str, Any], name: str, default: bool | None = None) -> bool | None:
    """Return params[name] as a bool, or raise a Stripe 400."""
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if raw in ("true", "false"):
        return raw == "true"
    raise invalid(f"Invalid boolean: {raw}", name)


def as_str(params: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    """Return params[name] as a string (None when absent or empty), or raise a Stripe 400."""
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            raise missing(name)
        return None
    if not isinstance(raw, str):
        raise invalid(f"Invalid string: {name} must be a string", name)
    return raw


def as_dict(params: dict[str, Any], name: str) -> dict[str, Any]:
    """Return params[name] as a hash ({} when absent or cleared), or raise a Stripe 400."""
    raw = params.get(name)
    if raw is None or raw == "":
        return {}
    if not isinstance(raw, dict):
        raise invalid("Invalid object", name)
    return raw


def as_list(params: dict[str, Any], name: str) -> list[Any]:
    """Return params[name] as an array ([] when absent or cleared), or raise a Stripe 400."""
    raw = params.get(name)
    if raw is None or raw == "":
        return []
    if isinstance(raw, dict):
        raise invalid("Invalid array", name)
    if not isinstance(raw, list):
        raise invalid("Invalid array", name)
    return raw


def check_known(params: dict[str, Any], allowed: frozenset[str]) -> None:
    """Reject top-level parameters the endpoint does not know, as Stripe does."""
    for key in params:
        if key not in allowed:
            raise invalid(f"Received unknown parameter: {key}", key)


def merge_metadata(current: dict[str, str], update: Any, param: str = "metadata") -> dict[str, str]:
    """Apply a metadata update: `metadata=` clears, `metadata[k]=` deletes one key."""
    if update is None:
        return current
    if update == "":
        return {}
    if not isinstance(update, dict):
        raise invalid("Invalid object", param)
    merged = dict(current)
    for key, value in update.items():
        if not isinstance(value, str):
            raise invalid(f"Invalid metadata value for {key}", f"{param}[{key}]")
        if value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    if len(merged) > 50:
        raise invalid("Metadata may have at most 50 keys", param)
    return merged
