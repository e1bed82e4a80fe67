"""Hosted invoice pages: each finalized invoice's page and its PDF (hosted_invoice_url, invoice_pdf).

Stripe hosts both for every finalized invoice (drafts have neither); the sandbox serves a plain
page with the invoice's lines, total and status, and a one-page PDF with the same text.
"""

from __future__ import annotations

from html import escape
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.vendors.stripe.invoices import money
from sandbox.vendors.stripe.pages import _page
from sandbox.vendors.stripe.periods import day_label
from sandbox.vendors.stripe.store import State

STATUS_WORDS = {"paid": "Paid", "open": "Due", "void": "Void", "uncollectible": "Uncollectible"}


def invoice_text(invoice: dict[str, Any]) -> list[str]:
    """The invoice as lines of text: number, dates, lines, total, status (page and PDF alike)."""
    paid_at = invoice["status_transitions"]["paid_at"]
    lines = [
        f"Invoice {invoice['number']}",
        f"Billed to {invoice.get('customer_email') or invoice['customer']}",
        f"Issued {day_label(invoice['effective_at'] or invoice['created'])}",
    ]
    for line in invoice["lines"]["data"]:
        lines.append(f"{line['description']}: {money(line['amount'], line['currency'])}")
    lines.append(f"Total: {money(invoice['total'], invoice['currency'])}")
    status = STATUS_WORDS.get(invoice["status"], invoice["status"])
    lines.append(f"{status} on {day_label(paid_at)}" if paid_at else status)
    return lines


def render_pdf(text: list[str]) -> bytes:
    """A one-page PDF 1.4 showing ``text`` in Helvetica, one line under the other."""

    def literal(line: str) -> str:
        plain = line.encode("latin-1", "replace").decode("latin-1")
        return plain.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    stream = "BT /F1 12 Tf 72 770 Td 16 TL " + " ".join(f"({literal(t)}) '" for t in text) + " ET"
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 842] /Contents 4 0 R "
        "/Resources << /Font << /F1 5 0 R >> >> >>",
        f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    trailer = f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n"
    return out + trailer.encode()


def routes(state: State) -> list[Route]:
    """Routes of the hosted invoice page and PDF, relative to the simulator's mount point."""

    def finalized(request: Request) -> dict[str, Any] | None:
        invoice = state.find(request.path_params["invoice_id"], "invoice")
        return invoice if invoice is not None and invoice["status"] != "draft" else None

    async def invoice_page(request: Request) -> Response:
        """GET /invoice/{id}: the hosted invoice page."""
        invoice = finalized(request)
        if invoice is None:
            return _page("Not found", "<p>No such invoice.</p>", 404)
        title, *rest = invoice_text(invoice)
        body = f"<h1>{escape(title)}</h1>" + "".join(f"<p>{escape(t)}</p>" for t in rest)
        body += f'<p><a href="{escape(invoice["invoice_pdf"])}">Download PDF</a></p>'
        return _page(title, body)

    async def invoice_pdf(request: Request) -> Response:
        """GET /invoice/{id}/pdf: the invoice as a PDF."""
        invoice = finalized(request)
        if invoice is None:
            return Response("No such invoice.", status_code=404, media_type="text/plain")
        return Response(
            render_pdf(invoice_text(invoice)),
            media_type="application/pdf",
            headers={"Content-Disposition": f'inline; filename="{invoice["number"]}.pdf"'},
        )

    return [
        Route("/invoice/{invoice_id}", invoice_page, methods=["GET"]),
        Route("/invoice/{invoice_id}/pdf", invoice_pdf, methods=["GET"]),
    ]
