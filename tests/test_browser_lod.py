"""A big map's level of detail in Chromium (threshold lowered to 10 points): a subset drawn over the
density image, drawn off-screen before Gradio mounted the map component (which adopted it), and a
click on the density (no drawn point there) plays the nearest clip of all."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, serving

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
        "--autoplay-policy=no-user-gesture-required"]

# the density cell with clips farthest from any drawn point, in pixels of the plot div
FAR_CELL = """() => { const gd = document.querySelector('#ae-map-main .ae-plot'); const fl = gd._fullLayout;
  const d = document.querySelector('#ae-map-main .ae-map').__aeState.pts.density; let best = null; const drawn = [];
  gd._fullData.forEach(t => t.x.forEach((x, i) => drawn.push([fl.xaxis.l2p(x), fl.yaxis.l2p(t.y[i])])));
  d.z.forEach((row, j) => row.forEach((c, i) => { if (!c) return;
    const px = fl.xaxis.l2p(d.x[i]), py = fl.yaxis.l2p(d.y[j]);
    const m = Math.min(...drawn.map(q => Math.hypot(q[0] - px, q[1] - py)));
    if (!best || m > best[2]) best = [px + fl._size.l, py + fl._size.t, m]; }));
  return best; }"""


def test_a_click_on_the_density_plays_the_nearest_hidden_clip(tmp_path, demo_folder):
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed: apt-get install chromium (scripts/setup.sh --test does it)")
    from playwright.sync_api import sync_playwright

    folder = tmp_path / "lib"
    shutil.copytree(demo_folder, folder)
    env = {**os.environ, "AUDIO_EXPLORER_DATA": str(tmp_path / "data"), "GRADIO_ANALYTICS_ENABLED": "False",
           "AUDIO_EXPLORER_MAP_LOD": "10,6"}
    subprocess.run([sys.executable, "app.py", "index", str(folder), "--library", "demo", "--models", "dsp"],
                   cwd=ROOT, env=env, check=True, capture_output=True, timeout=600)
    with serving(tmp_path, env) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        # Gradio's HTML component bundle held back until the map was drawn off-screen: the map component
        # then mounts after that draw, as it does on a loaded machine, and must adopt it
        held, released = [], []
        pg.route("**/assets/HTML-*.js", lambda route: route.continue_() if released else held.append(route))
        pg.goto(url + "/")
        pg.wait_for_selector(".ae-early .ae-map[data-rendered]", state="attached", timeout=120000)
        released.append(True)
        for route in held:
            route.continue_()
        pg.wait_for_selector("#ae-map-main .ae-map[data-painted]", timeout=120000)
        pg.wait_for_timeout(1500)
        got = pg.evaluate("""() => { const gd = document.querySelector('#ae-map-main .ae-plot');
            return {n: gd._fullData.filter(t => t.mode === 'markers').reduce((a, t) => a + t.x.length, 0),
                    images: (gd._fullLayout.images || []).length,
                    note: document.querySelector('#ae-map-main .ae-note').textContent}; }""")
        assert got["n"] == 6 and got["images"] == 1 and got["note"].startswith("drawing 6 of 18 points")
        # drawn before Gradio mounted the map component, off-screen, and adopted by it: drawn once, in its place
        ds = pg.evaluate("() => ({...document.querySelector('#ae-map-main .ae-map').dataset})")
        marks = pg.evaluate("() => Object.fromEntries(performance.getEntriesByType('mark').map(m => [m.name, m.startTime]))")
        assert ds.get("early") == "1" and ds.get("draws") == "1", ds
        assert marks["ae:draw-end"] < marks["ae:mount"] < marks["ae:painted"], marks
        assert pg.evaluate("() => !document.querySelector('.ae-early')")  # the stand-in is gone
        plot_w = pg.evaluate("() => { const gd = document.querySelector('#ae-map-main .ae-plot');"
                             " return [gd._fullLayout.width, gd.clientWidth]; }")
        assert abs(plot_w[0] - plot_w[1]) < 2  # drawn at (or resized to) its place's width
        drawn = pg.evaluate("() => document.querySelector('#ae-map-main .ae-map').__aeState.pts.path")
        pg.locator("#ae-map-main .ae-plot").scroll_into_view_if_needed()
        px, py, gap = pg.evaluate(FAR_CELL)
        assert gap > 20  # far from every drawn point: no point is under the click
        box = pg.locator("#ae-map-main .ae-plot").bounding_box()
        pg.mouse.click(box["x"] + px, box["y"] + py)
        pg.wait_for_function("() => document.querySelector('#ae-map-main .ae-map').dataset.playing", timeout=15000)
        playing = pg.evaluate("() => document.querySelector('#ae-map-main .ae-map').dataset.playing")
        assert playing not in drawn  # a clip the browser was never sent
        pg.wait_for_function("() => { const a = document.querySelector('#ae-map-main audio');"
                             " return a.currentTime > 0 || a.ended; }", timeout=15000)
        assert pg.evaluate("() => document.querySelector('#ae-map-main audio').src").endswith("/audio/demo/" + playing)
        pg.wait_for_selector(".ae-hit", timeout=30000)
        assert "Nearest to " + playing in pg.content()
        assert not errors
        browser.close()
