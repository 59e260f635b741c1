"""The programmatic API: every documented endpoint through gradio_client against the served app,
and the audio route's fence."""
import json
import urllib.error
import urllib.request

import pytest
from gradio_client import Client, handle_file

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(served_app):
    url, _, _ = served_app
    return Client(url + "/", verbose=False)


def test_list_libraries_and_models(client):
    libs = client.predict(api_name="/list_libraries")
    assert libs[0]["name"] == "demo" and libs[0]["counts"] == {"dsp": 19, "vgg-msd": 19}
    models = {m["name"]: m for m in client.predict(api_name="/list_models")}
    assert models["dsp"]["status"] == "ready" and models["vgg-msd"]["status"] == "ready"


def test_search_file_and_by_id(client, served_app):
    _, _, folder = served_app
    q = folder / "hihat" / "hihat_01.wav"
    hits = client.predict("demo", "vgg-msd", handle_file(str(q)), 5, api_name="/search_file")
    assert hits[0]["file"] == "hihat/hihat_01.wav" and hits[0]["score"] > 0.999
    again = client.predict("demo", "dsp", hits[0]["id"], 3, api_name="/search_by_id")
    assert again[0]["id"] == hits[0]["id"] and len(again) == 3


def test_map_coordinates(client):
    doc = client.predict("demo", "dsp", "pca", 3, 0, api_name="/map_coordinates")
    assert doc["dims"] == 3 and doc["n"] == 19 and len(doc["points"]) == 19
    p = doc["points"][0]
    assert {"id", "x", "y", "z", "file", "label"} <= set(p)


def test_taggram_and_class_stats(client):
    tg = client.predict("demo", "vgg-msd", "pad/sweep_long.wav", api_name="/taggram")
    assert len(tg["tags"]) == 50 and len(tg["scores"]) == len(tg["times_s"]) >= 1
    assert len(tg["scores"][0]) == 50
    st = client.predict("demo", "dsp", 3, api_name="/class_stats")
    assert st["labels"] == ["hihat", "kick", "pad", "voice"]
    assert st["counts"] == {"hihat": 4, "kick": 4, "pad": 5, "voice": 4}
    assert 0.5 < st["overall_agreement"] <= 1.0
    assert len(st["centroid_similarity"]) == 4 and st["centroid_similarity"][0][0] == pytest.approx(1.0)


def test_tag_clips_is_written_and_seen_by_search(client):
    first = client.predict("demo", "dsp", "pca", 2, 0, api_name="/map_coordinates")["points"][0]
    hit = client.predict("demo", "dsp", first["id"], 1, api_name="/search_by_id")[0]
    out = client.predict("demo", [hit["id"]], ["api-kept"], [], None, api_name="/tag_clips")
    assert out["changed"] == 1 and out["collections"] == 2  # dsp and vgg-msd
    doc = client.predict("demo", "vgg-msd", "pca", 2, 0, api_name="/map_coordinates")
    assert [p for p in doc["points"] if p["id"] == hit["id"]][0]["tags"] == ["api-kept"]
    client.predict("demo", [hit["id"]], [], ["api-kept"], None, api_name="/tag_clips")


def test_errors_are_readable(client):
    with pytest.raises(Exception) as exc:
        client.predict("nope", "dsp", "x", 3, api_name="/search_by_id")
    assert "unknown library 'nope'" in str(exc.value)


@pytest.mark.parametrize("path,code", [
    ("/audio/demo/kick/kick_00.wav", 200),
    ("/audio/demo/%2e%2e/%2e%2e/%2e%2e/etc/passwd", 403),
    ("/audio/demo/%2Fetc%2Fpasswd", 403),
    ("/audio/demo/..%2F..%2Fdata%2Fqdrant", 403),
    ("/audio/nope/kick/kick_00.wav", 403),
    ("/audio/demo/missing.wav", 404),
    ("/thumb/demo/..%2Fsecret.png", 404),  # no route matches: refused before any file is touched
    ("/thumb/demo/not-a-uuid.png", 403),
])
def test_audio_is_served_only_from_libraries(served_app, path, code):
    url, _, _ = served_app
    try:
        got = urllib.request.urlopen(url + path, timeout=10).status
    except urllib.error.HTTPError as e:
        got = e.code
    assert got == code


def test_a_client_sees_exactly_the_documented_endpoints(client):
    from tests.test_views import readme_endpoints

    api = client.view_api(return_format="dict", print_info=False)
    assert sorted(n.lstrip("/") for n in api["named_endpoints"]) == readme_endpoints()
    assert not api["unnamed_endpoints"]
    for hidden in ("/run_index", "/delete", "/draw", "/refresh", "/run"):
        with pytest.raises(Exception):
            client.predict(api_name=hidden)


def test_the_page_starts_its_first_map_before_gradio_runs(served_app):
    """The page's first bytes hold the early-map script (before Gradio's bundle), and the map
    component's code it runs is served; the map it fetches is the session's first map."""
    url, _, _ = served_app
    html = urllib.request.urlopen(url + "/", timeout=30).read().decode()
    head = html.index("<head>")
    early, bundle = html.find("performance.mark('ae:head')"), html.find('<script type="module"')
    assert head < early < bundle and early - head < 1000, (head, early, bundle)
    code = urllib.request.urlopen(url + "/static/mapview.js", timeout=30).read().decode()
    assert "early.adopt(element, trigger, props, watch)" in code
    first = json.loads(urllib.request.urlopen(url + "/mapdefault", timeout=60).read())
    assert first["value"]["library"] == "demo" and len(first["points"]["x"]) > 0
