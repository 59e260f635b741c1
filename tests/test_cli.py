"""The command line as a user runs it: `python app.py <verb>` in a subprocess."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*args, data_dir, check=True, env=None):
    e = {**os.environ, **(env or {})}
    e.pop("AUDIO_EXPLORER_DATA", None)
    res = subprocess.run([sys.executable, "app.py", *args, "--data-dir", str(data_dir)], cwd=ROOT,
                         capture_output=True, text=True, env=e, timeout=600)
    if check:
        assert res.returncode == 0, res.stderr
    return res


def test_help_lists_verbs():
    res = subprocess.run([sys.executable, "app.py", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0
    for verb in ("serve", "index", "search", "models", "libraries", "project", "classes", "delete"):
        assert verb in res.stdout
    for verb in ("index", "search", "models", "libraries", "project", "classes", "delete", "serve"):
        r = subprocess.run([sys.executable, "app.py", verb, "--help"], cwd=ROOT, capture_output=True, text=True)
        assert r.returncode == 0 and "--data-dir" in r.stdout


def test_index_search_libraries_models(tmp_path, demo_folder):
    d = tmp_path / "data"
    res = run("index", str(demo_folder), "--library", "demo", "--models", "dsp", data_dir=d)
    assert res.stdout == ""  # data to stdout only when asked; progress goes to stderr
    assert "18 added" in res.stderr
    res = run("index", str(demo_folder), "--library", "demo", "--models", "dsp", "--json", data_dir=d)
    rep = json.loads(res.stdout)
    assert rep["added"] == 0 and rep["unchanged"] == 18

    q = demo_folder / "voice" / "voice_02.wav"
    hits = json.loads(run("search", "--library", "demo", "--model", "dsp", "--file", str(q), "-k", "5", "--json",
                          data_dir=d).stdout)
    assert len(hits) == 5 and set(hits[0]) >= {"id", "score", "path", "label"}
    assert hits[0]["path"] == "voice/voice_02.wav" and hits[0]["label"] == "voice"
    by_id = json.loads(run("search", "--library", "demo", "--model", "dsp", "--id", hits[0]["id"], "--json",
                           data_dir=d).stdout)
    assert by_id[0]["id"] == hits[0]["id"]

    libs = json.loads(run("libraries", "--json", data_dir=d).stdout)
    assert libs[0]["name"] == "demo" and libs[0]["counts"] == {"dsp": 18}
    models = {m["name"]: m for m in json.loads(run("models", "--json", data_dir=d).stdout)}
    assert models["dsp"]["status"] == "ready"
    table = run("models", data_dir=d).stdout
    assert "dsp" in table and "status" in table


@pytest.mark.parametrize("args,needle", [
    (["search", "--library", "nope", "--model", "dsp", "--id", "x"], "unknown library 'nope'"),
    (["index", "/definitely/not/here", "--library", "x"], "not a folder"),
    (["index", ".", "--library", "bad name"], "bad library name"),
    (["index", "tests", "--library", "x", "--models", "nope"], "unknown model 'nope'"),
])
def test_errors_are_one_line_and_nonzero(tmp_path, args, needle):
    res = run(*args, data_dir=tmp_path / "d", check=False)
    assert res.returncode == 1
    err = res.stderr.strip()
    assert err.startswith("error: ") and needle in err and "\n" not in err and "Traceback" not in err


def test_data_dir_env_var(tmp_path, demo_folder):
    d = tmp_path / "via-env"
    env = {**os.environ, "AUDIO_EXPLORER_DATA": str(d)}
    res = subprocess.run([sys.executable, "app.py", "index", str(demo_folder / "kick"), "--library", "k"],
                         cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr
    assert (d / "qdrant").is_dir()


def test_project_and_classes(tmp_path, demo_folder):
    d = tmp_path / "data"
    run("index", str(demo_folder), "--library", "demo", "--models", "dsp", "--no-thumbnails", data_dir=d)
    out = tmp_path / "map.json"
    res = run("project", "--library", "demo", "--model", "dsp", "--method", "pca", "--dims", "3", "--out", str(out),
              "--quality", data_dir=d)
    assert "wrote 18 points" in res.stderr
    doc = json.loads(out.read_text())
    assert doc["method"] == "pca" and doc["dims"] == 3 and doc["n"] == 18 and doc["cached"] is False
    p = doc["points"][0]
    assert {"id", "x", "y", "z", "path", "label"} <= set(p)
    assert 0 <= doc["quality"]["trustworthiness"] <= 1
    again = json.loads(run("project", "--library", "demo", "--model", "dsp", "--method", "pca", "--dims", "3",
                           data_dir=d).stdout)
    assert again["cached"] is True
    assert [q["x"] for q in again["points"]] == [q["x"] for q in doc["points"]]
    res = run("project", "--library", "demo", "--model", "dsp", "--method", "tsne", data_dir=d, check=False)
    assert res.returncode == 0, res.stderr  # 18 points are enough for t-SNE with a small perplexity

    st = json.loads(run("classes", "--library", "demo", "--model", "dsp", "-k", "3", "--json", data_dir=d).stdout)
    assert st["labels"] == ["hihat", "kick", "pad", "voice"] and st["n_labelled"] == 16
    assert st["counts"] == {"hihat": 4, "kick": 4, "pad": 4, "voice": 4}
    assert len(st["centroid_similarity"]) == 4 and all(len(r) == 4 for r in st["centroid_similarity"])
    assert 0 <= st["overall_agreement"] <= 1 and set(st["agreement"]) == set(st["labels"])
    table = run("classes", "--library", "demo", "--model", "dsp", data_dir=d).stdout
    assert "overall agreement@5" in table and "centroid cosine similarity" in table


@pytest.mark.slow  # long: the full suite (CI) runs it
def test_curation_verbs(tmp_path, demo_folder):
    """tag (by ids or --where), clusters, duplicates and export-selection, as the UI does them."""
    import zipfile

    d = tmp_path / "data"
    run("index", str(demo_folder), "--library", "demo", "--models", "dsp", "--no-thumbnails", data_dir=d)
    res = json.loads(run("tag", "--library", "demo", "--where", "label=kick", "--add", "keep", "--json",
                         data_dir=d).stdout)
    assert res["changed"] == 4 and res["collections"] == 1 and res["missing"] == []
    hits = json.loads(run("search", "--library", "demo", "--model", "dsp", "--file",
                          str(demo_folder / "pad" / "pad_00.wav"), "-k", "1", "--json", data_dir=d).stdout)
    res = run("tag", "--library", "demo", "--ids", hits[0]["id"], "--label", "soft pad", data_dir=d)
    assert "1 of 1 clips changed" in res.stderr
    st = json.loads(run("classes", "--library", "demo", "--model", "dsp", "--json", data_dir=d).stdout)
    assert st["counts"]["soft pad"] == 1 and st["counts"]["pad"] == 3

    cl = json.loads(run("clusters", "--library", "demo", "--model", "dsp", "--min-size", "3", "--json",
                        data_dir=d).stdout)
    assert sum(c["size"] for c in cl["clusters"]) == 18 and all({"id", "name", "size", "medoid_path", "ids"} <= set(c)
                                                                for c in cl["clusters"])
    first = next(c for c in cl["clusters"] if c["id"] != -1)
    assert first["medoid_id"] in first["ids"]
    table = run("clusters", "--library", "demo", "--model", "dsp", "--min-size", "3", data_dir=d).stdout
    assert table.splitlines()[0].split() == ["id", "name", "size", "medoid"]

    groups = json.loads(run("duplicates", "--library", "demo", "--model", "dsp", "--threshold", "0.95", "--json",
                            data_dir=d).stdout)
    assert groups and all(len(g["paths"]) == len(g["ids"]) >= 2 for g in groups)

    out = tmp_path / "keep.zip"
    res = run("export-selection", "--library", "demo", "--tag", "keep", "--out", str(out), data_dir=d)
    assert "wrote 4 files" in res.stderr
    with zipfile.ZipFile(out) as z:
        assert len([n for n in z.namelist() if n.startswith("audio/kick/")]) == 4
    folder = tmp_path / "cluster"
    run("export-selection", "--library", "demo", "--cluster", str(first["id"]), "--out", str(folder), data_dir=d)
    assert (folder / "manifest.csv").read_text().count("\n") == first["size"] + 1

    bad = run("tag", "--library", "demo", "--where", "label=nothing", "--add", "x", data_dir=d, check=False)
    assert bad.returncode == 1 and bad.stderr.strip() == "error: no clip matches --where"
    bad = run("tag", "--library", "demo", "--ids", "x", "--add", "", data_dir=d, check=False)
    assert bad.returncode == 1 and "a tag cannot be empty" in bad.stderr
