"""Time from opening the app to a drawn map, in Chromium, for large libraries.

A synthetic library of N points (random 128-d vectors in 12 labelled clusters, written
straight into Qdrant) is served by the real app; headless Chromium opens the page and we
time until the Map tab's plot is on screen (the map component's `data-painted`: two animation
frames after Plotly's draw resolved), cold (map
fitted by the server) and warm (map from the cache). Also reported: the browser-side draw
time alone (Plotly WebGL), the size of the points JSON, and how long the next frame takes
after a hover (does the page stay responsive).

    python benchmarks/ui_map_load.py [--sizes 10000,50000,100000,1000000] [--keep DIR] [--opens 6]
        [--modes draw,off]

Each page open prints its breakdown, in seconds since the navigation started (the page's own
performance marks): 'head' the first map's fetches start (app/static/mapearly.js), 'data' its
points are in the page, 'plotly' plotly.js has run, 'draw'/'drawn' Plotly's draw started/ended,
'mounted' Gradio mounted the map component, 'painted' the map is on screen in it (two animation
frames after its draw, or after the component adopted the map drawn off-screen).
--modes measures the page's early-map modes (app/assets.py early_mode) in the same run, one server
each (on a copy of the library), their page opens interleaved: 'draw' (default: drawn off-screen before Gradio mounts), 'fetch' (fetched
from the first bytes, drawn at mount), 'off' (fetched once Gradio's head is in, drawn at mount: the
baseline, as before).

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
# the page's own timestamps (ms since navigation start): marks of app/static/mapearly.js and mapview.js
MARKS = """() => { const m = {}; for (const e of performance.getEntriesByType('mark'))
  if (e.name.startsWith('ae:') && !(e.name in m)) m[e.name.slice(3)] = Math.round(e.startTime); return m; }"""


def runs(opens: int) -> list[tuple[str, bool]]:
    """Page opens: the server's first page, first visits by new browser profiles, a return visit."""
    return [("cold", True)] + [("warm", True)] * max(0, opens - 2) + [("return", False)]


def measure(data: Path, settle: float = 0.0, lod_cap: int | None = None, modes: tuple[str, ...] = ("draw",),
            opens: int = 4) -> list[dict]:
    """Serve the app (one server per early-map mode, each on its own copy of the library: a Qdrant
    Edge shard has one owner) and time page open -> drawn map, the modes' page opens interleaved
    (the same load for each): cold (the server's first page), warm (a first visit by a new browser
    profile, server warm), return (a second visit in the same profile: HTTP cache and V8's code cache)."""
    import shutil

    from playwright.sync_api import sync_playwright

    servers = []
    for k, mode in enumerate(modes):
        copy = data if k == 0 else data.with_name(f"{data.name}-copy{k}")
        if k and not copy.exists():
            shutil.copytree(data, copy)
        port = free_port()
        env = {**os.environ, "AUDIO_EXPLORER_DATA": str(copy), "AUDIO_EXPLORER_MAP_EARLY": mode}
        if lod_cap:
            env["AUDIO_EXPLORER_MAP_LOD"] = f"150000,{lod_cap}"
        proc = subprocess.Popen([sys.executable, "app.py", "serve", "--no-demo", "--port", str(port)], cwd=ROOT,
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        servers.append({"mode": mode, "proc": proc, "url": f"http://127.0.0.1:{port}/", "copy": copy, "ctx": None})
    for srv in servers:
        for _ in range(360):
            try:
                urllib.request.urlopen(srv["url"], timeout=2)
                break
            except Exception:
                time.sleep(0.5)
    time.sleep(settle)  # let the server's prewarm (vector read, map, quality) finish first
    out = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=ARGS)
            for run, fresh in runs(opens):
                for srv in servers:
                    if fresh or srv["ctx"] is None:
                        if srv["ctx"] is not None:
                            srv["ctx"].close()
                        srv["ctx"] = browser.new_context(viewport={"width": 1400, "height": 1000})
                    out.append({"mode": srv["mode"], **open_page(srv["ctx"], srv["url"], run)})
            for srv in servers:
                srv["ctx"].close()
            browser.close()
    finally:
        for srv in servers:
            srv["proc"].terminate()
            srv["proc"].wait(timeout=30)
            if srv["copy"] != data:
                shutil.rmtree(srv["copy"], ignore_errors=True)
    return out


def open_page(ctx, url: str, run: str) -> dict:
    """One page open in `ctx`: the time to the painted map and the page's own breakdown."""
    pg = ctx.new_page()
    t0 = time.perf_counter()
    pg.goto(url)
    pg.wait_for_selector("#ae-map-main .ae-map[data-painted]", timeout=600000)
    total = time.perf_counter() - t0
    ds = pg.evaluate("() => ({...document.querySelector('#ae-map-main .ae-map').dataset})")
    marks = pg.evaluate(MARKS)
    t1 = time.perf_counter()  # responsiveness: a hover after the draw
    pg.mouse.move(700, 700)
    pg.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    frame = time.perf_counter() - t1
    kb = pg.evaluate("() => performance.getEntriesByType('resource').filter(e => "
                     "(e.name.includes('/mapdata/') || e.name.includes('/mapdefault'))).map(e => e.encodedBodySize).pop() || 0") / 1000
    ms = lambda k: int(ds.get(k, -1))  # noqa: E731
    pg.close()
    return {"run": run, "total_s": total, "marks": marks, "early": ds.get("early") == "1",
            "resized": ms("resized") > 0, "draw_ms": int(ds["drawMs"]), "mount_ms": ms("mountAt"),
            "prefetch_ms": ms("prefetchAt"), "react_ms": ms("reactAt"), "paint_ms": ms("paintMs"),
            "draws": ms("draws"), "points": int(ds["nPoints"]), "frame_after_s": frame, "json_kb": kb}


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
    ap.add_argument("--opens", type=int, default=6, help="page opens per server: cold, warm..., return (>= 2)")
    ap.add_argument("--modes", default="draw",
                    help="early-map modes to measure, one server each, page opens interleaved (draw, fetch, off; "
                         "'off' is the baseline)")
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
                modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
                for r in measure(data, args.settle, cap, modes, args.opens):
                    rows.append({"n": n, "build_s": build_s, "cap": cap, **r})
    if not rows:
        return
    small = [r["total_s"] for r in rows if r["n"] == rows[0]["n"] and r["run"] != "cold" and r["mode"] == rows[0]["mode"]]
    base = sum(small) / len(small)
    print(f"\nload average at the start: {LOAD0:.1f}")
    print(f"\nmap load in headless Chromium (software WebGL), PCA 2D, {os.cpu_count()} cores; goal <= 3 s at 50k, "
          f"<= 5 s at 1M (above 150k a subset is drawn over a density image); first page {args.settle:.0f} s after "
          f"the server answered; times in s since the navigation started\n")
    cols = ("head", "data", "plotly", "draw-start", "draw-end", "mount", "painted")
    print(f"{'points':>8s} {'cap':>5s} {'drawn':>7s} {'mode':>6s} {'run':>6s} {'open->shown':>11s} "
          + " ".join(f"{c:>10s}" for c in cols)
          + f" {'draw ms':>8s} {'early':>6s} {'next frame':>10s} {f'vs {rows[0][chr(110)]:,}':>10s} {'JSON MB':>8s}")
    for r in rows:
        m = r["marks"]
        print(f"{r['n']:8d} {str(r['cap'] or 'app'):>5s} {r['points']:7d} {r['mode']:>6s} {r['run']:>6s} {r['total_s']:11.2f} "
              + " ".join(f"{m[c] / 1000:10.2f}" if c in m else f"{'-':>10s}" for c in cols)
              + f" {r['draw_ms']:8d} {('yes' if r['early'] else 'no') + ('*' if r['resized'] else ''):>6s} "
              f"{r['frame_after_s']:10.3f} {r['total_s'] / base:10.2f} {r['json_kb'] / 1000:8.2f}")
    print("\nopen -> shown over the page opens after the server's first (warm and return):")
    print(f"{'points':>8s} {'mode':>6s} {'opens':>6s} {'median s':>9s} {'min s':>7s} {'max s':>7s} {'<= 5 s':>7s} "
          f"{'median mount':>13s} {'median mount->painted':>22s}")
    import statistics

    for key in dict.fromkeys((r["n"], r["mode"]) for r in rows):
        sel = [r for r in rows if (r["n"], r["mode"]) == key and r["run"] != "cold"]
        if not sel:
            continue
        t = [r["total_s"] for r in sel]
        mounts = [r["marks"]["mount"] / 1000 for r in sel if "mount" in r["marks"]]
        gaps = [(r["marks"]["painted"] - r["marks"]["mount"]) / 1000 for r in sel if {"mount", "painted"} <= set(r["marks"])]
        med = lambda v: f"{statistics.median(v):.2f}" if v else "-"  # noqa: E731
        print(f"{key[0]:8d} {key[1]:>6s} {len(t):6d} {statistics.median(t):9.2f} {min(t):7.2f} {max(t):7.2f} "
              f"{sum(x <= 5 for x in t):4d}/{len(t):<2d} {med(mounts):>13s} {med(gaps):>22s}")
    print(f"\nload average: {os.getloadavg()[0]:.1f} at the end; 'early' yes: drawn off-screen before Gradio mounted and "
          f"adopted by the map component (* resized to its place); 'open->shown' is Playwright's goto -> painted")


if __name__ == "__main__":
    main()
