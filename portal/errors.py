"""Generic error pages (HTML for browsers, JSON with a reason for JSON callers); no stack traces."""

from __future__ import annotations

import logging

from flask import Flask
from flask import jsonify
from flask import make_response
from flask import render_template
from flask.typing import ResponseReturnValue
from flask.wrappers import Response
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import InternalServerError

from portal.extensions import wants_json

log = logging.getLogger(__name__)

MESSAGES = {
    400: ("Bad request", "The request could not be understood. Go back and try again."),
    401: ("Sign in required", "Please sign in to continue."),
    403: ("Not allowed", "Your account cannot open this page."),
    404: ("Not found", "There is nothing here. Check the address or go back to your home page."),
    405: ("Not allowed", "This page cannot be used that way."),
    413: ("Too large", "What you sent is too large."),
    429: ("Slow down", "Too many requests. Wait a moment and try again."),
    500: (
        "Something went wrong",
        "An unexpected error happened on our side. Nothing was charged twice; try again in a minute.",
    ),
    503: (
        "Temporarily unavailable",
        "A service we depend on is not answering. Try again in a minute.",
    ),
}


def render_error(status: int, reason: str | None = None) -> Response:
    """Render the generic error page (or JSON) for ``status``."""
    title, text = MESSAGES.get(status, MESSAGES[500])
    if wants_json():
        response = jsonify(error=title.lower().replace(" ", "_"), reason=reason or text)
    else:
        response = make_response(
            render_template("errors/error.html", status=status, title=title, text=reason or text)
        )
    response.status_code = status
    return response


def init_app(app: Flask) -> None:
    """Register the handlers for every HTTP error and for unexpected exceptions."""

    @app.errorhandler(CSRFError)
    def csrf_error(_exc: CSRFError) -> ResponseReturnValue:
        return render_error(
            400, "This form expired or was sent from elsewhere. Reload the page and try again."
        )

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> ResponseReturnValue:
        status = exc.code or 500
        # abort(404, "reason") passes a specific reason; werkzeug's default texts are generic.
        reason = exc.description if exc.description != type(exc).description else None
        response = render_error(status, reason)
        # Keep the headers werkzeug attached (Allow on 405, Retry-After on 429).
        for name in ("Allow", "Retry-After"):
            value = exc.get_response().headers.get(name)
            if value:
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> ResponseReturnValue:
        if isinstance(exc, HTTPException):
            return http_error(exc)
        log.exception("unhandled error", exc_info=exc)
        return render_error(InternalServerError.code)
