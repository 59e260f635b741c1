"""The UI in a real browser: Debian's Chromium driven by Playwright against the served app.

Screenshots of each tab are saved under the test's temp dir (and under $AE_SCREENSHOTS if set)."""
import contextlib
import os
import shutil
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--autoplay-policy=no-user-gesture-required"]


@contextlib.contextmanager
def launch_chromium(args: list[str] = ARGS):
    """Debian's Chromium, headless, through Playwright; fails the test where it is not installed."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed: apt-get install chromium (scripts/setup.sh --test does it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=list(args))
        try:
            yield b
        finally:
            b.close()


def wait_ready(page, map_sel: str = "#ae-map-main", timeout: int = 120000) -> None:
    """The page is usable: the map is drawn (since the first map is prefetched, that can be before
    Gradio's load chain ran) and the library / model pickers hold their values."""
    page.wait_for_selector(f"{map_sel} .ae-map[data-rendered]", timeout=timeout)
    page.wait_for_function("() => ['#ae-library', '#ae-model'].every(s => { const i = document.querySelector("
                           "s + ' input'); return i && i.value; })", timeout=timeout)


@pytest.fixture(scope="module")
def page(served_app, tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed: apt-get install chromium (scripts/setup.sh --test does it)")
    from playwright.sync_api import sync_playwright

    url, _, _ = served_app
    shots = tmp_path_factory.mktemp("screenshots")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.goto(url + "/")
        wait_ready(pg)
        pg.wait_for_timeout(2500)  # let the load chain (selectors, colour options) settle
        pg.shots, pg.js_errors = shots, errors
        yield pg
        browser.close()
    keep = os.environ.get("AE_SCREENSHOTS")
    if keep:
        shutil.copytree(shots, keep, dirs_exist_ok=True)


def shot(page, name):
    page.screenshot(path=str(page.shots / f"{name}.png"), full_page=True)


def tab(page, name):
    page.get_by_role("tab", name=name).click()
    page.wait_for_timeout(500)


def dataset(page, sel):
    return page.evaluate(f"() => ({{...document.querySelector('{sel} .ae-map').dataset}})")


def test_map_renders_points(page):
    ds = dataset(page, "#ae-map-main")
    assert int(ds["nPoints"]) == 19
    # drawn once, from the points the page head fetched (/mapdefault) while Gradio loaded: the page's own
    # draw event returned the same map, which is not drawn again
    assert ds.get("prefetched") == "1" and ds.get("draws") == "1"
    n_drawn = page.evaluate("() => document.querySelector('#ae-map-main .ae-plot')._fullData"
                            ".filter(t => t.mode === 'markers').reduce((a, t) => a + t.x.length, 0)")
    assert n_drawn == 19
    legend = page.evaluate("() => [...document.querySelectorAll('#ae-map-main .legendtext')].map(e => e.textContent)")
    assert any(t.startswith("kick") for t in legend) and any("no label" in t for t in legend)
    shot(page, "1-map")


def click_centre_point(page, sel: str = "#ae-map-main") -> None:
    """Click the map's point nearest the centre of its plot until the map says it plays it."""
    page.locator(f"{sel} .ae-plot").scroll_into_view_if_needed()
    # the point nearest the centre of the plot area (pixel coordinates inside the plot div)
    xy = page.evaluate("""() => { const gd = document.querySelector('SEL .ae-plot'); const fl = gd._fullLayout;
        const cx = fl._size.l + fl._size.w / 2, cy = fl._size.t + fl._size.h / 2; let best = null;
        gd._fullData.forEach(t => t.x.forEach((x, i) => { const px = fl._size.l + fl.xaxis.l2p(x),
          py = fl._size.t + fl.yaxis.l2p(t.y[i]), d = (px - cx) ** 2 + (py - cy) ** 2;
          if (!best || d < best[2]) best = [px, py, d]; })); return best; }""".replace("SEL", sel))
    box = page.locator(f"{sel} .ae-plot").bounding_box()
    x, y = box["x"] + xy[0], box["y"] + xy[1]
    for attempt in range(4):  # WebGL picking needs the pointer to settle on the point first
        page.mouse.move(x - 3, y - 3)
        page.mouse.move(x, y, steps=4)
        page.wait_for_timeout(600)
        page.mouse.click(x, y)
        try:
            page.wait_for_function(f"() => document.querySelector('{sel} .ae-map').dataset.playing", timeout=4000)
            return
        except Exception:
            if attempt == 3:
                raise


def test_clicking_a_point_plays_it_and_lists_neighbours(page):
    click_centre_point(page)
    playing = dataset(page, "#ae-map-main")["playing"]
    try:
        page.wait_for_function("() => { const a = document.querySelector('#ae-map-main audio');"
                               " return a.currentTime > 0 || a.ended; }", timeout=10000)
    except Exception:
        state = page.evaluate("() => { const a = document.querySelector('#ae-map-main audio'); return {t: a.currentTime,"
                              " ended: a.ended, paused: a.paused, err: a.error && a.error.code, rs: a.readyState,"
                              " src: a.src}; }")
        raise AssertionError(f"audio did not play: {state}")
    src = page.evaluate("() => document.querySelector('#ae-map-main audio').src")
    assert src.endswith("/audio/demo/" + playing)
    page.wait_for_selector(".ae-hit", timeout=30000)
    assert "Nearest to " + playing in page.content()
    shot(page, "1-map-clicked")


def test_a_new_page_answers_a_click_before_its_load_events_ran(page):
    """The first map is drawn from the page head's prefetch, before Gradio's load events have run
    (the pickers are still empty then): a click at once still plays the clip and lists its neighbours."""
    pg = page.context.browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        held, released = [], []  # Gradio's queue held back: no load event (pickers' refresh, draw) runs meanwhile
        pg.route("**/gradio_api/queue/join*", lambda route: route.continue_() if released else held.append(route))
        pg.goto(page.url)
        pg.wait_for_selector("#ae-map-main .ae-map[data-rendered]", timeout=120000)
        assert dataset(pg, "#ae-map-main").get("prefetched") == "1"
        click_centre_point(pg)
        playing = dataset(pg, "#ae-map-main")["playing"]
        released.append(True)
        for route in held:  # the load events, then the click, as the browser sent them
            route.continue_()
        pg.wait_for_function("(p) => document.body.innerText.includes('Nearest to ' + p)", arg=playing, timeout=60000)
        assert "No library yet" not in pg.inner_text("#ae-map-main")
    finally:
        pg.close()


def test_playback_marker_follows_the_audio(page):
    tab(page, "Playback")
    assert "press Play" in page.inner_text("#ae-map-playback .ae-empty")  # before a first map: what to do
    page.locator("#ae-playback-file input").click()
    page.get_by_role("option", name="pad/sweep_long.wav").click()
    page.get_by_role("button", name="Play", exact=True).click()
    page.wait_for_function("() => { const d = document.querySelector('#ae-map-playback .ae-map').dataset;"
                           " return d.markerT && parseFloat(d.markerT) > 0.3; }", timeout=60000)
    a = dataset(page, "#ae-map-playback")
    page.wait_for_timeout(1200)
    b = dataset(page, "#ae-map-playback")
    assert float(b["markerT"]) > float(a["markerT"])
    assert (a["markerX"], a["markerY"]) != (b["markerX"], b["markerY"])
    # own points green, the rest grey
    names = page.evaluate("() => document.querySelector('#ae-map-playback .ae-plot')._fullData.map(t => t.name)")
    assert names[:2] == ["other clips", "this file"] and "now playing" in names
    # seeking moves the marker
    page.evaluate("() => { document.querySelector('#ae-map-playback audio').currentTime = 0.1; }")
    page.wait_for_timeout(300)
    c = dataset(page, "#ae-map-playback")
    assert float(c["markerT"]) < float(b["markerT"])
    shot(page, "2-playback")


def upload_query(page, path) -> None:
    """Put a file in the Search view's query box and wait until Gradio holds it (its player and Clear
    button are shown once the upload finished)."""
    clear = page.locator("#ae-search-audio button[aria-label='Clear']")
    if clear.count():
        clear.click()
        page.wait_for_selector("#ae-search-audio input[type=file]", state="attached", timeout=10000)
    page.set_input_files("#ae-search-audio input[type=file]", str(path))
    page.wait_for_selector("#ae-search-audio button[aria-label='Clear']", timeout=30000)
    page.wait_for_timeout(300)


def test_search_with_an_upload_returns_itself_first(page, served_app):
    _, _, folder = served_app
    tab(page, "Search")
    upload_query(page, folder / "voice" / "voice_02.wav")
    page.click("#ae-search-go")
    page.wait_for_selector("#ae-search-results .ae-hit", timeout=60000)
    first = page.locator("#ae-search-results .ae-hit").first
    assert first.get_attribute("data-path") == "voice/voice_02.wav"
    assert float(first.locator(".score").inner_text()) > 0.999
    shot(page, "3-search")


def _bars(hit):
    """{aspect: similarity} from a result row's bars (their titles carry 3 decimals)."""
    out = {}
    for cell in hit.locator(".ae-aspect").all():
        name, _, value = cell.get_attribute("title").rpartition(" similarity ")
        out[name] = (float(value), "off" in (cell.get_attribute("class") or ""))
    return out


def set_dials(page, values: dict[str, str]) -> None:
    """Type each dial's value into its number box; retyped until all hold for a while (Gradio mounts an
    accordion's children when it is first opened: a value typed into the first, still hidden, instance
    is shown for a moment and then lost)."""
    if not page.locator("#ae-dial-timbre input[type=number]").is_visible():
        page.click("#ae-search-aspects button")  # open the accordion
        page.wait_for_selector("#ae-dial-timbre input[type=number]", state="visible", timeout=10000)
    want = ",".join(values.values())
    read = ("(names) => names.map(n => document.querySelector(`#ae-dial-${n} input[type=range]`).value).join()")
    for _ in range(5):
        for name, value in values.items():
            box = page.locator(f"#ae-dial-{name} input[type=number]")
            box.fill(value)
            box.press("Enter")
        page.wait_for_timeout(700)
        if page.evaluate(read, list(values)) == want:
            return
    raise AssertionError(f"the dials did not take {values}: {page.evaluate(read, list(values))}")


def test_aspect_dials_steer_the_search_and_each_hit_shows_its_bars_and_why(page, served_app):
    _, _, folder = served_app
    tab(page, "Search")
    upload_query(page, folder / "kick" / "kick_01.wav")
    page.click("#ae-search-go")
    page.wait_for_selector("#ae-search-results .ae-hit", timeout=60000)
    plain = [h.get_attribute("data-path") for h in page.locator("#ae-search-results .ae-hit").all()]
    set_dials(page, {"deep": "0", "timbre": "0.5", "envelope": "1"})
    before = page.inner_text("#ae-search-results")
    page.click("#ae-search-go")
    page.wait_for_function("(b) => document.querySelector('#ae-search-results').innerText !== b", arg=before,
                           timeout=60000)
    page.wait_for_selector("#ae-search-results .ae-hit .ae-why", timeout=60000)
    hits = page.locator("#ae-search-results .ae-hit").all()
    assert len(hits) >= 5
    assert hits[0].get_attribute("data-path") == "kick/kick_01.wav"  # itself, under any dial
    for h in hits:
        bars = _bars(h)
        assert set(bars) == {"deep", "timbre", "spectrum", "pitch", "envelope"}
        assert bars["deep"][1] and bars["pitch"][1] and not bars["timbre"][1]  # dials at 0 are drawn faint
        expect = (0.5 * bars["timbre"][0] + bars["envelope"][0]) / 1.5
        assert float(h.locator(".score").inner_text()) == pytest.approx(expect, abs=2e-3)
        assert h.locator(".ae-why").inner_text().strip()
    steered = [h.get_attribute("data-path") for h in hits]
    assert steered != plain  # the dials changed the ranking
    shot(page, "3-search-steered")
    set_dials(page, {"deep": "1", "timbre": "0", "envelope": "0"})  # back to the plain search
    assert not page.js_errors


def test_bad_upload_shows_a_readable_error(page, tmp_path):
    tab(page, "Search")
    bad = tmp_path / "not_audio.wav"
    bad.write_text("this is a text file, not audio\n" * 40)
    upload_query(page, bad)
    page.click("#ae-search-go")
    page.wait_for_function("() => document.querySelector('#ae-search-results').innerText.includes('not an audio')",
                           timeout=30000)
    text = page.inner_text("#ae-search-results")
    assert "not_audio.wav: not an audio file" in text and "Traceback" not in text
    shot(page, "3-search-bad-upload")


def test_classes_shows_the_heatmap(page):
    tab(page, "Classes")
    page.get_by_role("button", name="Compute").click()
    page.wait_for_selector("#ae-heatmap .heatmaplayer, #ae-heatmap .hm", timeout=60000)
    assert "Overall agreement@5" in page.inner_text("body")
    shot(page, "4-classes")


def test_index_uploads_from_the_library_tab(page, served_app, tmp_path):
    _, _, folder = served_app
    tab(page, "Library")
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00")
    page.get_by_label("Library name (new or existing)").fill("uploads")
    page.set_input_files("#ae-upload input[type=file]",
                         [str(folder / "kick" / "kick_00.wav"), str(folder / "pad" / "pad_01.wav"), str(bad)])
    page.wait_for_timeout(1500)
    page.get_by_role("button", name="Index", exact=True).click()
    page.wait_for_function("() => document.querySelector('#ae-index-report').innerText.includes('added')",
                           timeout=120000)
    report = page.inner_text("#ae-index-report")
    assert "2 added" in report and "broken.wav" in report
    page.wait_for_function("() => document.querySelector('#ae-libraries').innerText.includes('uploads')",
                           timeout=30000)
    shot(page, "5-library-indexed")


def test_library_and_compare_tabs(page):
    tab(page, "Library")
    page.wait_for_selector("#ae-libraries", timeout=10000)
    assert "demo" in page.inner_text("#ae-libraries")
    shot(page, "5-library")
    tab(page, "Compare")
    page.get_by_role("button", name="Compare", exact=True).click()
    page.wait_for_selector("#ae-map-compare-1 .ae-map[data-rendered]", timeout=60000)
    assert "trustworthiness" in page.inner_text("body")
    # narrow panels keep their width for the points: the legend is in rows below them (beside, on the Map)
    legend = "(s) => document.querySelector(s + ' .ae-plot')._fullLayout.legend.orientation"
    assert page.evaluate(legend, "#ae-map-compare-1") == "h" and page.evaluate(legend, "#ae-map-main") == "v"
    shot(page, "6-compare")
    assert not page.js_errors, page.js_errors
