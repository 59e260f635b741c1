"""One lock per key (a vector read, a map fit, a quality computation), made on first use."""
from __future__ import annotations

import threading
from typing import Hashable


class KeyLocks:
    """Locks by key: events that ask for the same work at once wait for the first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._locks: dict[Hashable, threading.Lock] = {}

    def __call__(self, key: Hashable) -> threading.Lock:
        """The lock of `key`."""
        with self._lock:
            return self._locks.setdefault(key, threading.Lock())
