"""The web server: Gradio mounted on FastAPI, plus read-only routes.

- `/audio/{library}/{path}`: a clip's audio, only from inside that library's root (or its
  uploads); anything else (`..`, absolute paths, links leaving the root, other files) is 403.
- `/thumb/{library}/{point_id}.png`: spectrogram thumbnails made at ingest.
- `/mapdata/{token}`, `/mapnearest/{token}`: a drawn map's points, the clip nearest a click on it.
- `/mapdefault`: the map a new page draws first, with its points (fetched while Gradio loads).
- `/static/mapview.js`: the map component's code, for the early draw of the page head (app/static/mapearly.js).
- `/static/plotly.min.js`: the map's plotly.js: `app/static/plotly-map.min.js` (scattergl + scatter3d
  only, built by scripts/plotly-bundle/build.sh), or the `plotly` package's full bundle without it.
"""
from __future__ import annotations

import os
import re
import sys

from app import assets
from app.errors import one_line
from app.services import Services

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
AUDIO_TYPES = {".wav": "audio/wav", ".wave": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg",
               ".oga": "audio/ogg", ".opus": "audio/ogg", ".mp3": "audio/mpeg", ".m4a": "audio/mp4",
               ".mp4": "audio/mp4", ".aac": "audio/aac", ".aif": "audio/aiff", ".aiff": "audio/aiff"}


def _register_any_path() -> None:
    """A `{name:anypath}` route parameter: Starlette's `path` (`.*`) stops at a newline, and
    file names may hold one."""
    from starlette.convertors import CONVERTOR_TYPES, Convertor, register_url_convertor

    class AnyPath(Convertor):
        regex = r"[\s\S]*"

        def convert(self, value: str) -> str:
            return value

        def to_string(self, value: str) -> str:
            return str(value)

    if "anypath" not in CONVERTOR_TYPES:
        register_url_convertor("anypath", AnyPath())


def create_app(svc: Services):
    """FastAPI app with the audio/thumbnail/static routes and the Gradio UI mounted at /."""
    import gradio as gr
    from fastapi import FastAPI, HTTPException
    import orjson  # a Gradio dependency: ~10x json's speed on 50k points
    from fastapi.responses import FileResponse, Response

    from app.wiring import build_app

    api = FastAPI(title="Audio embedding explorer")
    _register_any_path()

    @api.get("/audio/{library}/{rel_path:anypath}")
    def audio(library: str, rel_path: str):
        try:
            lib = svc.libs.get(library)
            target = lib.resolve(rel_path)
        except Exception:
            raise HTTPException(status_code=403, detail="refused: not a clip of an indexed library") from None
        if target.suffix.lower() not in AUDIO_TYPES:
            raise HTTPException(status_code=403, detail="refused: not an audio file")
        if not target.is_file():
            raise HTTPException(status_code=404, detail="clip not found")
        return FileResponse(target, media_type=AUDIO_TYPES[target.suffix.lower()])

    @api.get("/thumb/{library}/{name}")
    def thumb(library: str, name: str):
        stem = name[:-4] if name.endswith(".png") else name
        if not UUID_RE.match(stem):
            raise HTTPException(status_code=403, detail="refused")
        try:
            svc.libs.get(library)
        except Exception:
            raise HTTPException(status_code=404, detail="unknown library") from None
        p = svc.libs.thumbnail(library, stem)
        if p is None:
            raise HTTPException(status_code=404, detail="no thumbnail")
        return FileResponse(p, media_type="image/png")

    @api.get("/mapdata/{token}")
    def mapdata(token: str):
        if not re.fullmatch(r"[0-9a-f]{32}", token):
            raise HTTPException(status_code=403, detail="refused")
        data = svc.maps.tokens.points_json(token)
        if data is None:
            raise HTTPException(status_code=404, detail="map expired: draw it again")
        return Response(data, media_type="application/json")

    @api.get("/mapdefault")
    def mapdefault():
        """The map a new page draws first and its points, fetched by the page's head script while
        Gradio loads (the page's own draw event then returns the same map, already drawn)."""
        try:
            got = svc.maps.default_map()
        except Exception as exc:
            return Response(orjson.dumps({"value": None, "error": one_line(exc)}), media_type="application/json")
        pts = svc.maps.tokens.points_json(got["token"]) if got else None
        if pts is None:
            return Response(b'{"value":null}', media_type="application/json")
        return Response(b'{"value":' + orjson.dumps(got["value"]) + b',"points":' + pts + b"}",
                        media_type="application/json", headers={"Cache-Control": "no-store"})

    @api.get("/mapnearest/{token}")
    def mapnearest(token: str, x: float, y: float):
        """The clip nearest to (x, y) of all a map's points (a click on a big map's density layer)."""
        if not re.fullmatch(r"[0-9a-f]{32}", token):
            raise HTTPException(status_code=403, detail="refused")
        got = svc.maps.tokens.nearest(token, x, y)
        if got is None:
            raise HTTPException(status_code=404, detail="map expired: draw it again")
        return Response(orjson.dumps(got), media_type="application/json")

    @api.get("/static/mapview.js")
    def mapview_js():
        """The map component's code, for the page head's early draw (app/static/mapearly.js)."""
        return Response(assets.mapview_js(), media_type="application/javascript", headers={"Cache-Control": "no-cache"})

    @api.get("/static/plotly.min.js")
    def plotly_js():
        return FileResponse(assets.plotly_js_path(), media_type="application/javascript",
                            headers={"Cache-Control": "public, max-age=86400"})

    head = assets.head()
    if assets.early_mode() != "off":
        api.add_middleware(HeadFirst, head=head)
    demo = build_app(svc)
    demo.queue(default_concurrency_limit=4)
    # Gradio keeps a copy of the UI's config per session (~0.33 MB for this UI), 10000 sessions by
    # default; an API call without a session hash is a new session, so scripted clients grew the
    # server by ~440 MB/min (benchmarks/load_test.py --sessionless). The oldest sessions beyond
    # this many are dropped.
    demo.state_session_capacity = session_capacity()
    app = gr.mount_gradio_app(api, demo, path="", head=head, css=assets.CSS, show_error=True,
                              max_file_size=assets.MAX_UPLOAD)
    # Gradio checks that a file sent to an input was uploaded (is in its cache) only once the
    # Blocks "has launched", which mount_gradio_app never sets: without this, an API call could
    # name any server path ({"path": "/etc/passwd"}) and the app would read it.
    demo.has_launched = True
    return app


class HeadFirst:
    """ASGI middleware: the page (`GET /`) gets `head` at the top of its <head>. Gradio itself adds
    its `head=` only once its JS bundle has run and read the config (~1 s later on this machine):
    from here the first map's fetches start with the page's first bytes."""

    def __init__(self, app, head: str) -> None:
        self.app, self.head = app, head.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "GET" or scope.get("path") != "/":
            return await self.app(scope, receive, send)
        start: dict = {}
        body: list[bytes] = []

        async def capture(message):
            if message["type"] == "http.response.start":
                start.update(message)
                return
            if message["type"] != "http.response.body":
                return await send(message)
            body.append(message.get("body", b""))
            if message.get("more_body"):
                return
            data = b"".join(body)
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            ctype = dict(headers).get(b"content-type", b"")
            at = data.find(b"<head>")
            if start.get("status") == 200 and ctype.startswith(b"text/html") and at >= 0:
                charset = data.find(b"<meta charset", at)  # kept first
                at = data.find(b">", charset) + 1 if 0 <= charset < at + 200 else at + len(b"<head>")
                data = data[:at] + self.head + data[at:]
            await send({**start, "headers": headers + [(b"content-length", str(len(data)).encode())]})
            await send({"type": "http.response.body", "body": data})

        await self.app(scope, receive, capture)


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only."""
    import ipaddress

    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, access) -> str | None:
    """One line when serving beyond this machine lets anyone change the libraries (local mode on
    another interface) or nobody (public mode without a token)."""
    if not access.public and not is_loopback(host):
        return (f"warning: serving on {host} in local mode: anyone on the network can index, delete and retag "
                f"the libraries (set AUDIO_EXPLORER_MODE=public and AUDIO_EXPLORER_ADMIN_TOKEN)")
    if access.public and not access.token:
        return "note: public mode without AUDIO_EXPLORER_ADMIN_TOKEN: the libraries are read-only for everyone"
    return None


def session_capacity() -> int:
    """Sessions whose state the server keeps (`$AUDIO_EXPLORER_SESSIONS`, default 300)."""
    try:
        return max(1, int(os.environ.get("AUDIO_EXPLORER_SESSIONS", "300")))
    except ValueError:
        return 300


def limit_malloc_arenas() -> None:
    """Cap glibc's malloc arenas, as `MALLOC_ARENA_MAX` does (`$AUDIO_EXPLORER_MALLOC_ARENAS`,
    default 2; 0 leaves glibc's default of 8 per core). With an arena per worker thread, memory
    freed by one request is not reused by the next on another thread: measured with 20
    concurrent searchers (benchmarks/load_test.py), the server's RSS crept up ~40 MB/min for
    3 minutes; with 2 arenas it levels off within a minute."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return  # the user's own setting wins
    try:
        n = int(os.environ.get("AUDIO_EXPLORER_MALLOC_ARENAS", "2") or 0)
    except ValueError:
        n = 2
    if n <= 0 or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-8, n)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass  # not glibc


def serve(data_dir=None, host: str | None = None, port: int | None = None, demo: bool = True,
          share: bool = False) -> int:
    """Build the demo library if needed and serve until interrupted."""
    import uvicorn

    limit_malloc_arenas()
    svc = Services(data_dir)
    try:
        libs = svc.libs.list()
    except Exception as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 1
    if demo and not libs:
        print("building the demo library (first run; a minute or two)...", file=sys.stderr)
        svc.libs.ensure_demo(progress=None)
    if svc.access.public:
        svc.libs.expire_scratch()
    svc.maps.prewarm()  # the first library's default map, read while the server starts
    app = create_app(svc)
    host = host or os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")
    port = port or int(os.environ.get("GRADIO_SERVER_PORT", "7860"))
    warning = exposure_warning(host, svc.access)
    if warning:
        print(warning, file=sys.stderr)
    print(f"serving on http://{host}:{port} ({svc.access.mode} mode; data: {svc.data_dir})", file=sys.stderr)
    # open event streams (e.g. gradio_client sessions) would hold a graceful shutdown for ever
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)
    return 0
