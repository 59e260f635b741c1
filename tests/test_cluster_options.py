"""Qdrant cluster options: what a server is sent when a collection is created, and the CLI flags.

No Qdrant server binary exists here, so a small HTTP endpoint in the test answers Qdrant's REST
calls the way a server does and records the requests that qdrant-client really sends."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from index.store import StoreError
from index.store.client import ClientStore, cluster_options

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def fake_server():
    """A Qdrant-shaped REST endpoint: no collections yet; every request is recorded."""
    seen: list[tuple[str, str, dict]] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, result):
            body = json.dumps({"result": result, "status": "ok", "time": 0.0}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _record(self):
            n = int(self.headers.get("Content-Length") or 0)
            seen.append((self.command, self.path, json.loads(self.rfile.read(n) or b"{}")))

        def do_GET(self):
            self._record()
            self._answer({"exists": False} if self.path.split("?")[0].endswith("/exists") else {})

        def do_PUT(self):
            self._record()
            self._answer({"operation_id": 0, "status": "completed"} if "/index" in self.path else True)

        def log_message(self, *args):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", seen
    srv.shutdown()


def test_new_collections_carry_shards_replicas_and_write_consistency(fake_server, monkeypatch):
    url, seen = fake_server
    monkeypatch.setenv("QDRANT_SHARDS", "6")
    monkeypatch.setenv("QDRANT_REPLICAS", "2")
    monkeypatch.setenv("QDRANT_WRITE_CONSISTENCY", "2")
    store = ClientStore.connect(url)
    store.create_collection("lib__x__dsp", 8, indexes={"label": "keyword"})
    create = [body for method, path, body in seen if method == "PUT" and path.split("?")[0] == "/collections/lib__x__dsp"]
    assert len(create) == 1
    body = create[0]
    assert (body["shard_number"], body["replication_factor"], body["write_consistency_factor"]) == (6, 2, 2)
    assert body["vectors"]["embedding"] == {"size": 8, "distance": "Cosine"}

    seen.clear()  # unset: the server's own defaults (nothing sent)
    for var in ("QDRANT_SHARDS", "QDRANT_REPLICAS", "QDRANT_WRITE_CONSISTENCY"):
        monkeypatch.delenv(var)
    ClientStore.connect(url).create_collection("lib__y__dsp", 8)
    body = [b for m, p, b in seen if m == "PUT" and p.split("?")[0] == "/collections/lib__y__dsp"][0]
    assert not {"shard_number", "replication_factor", "write_consistency_factor"} & set(body)


@pytest.mark.parametrize("env, match", [({"QDRANT_SHARDS": "0"}, r"\$QDRANT_SHARDS must be a whole number"),
                                        ({"QDRANT_REPLICAS": "two"}, r"\$QDRANT_REPLICAS must be"),
                                        ({"QDRANT_REPLICAS": "1", "QDRANT_WRITE_CONSISTENCY": "2"}, "cannot exceed")])
def test_bad_cluster_settings_are_one_line_errors(env, match):
    with pytest.raises(StoreError, match=match):
        cluster_options(env)
    assert cluster_options({"QDRANT_SHARDS": " 3 "}) == {"shard_number": 3}


def test_cli_cluster_flags_note_that_edge_ignores_them(tmp_path, demo_folder):
    env = {"AUDIO_EXPLORER_DATA": str(tmp_path / "data"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    run = subprocess.run([sys.executable, "app.py", "index", str(demo_folder), "--library", "c", "--shards", "3",
                          "--replicas", "2", "--no-thumbnails"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "the embedded Qdrant Edge keeps one local shard and ignores them" in run.stderr
    bad = subprocess.run([sys.executable, "app.py", "index", str(demo_folder), "--library", "c", "--workers", "2"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "--ray-address and --workers go with --engine ray" in bad.stderr
