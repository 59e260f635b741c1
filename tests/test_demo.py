"""The first-run demo library: Sonic Pi's samples by category when the package is installed, the
synthetic set otherwise, indexed with the best models that are ready or downloadable."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import app.demo as demo
from app.services import Services
from app.services import library as library_service

SONIC_PI_NAMES = [
    "bd_haus", "bd_808", "drum_heavy_kick", "elec_soft_kick", "sn_dub", "drum_snare_hard", "elec_hi_snare",
    "drum_cymbal_closed", "drum_cymbal_open", "drum_cymbal_hard", "drum_splash_soft", "drum_tom_lo_hard",
    "tabla_na", "tabla_ghe1", "guit_em9", "loop_amen", "ambi_choir", "bass_hit_c", "elec_blip", "perc_snap",
    "vinyl_scratch", "misc_crow", "mehackit_robot1", "glitch_perc1",
]


def fake_sonic_pi(folder: Path, names=SONIC_PI_NAMES) -> Path:
    """Short clips named like Sonic Pi's samples (flac, as the package ships them)."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, name in enumerate(names):
        kind = list(demo.CLASSES)[i % len(demo.CLASSES)]
        sf.write(str(folder / f"{name}.flac"), demo.make_clip(kind, rng)[:8000], demo.SR)
    (folder / "README.md").write_text("not audio")
    return folder


def test_sonic_pi_file_names_give_categories():
    cat = demo.sonic_pi_category
    assert [cat(n) for n in ("bd_haus", "drum_heavy_kick", "drum_bass_soft", "elec_hollow_kick")] == ["kick"] * 4
    assert [cat(n) for n in ("sn_dub", "drum_snare_soft", "elec_snare", "elec_filt_snare")] == ["snare"] * 4
    assert [cat(n) for n in ("drum_cymbal_closed", "drum_cymbal_pedal", "drum_cymbal_open")] == ["hihat"] * 3
    assert [cat(n) for n in ("drum_cymbal_hard", "drum_splash_soft", "elec_cymbal")] == ["cymbal"] * 3
    assert cat("drum_tom_mid_soft") == cat("elec_fuzz_tom") == "tom"
    assert cat("drum_cowbell") == cat("perc_bell") == "percussion"
    assert cat("tabla_na_o") == "tabla" and cat("guit_e_slide") == "guitar" and cat("loop_amen_full") == "loop"
    assert cat("glitch_bass_g") == "bass" and cat("glitch_robot2") == cat("mehackit_robot3") == "robot"
    assert cat("elec_blip2") == "electronic" and cat("ambi_drone") == "ambient" and cat("vinyl_hiss") == "vinyl"
    assert cat("misc_burp") == cat("something_new") == demo.SONIC_PI_OTHER


def test_the_samples_are_copied_by_category_idempotently(tmp_path):
    src = fake_sonic_pi(tmp_path / "samples")
    out = tmp_path / "demo_audio"
    counts = demo.write_sonic_pi_library(out, source=src)
    assert sum(counts.values()) == len(SONIC_PI_NAMES) and counts["kick"] == 4 and counts["hihat"] == 2
    copied = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.flac"))
    assert "kick/bd_haus.flac" in copied and "tabla/tabla_na.flac" in copied and len(copied) == len(SONIC_PI_NAMES)
    assert not any(p.is_symlink() for p in out.rglob("*"))  # copies: the library root holds its files
    assert not list(out.rglob(".*.part")) and not (out / "README.md").exists()
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.flac")}
    assert demo.write_sonic_pi_library(out, source=src) == counts
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.flac")} == before
    capped = demo.write_sonic_pi_library(tmp_path / "capped", source=src, limit=len(counts))
    assert set(capped) == set(counts) and set(capped.values()) == {1}  # round-robin: every category keeps one


def test_without_the_package_the_synthetic_set_is_written(tmp_path):
    assert demo.write_sonic_pi_library(tmp_path / "x", source=tmp_path / "missing") is None
    few = fake_sonic_pi(tmp_path / "few", SONIC_PI_NAMES[:3])
    folder, source, counts = demo.write_demo_audio(tmp_path / "demo_audio", source=few)
    assert source == "synthetic" and set(counts) == set(demo.CLASSES) and (folder / "kick" / "kick_00.wav").is_file()


def test_ensure_demo_indexes_the_samples_with_the_best_models_first(tmp_path, monkeypatch, data_dir, capsys):
    monkeypatch.setattr(demo, "SONIC_PI_DIR", fake_sonic_pi(tmp_path / "samples"))
    monkeypatch.setattr(demo, "SONIC_PI_COPYRIGHT", tmp_path / "none")
    monkeypatch.setattr(library_service, "DEMO_MODELS", ("no-such-model", "dsp"))
    svc = Services(data_dir)
    lib = svc.libs.ensure_demo()
    assert lib.name == "demo" and lib.models == ["dsp"] and Path(lib.root) == (data_dir / "demo_audio").resolve()
    _ids, _vecs, pays = svc.vectors.read("demo", "dsp")
    assert len(pays) == len(SONIC_PI_NAMES)
    assert {p["label"] for p in pays} >= {"kick", "snare", "hihat", "tabla", "loop", "robot"}
    err = capsys.readouterr().err
    assert f"{len(SONIC_PI_NAMES)} sonic-pi clips" in err and f"indexed {len(SONIC_PI_NAMES)}/" in err
    assert svc.libs.ensure_demo() is None  # a library exists: nothing is built


def test_a_model_whose_weights_cannot_be_fetched_is_left_out(tmp_path, monkeypatch, data_dir):
    """On a Space the musicnn wheel is fetched on first use; when that fails the demo still appears."""
    import index
    from embedders.base import Availability

    monkeypatch.setattr(demo, "SONIC_PI_DIR", tmp_path / "missing")  # the synthetic set
    statuses = {"musicnn-msd": "downloadable", "vgg-msd": "unavailable", "dsp": "ready"}
    monkeypatch.setattr(index, "available_models", lambda data_dir=None: [
        Availability(n, "x", s, dim=1) for n, s in statuses.items()])
    real = index.index_folder
    calls = []

    def index_folder(store, library, folder, models, **kw):
        calls.append(list(models))
        if "musicnn-msd" in models:
            raise index.EmbedderError("could not fetch the musicnn weights with pip (offline)")
        return real(store, library, folder, models, **kw)

    monkeypatch.setattr(index, "index_folder", index_folder)
    lib = Services(data_dir).libs.ensure_demo(progress=lambda *a: None)
    assert calls == [["musicnn-msd", "dsp"], ["dsp"]] and lib.models == ["dsp"]


def test_demo_models_put_the_best_first():
    assert library_service.DEMO_MODELS[0] == "musicnn-msd" and "dsp" in library_service.DEMO_MODELS


@pytest.mark.skipif(not demo.sonic_pi_samples(), reason="Debian's sonic-pi-samples is not installed")
def test_the_installed_package_gives_a_real_demo(tmp_path):
    counts = demo.write_sonic_pi_library(tmp_path / "demo_audio")
    assert sum(counts.values()) >= 150 and len(counts) >= 12 and demo.SONIC_PI_OTHER in counts
    assert counts["kick"] >= 10 and counts["tabla"] >= 20
    assert (tmp_path / "demo_audio" / "COPYRIGHT-sonic-pi-samples.txt").is_file()
