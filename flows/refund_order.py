"""Refund a paid Checkout Session that was not fulfilled, and cancel its subscription.

Parameters are the order (snapshot) id only. Fulfilment decides, in the webhook's transaction,
that a paid session does not win (the order changed, another tab paid first, the order was
cancelled, or what was paid differs from what was ordered) and queues this run through the
outbox. In order: check the order was decided against, refund the payment in full, cancel the
session's subscription (never the provision's live one), mark the order refunded and email the
student why. Every step reads Stripe first; a rerun or a retry from the Prefect UI changes
nothing more. Deployment: ``refund-order/on-demand``.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect import tags
from prefect.artifacts import create_markdown_artifact
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.objects import State
from prefect.flows import Flow
from prefect.runtime import flow_run

from tasks import runtime
from tasks.notifications import deliver_notifications
from tasks.notifications import deliver_quietly
from tasks.notifications import queue_for_admins
from tasks.refunds import cancel_subscription
from tasks.refunds import finish_refund
from tasks.refunds import load_order
from tasks.refunds import refund_payment


def run_name() -> str:
    """Name the run after the order, so operators find it in the Prefect UI."""
    return f"refund-order-{flow_run.parameters.get('order_id')}"


def on_run_failed(flow: Flow[..., Any], flow_run: FlowRun, state: State[Any]) -> None:  # noqa: ARG001
    """Tell every admin a refund did not finish (retrying the run is safe)."""
    order_id = flow_run.parameters.get("order_id")
    if order_id is None:
        return
    with runtime.db() as session:
        keys = queue_for_admins(
            session,
            key=f"refund-failed:{order_id}:{flow_run.id}",
            subject=f"[outbound] Refunding order {order_id} did not finish",
            body=f"Run {flow_run.name} {state.type.value.lower()}: {state.message}\n"
            "A student paid for an order that was not set up. Retrying the run from the Prefect "
            "UI is safe: it refunds and cancels only what is still to do.",
        )
    deliver_quietly(keys)


@flow(
    name="refund-order",
    flow_run_name=run_name,
    persist_result=True,
    result_serializer="json",
    on_failure=[on_run_failed],
    on_crashed=[on_run_failed],
)
def refund_order(order_id: int) -> dict[str, Any]:
    """Refund an unfulfilled paid order in full and cancel its subscription; tell the student."""
    with tags("refund", f"order-{order_id}"):
        order = load_order(order_id)
        with tags(f"provision-{order['provision_id']}"):
            refund_id = refund_payment(order_id, order["session_id"])
            subscription = cancel_subscription(order["session_id"], order["live_subscription"])
            keys = finish_refund(order_id, refund_id)
            create_markdown_artifact(
                key=f"refund-order-{order_id}",
                markdown=_summary_markdown(order, refund_id, subscription),
                description=f"Order {order_id}: refunded, subscription {subscription}",
            )
            deliver_notifications(keys)
    return {
        "order_id": order_id,
        "refund_id": refund_id,
        "subscription": subscription,
        "status": "refunded",
    }


def _summary_markdown(order: dict[str, Any], refund_id: str, subscription: str) -> str:
    # Ids and the reason only: no card data, no keys, no email address.
    return "\n".join(
        [
            f"# Refund of order {order['order_id']} (provision {order['provision_id']})",
            "",
            "| what | result |",
            "|---|---|",
            f"| checkout session | `{order['session_id']}` |",
            f"| refund | `{refund_id}` (full amount) |",
            f"| its subscription | {subscription} |",
            "",
            f"Why: {order['reason'] or 'not recorded'}",
        ]
    )


if __name__ == "__main__":
    import sys

    refund_order(int(sys.argv[1]))
