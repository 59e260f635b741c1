"""The review queue in a real browser: suggest labels, accept two suggestions (one with the
button, one with the A key), skip one with N, and see the counts change; the map colours by the
suggestions afterwards."""
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT, serving
from tests.test_browser import launch_chromium, wait_ready

pytestmark = [pytest.mark.browser, pytest.mark.slow]
COUNTS = "#ae-review-counts .ae-review-counts"


@pytest.fixture(scope="module")
def review_app(tmp_path_factory, demo_folder):
    """Its own served app (the review edits labels: the shared app's library stays as it is), dsp only."""
    root = tmp_path_factory.mktemp("review")
    folder = root / "lib"
    shutil.copytree(demo_folder, folder)
    for kind in ("kick", "pad"):  # two more unlabelled clips
        src = sorted((folder / kind).glob("*.wav"))[-1]
        src.rename(folder / f"mystery_{kind}.wav")
    data = root / "data"
    env = {**os.environ, "AUDIO_EXPLORER_DATA": str(data), "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop("AUDIO_EXPLORER_MODE", None)
    subprocess.run([sys.executable, "app.py", "index", str(folder), "--library", "demo", "--models", "dsp"],
                   cwd=ROOT, env=env, check=True, capture_output=True, timeout=600)
    with serving(root, env) as url:
        yield url


@pytest.fixture(scope="module")
def browser(review_app):
    with launch_chromium() as b:
        yield b


def counts(page) -> tuple[int, int]:
    d = page.evaluate(f"() => {{ const e = document.querySelector('{COUNTS}');"
                      f" return e ? [+e.dataset.labelled, +e.dataset.suggested] : null; }}")
    return tuple(d) if d else None


def wait_counts(page, labelled: int) -> None:
    page.wait_for_function(f"() => {{ const e = document.querySelector('{COUNTS}');"
                           f" return e && +e.dataset.labelled === {labelled}; }}", timeout=60000)


def shown_id(page) -> str:
    return page.evaluate("() => document.querySelector('#ae-review-card .ae-review-item').dataset.id")


def test_accept_two_suggestions_and_see_the_counts_change(browser, review_app, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(review_app + "/")
    wait_ready(page)
    page.get_by_role("tab", name="Review").click()
    page.click("#ae-review-go")
    page.wait_for_selector(f"{COUNTS}", timeout=60000)
    page.wait_for_selector("#ae-review-card .ae-review-item", timeout=60000)
    labelled, suggested = counts(page)
    assert (labelled, suggested) == (14, 4)  # 4 classes x 4 clips, 2 moved to the root beside 2 unlabelled
    card = page.inner_text("#ae-review-card")
    assert "suggested:" in card and "confidence" in card
    assert page.locator("#ae-review-card audio").count() == 1 and page.locator("#ae-review-card img").count() == 1
    assert page.locator("#ae-review-queue li").count() == suggested - 1
    page.screenshot(path=str(tmp_path / "review.png"))

    first = shown_id(page)
    page.click("#ae-review-accept button, button#ae-review-accept")
    wait_counts(page, labelled + 1)
    assert counts(page) == (labelled + 1, suggested - 1)
    page.wait_for_function(f"() => document.querySelector('#ae-review-card .ae-review-item').dataset.id !== '{first}'",
                           timeout=30000)
    # N skips to the next clip; A accepts the one shown (keys act on the page, not in a text field)
    before = shown_id(page)
    page.locator("#ae-review-status").click()
    page.keyboard.press("n")
    page.wait_for_function(f"() => document.querySelector('#ae-review-card .ae-review-item').dataset.id !== '{before}'",
                           timeout=30000)
    page.keyboard.press("a")
    wait_counts(page, labelled + 2)
    assert counts(page) == (labelled + 2, suggested - 2)
    assert "accepted" in page.inner_text("#ae-review-status")
    # the map offers the suggestions as a colouring
    page.get_by_role("tab", name="Map").click()
    page.locator("#ae-color input").click()
    page.get_by_role("option", name="predicted label").click()
    # labelled clips in their label's colour, suggested ones with their confidence as opacity
    page.wait_for_function("""() => { const gd = document.querySelector('#ae-map-main .ae-plot');
        return gd && gd.data && gd.data.some(t => Array.isArray(t.marker.color) &&
            t.marker.color.some(c => /rgba\(.*,0\.(?!0*$)\d+\)$/.test(c) && !c.endsWith(',1.000)'))); }""",
                           timeout=60000)
    page.screenshot(path=str(tmp_path / "coloured-by-suggestion.png"))
    assert not errors, errors
