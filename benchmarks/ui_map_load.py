"""Time from opening the app to a drawn map, in Chromium, for large libraries.

A synthetic library of N points (random 128-d vectors in 12 labelled clusters, written
straight into Qdrant) is served by the real app; headless Chromium opens the page and we
time until the Map tab's plot is on screen (the map component's `data-painted`: two animation
frames after Plotly's draw resolved), cold (map
fitted by the server) and warm (map from the cache). Also reported: the browser-side draw
time alone (Plotly WebGL), the size of the points JSON, and how long the next frame takes
after a hover (does the page stay responsive).

    python benchmarks/ui_map_load.py [--sizes 10000,50000,100000,1000000] [--keep DIR]

Above 150k points (app/services/maps.py LOD_THRESHOLD) the map draws a <=50k subset stratified
over a grid of the map plus a density image of the rest: 'drawn' is what the browser drew.
With --keep the libraries (and the server's map cache) stay under DIR for the next run: a
second run's 'cold' then starts from a cached map (and its quality numbers).
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def build_library(data: Path, n: int, dim: int = 128, classes: int = 12) -> None:
    """N points in `classes` clusters straight into Qdrant, with a library record."""
    import index
    from index.libraries import Library, save_library

    store = index.open_store(data)
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((classes, dim)).astype(np.float32)
    coll = index.collection_name("big", "bench")
    store.create_collection(coll, dim, indexes={"label": "keyword", "path": "keyword"})
    step = 5000
    for a in range(0, n, step):
        b = min(n, a + step)
        lab = rng.integers(0, classes, b - a)
        X = centres[lab] + 0.6 * rng.standard_normal((b - a, dim)).astype(np.float32)
        X /= np.linalg.norm(X, axis=1, keepdims=True)
        ids = [index.point_id(f"{i:040x}") for i in range(a, b)]
        pays = [{"path": f"class_{l:02d}/clip_{i:06d}.wav", "label": f"class_{l:02d}", "file_id": pid,
                 "duration_s": 1.0} for i, l, pid in zip(range(a, b), lab, ids)]
        store.upsert(coll, ids, X, pays)
    save_library(store, Library(name="big", root=str(data / "audio"), models=["bench"]))
    store.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LOAD0 = 0.0
RUNS = (("cold", True), ("warm", True), ("warm", True), ("return", False))


def measure(data: Path, settle: float = 0.0, lod_cap: int | None = None) -> list[dict]:
    """Serve the app and time page open -> drawn map: cold (the server's first page), warm (a
    first visit by a new browser profile, server warm), return (a second visit in the same
    profile: HTTP cache and V8's code cache)."""
    from playwright.sync_api import sync_playwright

    port = free_port()
    env = {**os.environ, "AUDIO_EXPLORER_DATA": str(data)}
    if lod_cap:
        env["AUDIO_EXPLORER_MAP_LOD"] = f"150000,{lod_cap}"
    proc = subprocess.Popen([sys.executable, "app.py", "serve", "--no-demo", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    for _ in range(360):
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except Exception:
            time.sleep(0.5)
    time.sleep(settle)  # let the server's prewarm (vector read, map, quality) finish first
    out = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=ARGS)
            ctx = None
            for run, fresh in RUNS:
                if fresh or ctx is None:
                    if ctx is not None:
                        ctx.close()
                    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
                pg = ctx.new_page()
                t0 = time.perf_counter()
                pg.goto(url)
                pg.wait_for_selector("#ae-map-main .ae-map[data-painted]", timeout=600000)
                total = time.perf_counter() - t0
                ds = pg.evaluate("() => ({...document.querySelector('#ae-map-main .ae-map').dataset})")
                t1 = time.perf_counter()  # responsiveness: a hover after the draw
                pg.mouse.move(700, 700)
                pg.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
                frame = time.perf_counter() - t1
                kb = pg.evaluate("() => performance.getEntriesByType('resource').filter(e => "
                                 "(e.name.includes('/mapdata/') || e.name.includes('/mapdefault'))).map(e => e.encodedBodySize).pop() || 0") / 1000
                ms = lambda k: int(ds.get(k, -1))  # noqa: E731
                out.append({"run": run, "total_s": total, "draw_ms": int(ds["drawMs"]), "mount_ms": ms("mountAt"),
                            "prefetch_ms": ms("prefetchAt"), "react_ms": ms("reactAt"), "paint_ms": ms("paintMs"),
                            "draws": ms("draws"),
                            "points": int(ds["nPoints"]), "frame_after_s": frame, "json_kb": kb})
                pg.close()
            ctx.close()
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,50000,100000")
    ap.add_argument("--keep", type=Path, default=None,
                    help="keep each size's library under KEEP/N and reuse it when there (a 1M build takes minutes)")
    ap.add_argument("--settle", type=float, default=0.0,
                    help="seconds to wait after the server answers before the first page ('cold' then means a "
                         "server that has read the vectors: a 1M read from Qdrant Edge takes ~25 s)")
    ap.add_argument("--caps", default="",
                    help="comma-separated drawn-point caps to measure each size above 150k with (default: the app's)")
    ap.add_argument("--build-only", action="store_true", help="build the libraries (with --keep), measure nothing")
    args = ap.parse_args()
    global LOAD0
    LOAD0 = os.getloadavg()[0]
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            data = (args.keep / str(n)) if args.keep else Path(tmp) / "data"
            t0 = time.perf_counter()
            if not (data / ".built").exists():
                build_library(data, n)
                (data / ".built").write_text(str(n))
            build_s = time.perf_counter() - t0
            if args.build_only:
                print(f"{n}: built in {build_s:.0f} s", file=sys.stderr)
                continue
            caps = [int(c) for c in args.caps.split(",") if c.strip()] if n > 150_000 else []
            for cap in caps or [None]:
                for r in measure(data, args.settle, cap):
                    rows.append({"n": n, "build_s": build_s, "cap": cap, **r})
    if not rows:
        return
    small = [r["total_s"] for r in rows if r["n"] == rows[0]["n"] and r["run"] != "cold"]
    base = sum(small) / len(small)
    print(f"\nload average at the start: {LOAD0:.1f}")
    print(f"\nmap load in headless Chromium (software WebGL), PCA 2D, {os.cpu_count()} cores; goal <= 3 s at 50k, "
          f"<= 5 s at 1M (above 150k a subset is drawn over a density image); first page {args.settle:.0f} s after "
          f"the server answered\n")
    print(f"{'points':>8s} {'cap':>7s} {'drawn':>8s} {'run':>6s} {'open->shown s':>14s} {'mounted s':>10s} "
          f"{'map data s':>11s} {'react at s':>11s} {'plotly draw ms':>15s} {'draw->painted ms':>17s} "
          f"{'next frame s':>13s} {f'vs {rows[0][chr(110)]:,} warm':>13s} {'JSON MB':>8s}")
    sec = lambda v: f"{v / 1000:.2f}" if v >= 0 else "-"  # noqa: E731
    for r in rows:
        print(f"{r['n']:8d} {str(r['cap'] or 'app'):>7s} {r['points']:8d} {r['run']:>6s} {r['total_s']:14.2f} "
              f"{sec(r['mount_ms']):>10s} {sec(r['prefetch_ms']):>11s} {sec(r['react_ms']):>11s} {r['draw_ms']:15d} "
              f"{r['paint_ms']:17d} {r['frame_after_s']:13.3f} {r['total_s'] / base:13.2f} {r['json_kb'] / 1000:8.2f}")
    print(f"\nload average: {os.getloadavg()[0]:.1f} at the end; 'map data': the first map's points in the page "
          f"(/mapdefault, fetched while Gradio loads); 'mounted': the map component's JS ran")


if __name__ == "__main__":
    main()
