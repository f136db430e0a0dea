"""The one exception type handlers raise; app.py turns it into lakeFS's `{"message": ...}` body."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


class ApiError(Exception):
    """An HTTP error with lakeFS's status code and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def not_found(what: str) -> ApiError:
    return ApiError(404, f"{what}: not found")


def found(row: T | None, what: str) -> T:
    """`row` (a lookup's result), or lakeFS's 404 naming `what` when there is none."""
    if row is None:
        raise not_found(what)
    return row


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def conflict(message: str) -> ApiError:
    return ApiError(409, message)
