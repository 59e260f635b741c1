"""One module per view of the UI. Each has module-level callbacks that take the `Services` first
and plain values after (callable in a test without serving) and a `build(...)` that lays the view
out and returns the handles other views connect to; `app.wiring` binds and connects them."""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

PRIVATE: dict[str, Any] = {"api_visibility": "private"}  # UI-internal events are not API endpoints


def bind(fn: Callable, svc: Any) -> Callable:
    """`fn` with its first argument (the services) bound, keeping the rest of its signature and its
    type hints (Gradio reads them to pass `gr.Progress` / `gr.EventData`)."""
    @functools.wraps(fn)
    def bound(*args: Any, **kwargs: Any) -> Any:
        return fn(svc, *args, **kwargs)

    sig = inspect.signature(fn)
    bound.__signature__ = sig.replace(parameters=list(sig.parameters.values())[1:])  # type: ignore[attr-defined]
    return bound
