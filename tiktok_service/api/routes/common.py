"""Responses shared by the routes (documented in the OpenAPI document)."""

from __future__ import annotations

from typing import Any, Final

from fastapi import HTTPException, status

PAGE_LIMIT_MAX: Final = 500
NOT_FOUND: Final = "livestream not found"

AUTH_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    401: {"description": "Missing, malformed, unknown or revoked API key."},
    429: {"description": "`rate_limited`: too many requests with this API key; retry after `Retry-After` seconds."},
}
NOT_FOUND_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    404: {"description": "No such livestream in the API key's workspace (another workspace's included)."},
}


def not_found() -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND)


def unprocessable(reason: str, where: tuple[str, ...]) -> HTTPException:
    """A 422 shaped like FastAPI's own validation errors."""
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT, [{"loc": list(where), "msg": reason, "type": "value_error"}]
    )
