"""Every view's callbacks, called in-process as the UI calls them (no server, no browser), on a
small library indexed with the DSP model."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from app.components import EMPTY, hits_html
from app.services import Services
from app.views import api, classes, compare, library, pickers, playback, search
from app.views import map as maps

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def lib(tmp_path_factory, demo_folder):
    """(Services over a data folder with library 'demo' indexed with dsp, the audio folder)."""
    root = tmp_path_factory.mktemp("views")
    folder = root / "lib"
    shutil.copytree(demo_folder, folder)
    t = np.arange(int(3.0 * 22050)) / 22050
    sf.write(str(folder / "pad" / "sweep_long.wav"), (0.5 * np.sin(2 * np.pi * (200 + 300 * t) * t)).astype(np.float32),
             22050)
    svc = Services(root / "data")
    rep = svc.libs.index("demo", folder=str(folder), models=["dsp"])
    assert rep.added == 19
    return svc, folder


def test_pickers_offer_the_libraries_and_keep_the_current_choice(lib, tmp_path):
    svc, _ = lib
    libs, models, banner = pickers.refresh(svc, None, None)
    assert libs["choices"] == ["demo"] and libs["value"] == "demo"
    assert models["value"] == "dsp" and banner == ""
    libs, models, _ = pickers.refresh(svc, "gone", "gone")
    assert libs["value"] == "demo" and models["value"] == "dsp"
    assert pickers.models_for(svc, "demo")["choices"] == ["dsp"]
    assert pickers.models_for(svc, "nope")["choices"] == []
    empty = Services(tmp_path / "empty")
    libs, models, banner = pickers.refresh(empty)
    assert libs["choices"] == [] and banner == EMPTY


def test_map_draw_publishes_the_points_and_a_status(lib):
    svc, _ = lib
    value, status = maps.draw(svc, "demo", "dsp", "pca", "2D", "label")
    assert value["n"] == 19 and value["dims"] == 2 and value["points_url"] == f"/mapdata/{value['token']}"
    pts = svc.maps.tokens.points(value["token"])
    assert len(pts["x"]) == len(pts["y"]) == len(pts["path"]) == 19
    assert "kick/kick_00.wav" in pts["path"] and "id" not in pts
    assert status.startswith("19 clips, PCA 2D of dsp")
    q = maps.quality(svc, "demo", "dsp", "pca", "2D", "label")
    assert re.search(r"trustworthiness@\d+ 0\.\d{3}", q) and "kNN label agreement" in q
    again, status2 = maps.draw(svc, "demo", "dsp", "pca", "2D", "label")
    # the same map drawn again is re-published as it was (same token, no Python work for its points)
    assert "(cached)" in status2 and again["token"] == value["token"] and again == value
    three, _ = maps.draw(svc, "demo", "dsp", "pca", "3D", "loudness_dbfs")
    assert len(svc.maps.tokens.points(three["token"])["z"]) == 19
    assert three["color"]["name"] == "loudness_dbfs"


def test_map_draw_without_a_library_or_with_a_bad_option_says_so(lib):
    svc, _ = lib
    assert maps.draw(svc, None, None, "pca", "2D", "label")[0] == {"message": EMPTY}
    value, html_ = maps.draw(svc, "demo", "dsp", "latent", "2D", "label")
    assert value["message"].startswith("Error: 'latent' needs a model with 3-D vectors")
    assert 'class="ae-error"' in html_ and "\n" not in value["message"]
    value, _ = maps.draw(svc, "demo", "dsp", "pca", "2D", "no such colour")
    assert value["message"] == "Error: cannot colour by 'no such colour'"


def test_colour_options_list_descriptors(lib):
    svc, _ = lib
    opts = maps.color_choices(svc, "demo", "dsp")["choices"]
    assert opts[0] == "label" and "loudness_dbfs" in opts and "spectral_centroid_hz" in opts
    assert maps.color_choices(svc, "nope", "dsp")["choices"] == ["label"]


def test_clicking_a_point_lists_it_first_then_its_neighbours(lib):
    svc, _ = lib
    value, _ = maps.draw(svc, "demo", "dsp", "pca", "2D", "label")
    pts = svc.maps.tokens.points(value["token"])
    i = pts["path"].index("kick/kick_01.wav")
    html_, pid = maps.click(svc, "demo", "dsp", 3, value["token"], i)
    assert pid == svc.maps.tokens.point_id(value["token"], i)
    assert html_.index("Clicked clip") < html_.index("kick/kick_01.wav") < html_.index("Nearest to kick/kick_01.wav")
    assert html_.count('class="ae-hit"') == 4 and '/audio/demo/kick/kick_01.wav' in html_
    assert maps.click(svc, "demo", "dsp", 3, "0" * 32, 0) == ("", None)  # an expired map
    assert maps.click(svc, "demo", "dsp", 3, value["token"], 10**6) == ("", None)
    assert maps.click(svc, "demo", "dsp", 3, value["token"], True) == ("", None)


def test_playback_places_the_file_and_carries_its_audio(lib):
    svc, _ = lib
    files = playback.file_choices(svc, "demo", "dsp")
    assert "pad/sweep_long.wav" in files["choices"] and files["info"] is None
    value, note = playback.play(svc, "demo", "dsp", "pad/sweep_long.wav", "pca", "2D", 2.0, False)
    tr = value["trajectory"]
    assert len(tr["t"]) == len(tr["x"]) == len(tr["y"]) > 2 and np.all(np.diff(tr["t"]) > 0)
    assert value["audio_url"] == "/audio/demo/pad/sweep_long.wav" and value["trail_s"] == 2.0
    assert len(value["own_idx"]) == 1 and len(value["waveform"]["min"]) > 0
    assert value["spectrogram_url"].startswith("data:image/png;base64,")
    assert "placed into the PCA map" in note
    assert playback.play(svc, "demo", "dsp", None, "pca", "2D")[0] == {"message": "Pick a file to play."}
    bad, html_ = playback.play(svc, "demo", "dsp", "nope.wav", "pca", "2D")
    assert bad["message"] == "Error: no clip 'nope.wav' in library 'demo' for model 'dsp'"
    assert playback.file_choices(svc, None, None)["choices"] == []


def test_search_with_a_file_finds_it_first(lib):
    svc, folder = lib
    labels = search.label_choices(svc, "demo", "dsp")
    assert labels["choices"] == ["(any)", "hihat", "kick", "pad", "voice"]
    status, html_, last = search.run(svc, "demo", "dsp", str(folder / "hihat" / "hihat_01.wav"), "", 5)
    assert len(last) == 5 and last[0][1] > 0.999
    assert status.startswith("5 results for hihat_01.wav")
    first = re.search(r'data-path="([^"]+)"', html_).group(1)
    assert first == "hihat/hihat_01.wav"
    _, only, _ = search.run(svc, "demo", "dsp", str(folder / "hihat" / "hihat_01.wav"), "", 10, "kick")
    assert set(re.findall(r'<span class="lbl">([^<]+)</span>', only)) == {"kick"}
    _, ranged, _ = search.run(svc, "demo", "dsp", str(folder / "hihat" / "hihat_01.wav"), "", 19, None, False,
                           "duration_s", None, 1.0)
    assert 'pad/sweep_long.wav' not in ranged
    assert search.run(svc, "demo", "dsp", None, "")[0].startswith("Upload or record a clip")
    bad = folder.parent / "bad.wav"
    bad.write_bytes(b"not audio at all")
    status, err, _ = search.run(svc, "demo", "dsp", str(bad), "")
    assert status == "" and err.startswith('<div class="ae-error">Error: ') and err.count("\n") == 0
    status, err, _ = search.run(svc, "demo", "dsp", None, "a dog")
    assert status == "" and "ae-error" in err  # text search needs a CLAP model
    # only clips with a tag; the results exported with their scores
    pads = [pid for pid, p in zip(*svc.vectors.read("demo", "dsp")[::2]) if p.get("label") == "pad"]
    svc.curation.edit("demo", pads[:2], add=["pick"])
    assert search.tag_choices(svc, "demo", "dsp")["choices"] == ["(any)", ("pick (2)", "pick")]
    _, tagged, last = search.run(svc, "demo", "dsp", str(folder / "hihat" / "hihat_01.wav"), "", 10, None, False,
                                 None, None, None, "pick")
    assert sorted(i for i, _s in last) == sorted(pads[:2])
    path, msg = search.export_results(svc, "demo", "dsp", last)
    import zipfile
    with zipfile.ZipFile(path) as z:
        man = json.loads(z.read("manifest.json"))
    assert sorted(c["score"] for c in man["clips"]) == sorted(s_ for _i, s_ in last) and "with their scores" in msg
    svc.curation.edit("demo", pads[:2], remove=["pick"])


def test_classes_compute_counts_agreement_heatmap_and_typical_clips(lib):
    svc, _ = lib
    head, rows, fig, html_ = classes.compute(svc, "demo", "dsp", 3)
    assert head.startswith("**Overall agreement@3: ")
    rows = rows["value"]
    assert [r[0] for r in rows] == ["hihat", "kick", "pad", "voice"] and [r[1] for r in rows] == [4, 4, 5, 4]
    assert fig.data[0].type == "heatmap" and len(fig.data[0].z) == 4
    assert "'kick': most typical clips" in html_ and html_.count("<audio") >= 8
    # one fold per class, in the table's order, the first one open
    assert re.findall(r'<details class="ae-class"( open)?><summary>(\w+): ', html_) == [
        (" open" if i == 0 else "", r[0]) for i, r in enumerate(rows)]
    assert classes.compute(svc, None, None)[0] == EMPTY
    assert classes.compute(svc, "nope", "dsp")[0].startswith("**Error:** unknown library 'nope'")


def test_library_tables_index_and_delete(lib, demo_folder):
    svc, _ = lib
    libs, picker, models = library.tables(svc)
    assert libs[0][:2] == ["demo", 19] and picker["choices"] == ["demo"]
    assert libs[0][3] == str(svc.libs.get("demo").root)  # a local (non-public) server shows its folders
    assert any(m[0] == "dsp" and m[2] == "ready" for m in models)
    assert library.run_index(svc, " ", str(demo_folder), None, ["dsp"]) == "**Error:** give the library a name."
    assert library.run_index(svc, "x", str(demo_folder), None, []) == "**Error:** choose at least one model."
    assert library.run_index(svc, "x", "/no/such/folder", None, ["dsp"]) == \
        "**Error:** not a folder on the server: /no/such/folder"
    rep = library.run_index(svc, "second", str(demo_folder / "kick"), None, ["dsp"])
    assert rep.startswith("**") and "4 added" in rep
    assert [r[0] for r in library.tables(svc)[0]] == ["demo", "second"]
    assert library.delete(svc, "second", False) == "Tick the box to confirm."
    assert library.delete(svc, None, True) == "Pick a library."
    assert library.delete(svc, "second", True).startswith("Deleted library 'second'")
    assert [r[0] for r in library.tables(svc)[0]] == ["demo"]
    assert library.trained_choices(svc)["choices"] == []
    assert library.loss_figure(svc, None) is None


def test_compare_shows_each_model_with_its_quality(lib):
    svc, _ = lib
    models, clips = compare.options(svc, "demo")
    assert models["value"] == ["dsp"] and clips["value"] == "(none)" and "kick/kick_00.wav" in clips["choices"]
    out = compare.run(svc, "demo", ["dsp"], "pca", "2D", "kick/kick_00.wav")
    assert out[0].startswith("| model | trustworthiness") and "| dsp | 0." in out[0]
    assert out[1]["n"] == 19 and len(out[1]["highlight_idx"]) == 1 and out[2] == out[3] == {"message": ""}
    assert compare.run(svc, "demo", [], "pca", "2D")[0] == "Choose 2 or 3 models."
    assert compare.run(svc, None, ["dsp"], "pca", "2D")[0] == EMPTY


def test_api_functions_return_json_with_file_not_path(lib):
    svc, folder = lib
    assert api.list_libraries(svc)[0]["counts"] == {"dsp": 19}
    hits = api.search_file(svc, "demo", "dsp", str(folder / "kick" / "kick_00.wav"), 3)
    assert hits[0]["file"] == "kick/kick_00.wav" and "path" not in hits[0] and hits[0]["score"] > 0.999
    again = api.search_by_id(svc, "demo", "dsp", hits[0]["id"], 2)
    assert again[0]["id"] == hits[0]["id"] and len(again) == 2
    doc = api.map_coordinates(svc, "demo", "dsp", "pca", 2, 0)
    assert doc["n"] == 19 and {"id", "x", "y", "file", "label"} <= set(doc["points"][0])
    st = api.class_stats(svc, "demo", "dsp", 3)
    json.dumps(st)  # hits inside are plain dicts
    assert st["counts"] == {"hihat": 4, "kick": 4, "pad": 5, "voice": 4}
    assert all("file" in h for h in st["typical"]["kick"])


def test_api_tag_clips_writes_tags_and_labels(lib):
    svc, _ = lib
    ids = [h["id"] for h in api.search_by_id(svc, "demo", "dsp", api.search_by_id(svc, "demo", "dsp",
           svc.vectors.read("demo", "dsp")[0][0], 1)[0]["id"], 2)]
    out = api.tag_clips(svc, "demo", ids, ["api-tag"], [], None)
    assert out == {"changed": 2, "clips": 2, "collections": 1, "missing": []}
    assert set(svc.curation.ids_where("demo", "dsp", tag="api-tag")) == set(ids)
    api.tag_clips(svc, "demo", ids, [], ["api-tag"], "")
    assert svc.curation.ids_where("demo", "dsp", tag="api-tag") == []


def test_hit_rows_escape_what_they_show():
    class H:
        id, score, path, label = "x\"><b>", 0.5, "<script>alert(1)</script>.wav", "<i>odd</i>"
        payload: dict = {}

    out = hits_html("lib<", [H()], title="<title>")
    assert "<script>" not in out and "<i>odd" not in out and "<title>" not in out
    assert "&lt;script&gt;" in out and "/audio/lib%3C/" in out


def readme_endpoints() -> list[str]:
    """The endpoints the README documents (its Programmatic API section)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Programmatic API", 1)[1].split("\n## ", 1)[0]
    first = section.split("```", 1)[0]
    return sorted(set(re.findall(r"`/([a-z_]+)`", first)))


def test_the_api_is_exactly_the_documented_endpoints(lib):
    from app.wiring import build_app

    svc, _ = lib
    info = build_app(svc).get_api_info()
    assert sorted(n.lstrip("/") for n in info["named_endpoints"]) == readme_endpoints() == sorted(api.ENDPOINTS)
    assert not info["unnamed_endpoints"]



def test_review_on_a_fully_labelled_library_says_why_its_queue_is_empty(demo_folder, tmp_path):
    from app.views import review

    folder = tmp_path / "lib"
    shutil.copytree(demo_folder, folder)
    for p in folder.glob("*.wav"):  # only clips in class folders: every clip has a label
        p.unlink()
    svc = Services(tmp_path / "data")
    assert svc.libs.index("all", folder=str(folder), models=["dsp"]).added > 0
    counts, card, rest, queue, pos, _fix, _cls, status = review.suggest(svc, "all", "dsp", "uncertain", None)
    assert queue == [] and 'data-unlabelled="0"' in counts
    assert "every clip has a label" in card and "press" not in card  # not "press Suggest labels" once more


def test_a_map_draw_overtaken_by_a_newer_one_of_its_page_shows_nothing(lib):
    """UMAP picked, then 3D at once: the slow first draw must not land on top of the second."""
    import threading
    import types

    import gradio as gr

    svc, _ = lib
    page, other = types.SimpleNamespace(session_hash="page-1"), types.SimpleNamespace(session_hash="page-2")
    real, entered, release = svc.maps.value, threading.Event(), threading.Event()

    def slow_first(library, model, method, dims, **kw):
        if dims == 2 and method == "umap":  # the first request: held until the second has answered
            entered.set()
            release.wait(30)
        return real(library, model, method, dims, **kw)

    svc.maps.value = slow_first
    try:
        first: list = []
        t = threading.Thread(target=lambda: first.append(maps.draw(svc, "demo", "dsp", "umap", "2D", "label",
                                                                   request=page)))
        t.start()
        assert entered.wait(30)
        second = maps.draw(svc, "demo", "dsp", "umap", "3D", "label", request=page)
        elsewhere = maps.draw(svc, "demo", "dsp", "pca", "2D", "label", request=other)  # another page: no effect
        release.set()
        t.join(60)
    finally:
        svc.maps.value = real
    assert second[0]["dims"] == 3 and elsewhere[0]["dims"] == 2
    assert first == [(gr.skip(), gr.skip())]  # dropped: the page keeps the 3D map
    alone = maps.draw(svc, "demo", "dsp", "umap", "2D", "label", request=page)  # nothing newer: shown
    assert alone[0]["dims"] == 2
