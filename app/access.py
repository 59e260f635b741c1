"""Who may change what.

Local mode (the default; the server binds to 127.0.0.1): whoever reaches the app may do
everything. Public mode (`AUDIO_EXPLORER_MODE=public`, and the default when `SPACE_ID` says the
app runs on a Hugging Face Space): visitors browse, play, search, draw maps, select, compute
clusters and export; indexing server folders, deleting, editing tags/labels of shared
libraries and training need the admin token (`AUDIO_EXPLORER_ADMIN_TOKEN`), entered once per
browser session in the Library view (or passed as `admin_token` to an API write). A visitor's
uploads are indexed into the visitor's own scratch library (`visitor-<id>`), with quotas, which
the visitor may tag and which expires.

The refusal lives here and in the callbacks that change data: hiding an event from the API or a
button from the page is not protection (a client can replay the page's own queue requests).

Why a token rather than Gradio's auth or Sign-in with HF: Gradio's auth locks the whole app
(visitors could not browse), and HF OAuth exists only on a Space and cannot be tested offline;
a token works the same on a Space, a VM and a laptop.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import threading
from dataclasses import dataclass, field
from typing import Any

from app.errors import AppError

MODE_ENV = "AUDIO_EXPLORER_MODE"
TOKEN_ENV = "AUDIO_EXPLORER_ADMIN_TOKEN"
SCRATCH_PREFIX = "visitor-"


class AccessError(AppError):
    """A change this caller may not make."""


@dataclass
class Quota:
    """What one visitor's scratch library may hold."""

    files: int = 50
    duration_s: float = 600.0
    bytes: int = 100 * 1024 * 1024
    ttl_s: float = 24 * 3600.0

    @classmethod
    def from_env(cls) -> "Quota":
        """Quotas from $AUDIO_EXPLORER_QUOTA_{FILES,DURATION_S,BYTES,TTL_S} (defaults above)."""
        q = cls()
        for name, cast in (("files", int), ("duration_s", float), ("bytes", int), ("ttl_s", float)):
            raw = os.environ.get(f"AUDIO_EXPLORER_QUOTA_{name.upper()}")
            if raw:
                try:
                    setattr(q, name, cast(raw))
                except ValueError:
                    pass
        return q


def _session(request: Any) -> str | None:
    return getattr(request, "session_hash", None) if request is not None else None


@dataclass
class Access:
    """The server's access policy and the sessions that presented the admin token."""

    public: bool = False
    token: str | None = None
    quota: Quota = field(default_factory=Quota)
    _admins: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_env(cls) -> "Access":
        """Public when $AUDIO_EXPLORER_MODE is 'public', or on a Space ($SPACE_ID) unless it is 'local'."""
        mode = os.environ.get(MODE_ENV, "").strip().lower()
        if mode not in ("", "public", "local"):
            raise AppError(f"{MODE_ENV} must be 'public' or 'local', not '{mode}'")
        public = mode == "public" or (mode == "" and bool(os.environ.get("SPACE_ID")))
        return cls(public=public, token=os.environ.get(TOKEN_ENV) or None, quota=Quota.from_env())

    @property
    def mode(self) -> str:
        """'public' or 'local'."""
        return "public" if self.public else "local"

    def token_ok(self, token: str | None) -> bool:
        """Whether `token` is the admin token (compared in constant time)."""
        return bool(self.token) and bool(token) and hmac.compare_digest(str(token).encode(), self.token.encode())

    def grant(self, request: Any, token: str | None) -> bool:
        """Let this browser session change data if `token` is the admin token."""
        sid = _session(request)
        if not self.token_ok(token) or not sid:
            return False
        with self._lock:
            self._admins.add(sid)
        return True

    def is_admin(self, request: Any, token: str | None = None) -> bool:
        """Local mode, or a session that presented the token, or a call that carries it."""
        if not self.public or self.token_ok(token):
            return True
        sid = _session(request)
        with self._lock:
            return sid is not None and sid in self._admins

    def scratch_library(self, request: Any) -> str:
        """The name of this visitor's own scratch library."""
        sid = _session(request) or "anonymous"
        return SCRATCH_PREFIX + hashlib.sha1(sid.encode()).hexdigest()[:10]

    def may_edit(self, request: Any, library: str | None, token: str | None = None) -> bool:
        """Whether the caller may change `library` (its tags, labels, contents)."""
        return self.is_admin(request, token) or (library is not None and library == self.scratch_library(request))

    def require(self, request: Any, what: str, library: str | None = None, token: str | None = None) -> None:
        """AccessError (one line: 'refused: <what> needs the admin token ...') unless the caller may
        do `what`: change `library` (their own scratch library is theirs), or anything (library None)."""
        if library is not None and self.may_edit(request, library, token):
            return
        if library is None and self.is_admin(request, token):
            return
        raise AccessError(f"refused: {what} needs the admin token in this public deployment"
                          + ("" if self.token else " (none is set: the libraries are read-only)"))
