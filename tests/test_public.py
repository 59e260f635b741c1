"""A public deployment served for real: every endpoint a client can call, with and without the
admin token, and a browser's own queue request for a destructive UI event replayed by hand."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from tests.conftest import ROOT, serving

pytestmark = pytest.mark.slow
TOKEN = "public-test-token"


@pytest.fixture(scope="module")
def public_app(tmp_path_factory, demo_folder):
    root = tmp_path_factory.mktemp("public")
    data = root / "data"
    env = {**os.environ, "AUDIO_EXPLORER_DATA": str(data), "GRADIO_ANALYTICS_ENABLED": "False",
           "AUDIO_EXPLORER_MODE": "public", "AUDIO_EXPLORER_ADMIN_TOKEN": TOKEN}
    subprocess.run([sys.executable, "app.py", "index", str(demo_folder), "--library", "demo", "--models", "dsp"],
                   cwd=ROOT, env=env, check=True, capture_output=True, timeout=600)
    with serving(root, env) as url:
        yield url, demo_folder, root


def libraries(url):
    from gradio_client import Client

    return [lib["name"] for lib in Client(url + "/", verbose=False).predict(api_name="/list_libraries")]


def test_every_endpoint_in_public_mode(public_app):
    from gradio_client import Client, handle_file

    url, folder, root = public_app
    c = Client(url + "/", verbose=False)
    assert "public mode" in (root / "serve.log").read_text()
    assert [m for m in c.predict(api_name="/list_models") if m["name"] == "dsp"][0]["status"] == "ready"
    hits = c.predict("demo", "dsp", handle_file(str(folder / "kick" / "kick_00.wav")), 3, api_name="/search_file")
    assert hits[0]["file"] == "kick/kick_00.wav"
    assert c.predict("demo", "dsp", hits[0]["id"], 2, api_name="/search_by_id")[0]["id"] == hits[0]["id"]
    assert c.predict("demo", "dsp", "pca", 2, 0, api_name="/map_coordinates")["n"] == 18
    assert c.predict("demo", "dsp", 3, api_name="/class_stats")["n_labelled"] == 16
    with pytest.raises(Exception, match="refused: tagging clips of library 'demo' needs the admin token"):
        c.predict("demo", [hits[0]["id"]], ["x"], [], None, None, api_name="/tag_clips")
    with pytest.raises(Exception, match="refused"):
        c.predict("demo", [hits[0]["id"]], ["x"], [], None, "wrong-token", api_name="/tag_clips")
    out = c.predict("demo", [hits[0]["id"]], ["by-admin"], [], None, TOKEN, api_name="/tag_clips")
    assert out["changed"] == 1
    doc = c.predict("demo", "dsp", "pca", 2, 0, api_name="/map_coordinates")
    assert [p for p in doc["points"] if p["id"] == hits[0]["id"]][0]["tags"] == ["by-admin"]


def replay(url: str, api_name: str, data: list, session: str | None = None) -> str:
    """Send the page's own queue request for a UI event (by its index in the page config), as a
    browser does, and return the event's output as text."""
    import httpx

    config = httpx.get(url + "/config", timeout=30).json()
    deps = [d for d in config["dependencies"] if d.get("api_name") == api_name]
    assert deps, f"no UI event {api_name}"
    dep = deps[0]
    session = session or uuid.uuid4().hex[:11]
    body = {"data": data, "fn_index": dep["id"], "trigger_id": dep["targets"][0][0], "session_hash": session,
            "event_data": None}
    r = httpx.post(url + "/gradio_api/queue/join", json=body, timeout=30)
    assert r.status_code == 200, r.text
    with httpx.stream("GET", url + "/gradio_api/queue/data", params={"session_hash": session}, timeout=120) as s:
        for line in s.iter_lines():
            if line.startswith("data:"):
                msg = json.loads(line[5:])
                if msg.get("msg") == "process_completed":
                    return json.dumps(msg.get("output"))
    raise AssertionError("no result")


def test_a_replayed_browser_request_cannot_delete_or_index_a_server_folder(public_app, tmp_path):
    url, folder, _ = public_app
    # as a visitor who opened the page: its load events fill the session's dropdown choices first
    session = uuid.uuid4().hex[:11]
    tables = replay(url, "tables", [], session)
    assert "demo" in tables and str(folder) not in tables and "(hidden)" in tables  # no server folder shown
    out = replay(url, "delete", ["demo", True], session)
    assert "refused: deleting library 'demo' needs the admin token" in out
    assert "demo" in libraries(url)
    out = replay(url, "run_index", ["stolen", str(folder), None, ["dsp"], "folder", "auto", 1.0, False])
    assert "refused: indexing a server folder" in out
    assert "stolen" not in libraries(url)
