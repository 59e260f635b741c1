"""Errors a user can cause, and how every face shows them: one readable line."""
from __future__ import annotations


class AppError(ValueError):
    """A one-line problem to show the user (raised by the app's own checks)."""


class CliError(AppError):
    """A bad command line."""


class ServiceError(AppError):
    """A request the services cannot answer (empty library, bad option, ...)."""


def _user_error_types() -> tuple[type[BaseException], ...]:
    """Exception types whose message is meant for the user as it is."""
    import index  # the rooms' own error types (LibraryError, AudioError, ... are ValueErrors)

    return (ValueError, FileNotFoundError, index.StoreError, index.EmbedderError)


def one_line(exc: BaseException) -> str:
    """A single readable line for an exception (no traceback): the message of a user error,
    the type and message of anything else."""
    lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
    msg = lines[0].strip() if lines else ""
    if isinstance(exc, _user_error_types()):
        return msg or type(exc).__name__
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
