"""Products, Prices and Customers: create, retrieve, update, list (with their events)."""

from __future__ import annotations

import re
from typing import Any

from sandbox.vendors.stripe import params as allowed
from sandbox.vendors.stripe.errors import invalid
from sandbox.vendors.stripe.errors import missing
from sandbox.vendors.stripe.forms import as_bool
from sandbox.vendors.stripe.forms import as_dict
from sandbox.vendors.stripe.forms import as_int
from sandbox.vendors.stripe.forms import as_str
from sandbox.vendors.stripe.forms import merge_metadata
from sandbox.vendors.stripe.store import State
from sandbox.vendors.stripe.store import retriever

INTERVALS = ("day", "week", "month", "year")


def _currency(value: Any, param: str) -> str:
    if not value:
        raise missing(param)
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z]{3}", value):
        raise invalid(f"Invalid currency: {value}", param)
    return value.lower()


def _set_optional(obj: dict[str, Any], params: dict[str, Any], names: tuple[str, ...]) -> None:
    for name in names:
        if name in params:
            obj[name] = as_str(params, name)


def create_product(state: State, params: dict[str, Any]) -> dict[str, Any]:
    """POST /v1/products."""
    name = as_str(params, "name", required=True)
    now = state.now()
    product = state.base(
        "prod_",
        "product",
        active=as_bool(params, "active", True),
        default_price=None,
        description=as_str(params, "description"),
        images=[],
        marketing_features=[],
        metadata=merge_metadata({}, params.get("metadata")),
        name=name,
        package_dimensions=None,
        shippable=None,
        statement_descriptor=as_str(params, "statement_descriptor"),
        tax_code=None,
        type="service",
        unit_label=as_str(params, "unit_label"),
        updated=now,
        url=as_str(params, "url"),
    )
    if params.get("id"):
        if params["id"] in state.objects:
            raise invalid(
                f"Product already exists: {params['id']}", "id", "resource_already_exists"
            )
        product["id"] = params["id"]
    state.add(product)
    state.emit("product.created", product)
    price_data = as_dict(params, "default_price_data")
    if price_data:
        price = new_price(state, {**price_data, "product": product["id"]}, "default_price_data")
        before = state.snapshot(product)
        product["default_price"] = price["id"]
        state.emit("product.updated", product, before)
    return product


def update_product(state: State, params: dict[str, Any], product_id: str) -> dict[str, Any]:
    """POST /v1/products/{id}."""
    product = state.get(product_id, "product", status=404)
    before = state.snapshot(product)
    if "name" in params:
        product["name"] = as_str(params, "name", required=True)
    if "active" in params:
        product["active"] = as_bool(params, "active")
    if "default_price" in params:
        price_id = as_str(params, "default_price")
        if price_id is not None:
            price = state.get(price_id, "price", param="default_price")
            if price["product"] != product["id"]:
                raise invalid("The default price must belong to this product.", "default_price")
        product["default_price"] = price_id
    _set_optional(product, params, ("description", "statement_descriptor", "unit_label", "url"))
    product["metadata"] = merge_metadata(product["metadata"], params.get("metadata"))
    product["updated"] = state.now()
    state.emit("product.updated", product, before)
    return product


def list_products(state: State, params: dict[str, Any]) -> dict[str, Any]:
    """GET /v1/products."""
    active = as_bool(params, "active")
    items = state.all("product", lambda p: active is None or p["active"] == active)
    return state.paginate(items, params, "/v1/products")


def new_price(state: State, params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Validate price params (errors name them under `prefix`) and store a Price."""

    def name(field: str) -> str:
        head, bracket, rest = field.partition("[")
        return f"{prefix}[{head}]{bracket}{rest}" if prefix else field

    currency = _currency(params.get("currency"), name("currency"))
    product_id = params.get("product")
    product_data = as_dict(params, "product_data")
    if product_id and product_data:
        raise invalid(
            "You may only specify one of these parameters: product, product_data.", name("product")
        )
    if product_data:
        product_id = create_product(state, product_data)["id"]
    elif not product_id:
        raise missing(name("product"))
    else:
        state.get(product_id, "product", param=name("product"))
    unit_amount = as_int(params, "unit_amount")
    if unit_amount is None and params.get("unit_amount_decimal"):
        try:
            unit_amount = round(float(params["unit_amount_decimal"]))
        except ValueError:
            raise invalid("Invalid decimal", name("unit_amount_decimal")) from None
    if unit_amount is None:
        raise missing(name("unit_amount"))
    if unit_amount < 0:
        raise invalid("This value must be greater than or equal to 0.", name("unit_amount"))
    recurring = None
    rec = as_dict(params, "recurring")
    if rec:
        interval = rec.get("interval")
        if not interval:
            raise missing(name("recurring[interval]"))
        if interval not in INTERVALS:
            raise invalid(
                f"Invalid recurring[interval]: must be one of {', '.join(INTERVALS)}",
                name("recurring[interval]"),
            )
        recurring = {
            "interval": interval,
            "interval_count": as_int(rec, "interval_count") or 1,
            "meter": None,
            "trial_period_days": None,
            "usage_type": rec.get("usage_type") or "licensed",
        }
    price = state.base(
        "price_",
        "price",
        active=as_bool(params, "active", True),
        billing_scheme="per_unit",
        currency=currency,
        custom_unit_amount=None,
        lookup_key=params.get("lookup_key") or None,
        metadata=merge_metadata({}, params.get("metadata")),
        nickname=params.get("nickname") or None,
        product=product_id,
        recurring=recurring,
        tax_behavior=params.get("tax_behavior") or "unspecified",
        tiers_mode=None,
        transform_quantity=None,
        type="recurring" if recurring else "one_time",
        unit_amount=unit_amount,
        unit_amount_decimal=str(unit_amount),
    )
    state.add(price)
    state.emit("price.created", price)
    return price


def create_price(state: State, params: dict[str, Any]) -> dict[str, Any]:
    """POST /v1/prices."""
    return new_price(state, params)


def update_price(state: State, params: dict[str, Any], price_id: str) -> dict[str, Any]:
    """POST /v1/prices/{id}: only active, metadata, nickname (and lookup_key) may change."""
    price = state.get(price_id, "price", status=404)
    before = state.snapshot(price)
    if "active" in params:
        price["active"] = as_bool(params, "active")
    if "nickname" in params:
        price["nickname"] = as_str(params, "nickname")
    if "lookup_key" in params:
        price["lookup_key"] = as_str(params, "lookup_key")
    price["metadata"] = merge_metadata(price["metadata"], params.get("metadata"))
    state.emit("price.updated", price, before)
    return price


def list_prices(state: State, params: dict[str, Any]) -> dict[str, Any]:
    """GET /v1/prices (filters: product, active, type, currency)."""
    active = as_bool(params, "active")

    def keep(p: dict[str, Any]) -> bool:
        return (
            (active is None or p["active"] == active)
            and (not params.get("product") or p["product"] == params["product"])
            and (not params.get("type") or p["type"] == params["type"])
            and (not params.get("currency") or p["currency"] == params["currency"].lower())
        )

    return state.paginate(state.all("price", keep), params, "/v1/prices")


def new_customer(state: State, email: str | None, name: str | None = None, **fields: Any):
    """Create and store a Customer, emitting customer.created."""
    customer = state.base(
        "cus_",
        "customer",
        address=None,
        balance=0,
        currency=None,
        default_source=None,
        delinquent=False,
        description=None,
        discount=None,
        email=email,
        invoice_prefix=state.new_id("")[:8].upper(),
        invoice_settings={
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        metadata={},
        name=name,
        next_invoice_sequence=1,
        phone=None,
        preferred_locales=[],
        shipping=None,
        tax_exempt="none",
        test_clock=None,
    )
    customer.update(fields)
    state.add(customer)
    state.emit("customer.created", customer)
    return customer


def create_customer(state: State, params: dict[str, Any]) -> dict[str, Any]:
    """POST /v1/customers."""
    return new_customer(
        state,
        as_str(params, "email"),
        as_str(params, "name"),
        description=as_str(params, "description"),
        phone=as_str(params, "phone"),
        metadata=merge_metadata({}, params.get("metadata")),
        balance=as_int(params, "balance") or 0,
    )


def update_customer(state: State, params: dict[str, Any], customer_id: str) -> dict[str, Any]:
    """POST /v1/customers/{id}."""
    customer = state.get(customer_id, "customer", status=404)
    before = state.snapshot(customer)
    _set_optional(customer, params, ("email", "name", "description", "phone"))
    customer["metadata"] = merge_metadata(customer["metadata"], params.get("metadata"))
    if "balance" in params:
        customer["balance"] = as_int(params, "balance") or 0
    state.emit("customer.updated", customer, before)
    return customer


def delete_customer(state: State, params: dict[str, Any], customer_id: str) -> dict[str, Any]:
    """DELETE /v1/customers/{id}."""
    del params
    customer = state.get(customer_id, "customer", status=404)
    state.emit("customer.deleted", customer)
    customer["deleted"] = True
    return {"id": customer_id, "object": "customer", "deleted": True}


def list_customers(state: State, params: dict[str, Any]) -> dict[str, Any]:
    """GET /v1/customers (filter: email, case-sensitive as in Stripe)."""
    email = params.get("email")
    items = state.all("customer", lambda c: not email or c["email"] == email)
    return state.paginate(items, params, "/v1/customers")


ROUTES = [
    ("POST", "/v1/products", allowed.PRODUCT_CREATE, create_product),
    ("GET", "/v1/products", allowed.PRODUCT_LIST, list_products),
    ("GET", "/v1/products/{id}", allowed.RETRIEVE, retriever("product")),
    ("POST", "/v1/products/{id}", allowed.PRODUCT_UPDATE, update_product),
    ("POST", "/v1/prices", allowed.PRICE_CREATE, create_price),
    ("GET", "/v1/prices", allowed.PRICE_LIST, list_prices),
    ("GET", "/v1/prices/{id}", allowed.RETRIEVE, retriever("price")),
    ("POST", "/v1/prices/{id}", allowed.PRICE_UPDATE, update_price),
    ("POST", "/v1/customers", allowed.CUSTOMER_CREATE, create_customer),
    ("GET", "/v1/customers", allowed.CUSTOMER_LIST, list_customers),
    ("GET", "/v1/customers/{id}", allowed.RETRIEVE, retriever("customer")),
    ("POST", "/v1/customers/{id}", allowed.CUSTOMER_UPDATE, update_customer),
    ("DELETE", "/v1/customers/{id}", frozenset(), delete_customer),
]
