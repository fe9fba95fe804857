"""The page in a real headless Chromium, against the real proxy and TorchServe.

Each state of the page (the model still training, or its training failed; before any upload,
uploading, a result, an error, two versions compared or not, a narrow window) is checked for
what it shows and for what it must not show: a panel that CSS displays despite its ``hidden``
attribute is a failure, and so is any image on screen that has not loaded. In every state the
browser must report no Content-Security-Policy violation. Each state leaves a screenshot in
logs/screenshots/.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from model_training.progress import set_state, write
from tests.support import images
from tests.support.browser import chromium
from tests.support.stack import running_web
from tests.support.versions import SOME_PIXELS, perturbed_archive
from tests.support.web import offline_config

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "logs" / "screenshots"
README_SCREENSHOT = ROOT / "frontend_server" / "screenshot.png"
"""The picture README.md shows: rewritten by every run, so it cannot go stale."""
STATUS_SCREENSHOT = ROOT / "frontend_server" / "screenshot-status.png"
"""The status page as docs/monitoring.md shows it, rewritten by every run too."""
CAT = ROOT / "frontend_server" / "static" / "samples" / "cat.jpg"
CAT_SIZE = (379, 290)
WAIT_S = 60
"""Generous: two cores shared with other test runs."""

PANELS = (
    "training",
    "model-card",
    "synthetic-notice",
    "compare",
    "drop",
    "error",
    "results",
    "comparison",
    "agreement",
    "stats",
)
"""Every part of the page that a state shows or hides; a state names those it shows."""
CARD = {"model-card", "synthetic-notice", "drop"}
"""What the page shows before any upload when TorchServe serves one (synthetic) version."""
RESULT = CARD | {"results", "stats"}

CSP_LISTENER = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.cspViolations.push(
    `${event.violatedDirective} blocked ${event.blockedURI || "inline"}`
    + ` at ${event.sourceFile}:${event.lineNumber}`);
}, true);
"""
"""Runs in every document before the page's own code (Page.addScriptToEvaluateOnNewDocument)."""

PAGE_STATE = """
const shown = (el) => {
  const box = el.getBoundingClientRect();
  return el.checkVisibility({visibilityProperty: true}) && box.width > 0 && box.height > 0;
};
const controls = [...document.querySelectorAll("button, input[type=file]")];
return {
  panels: arguments[0].filter((id) => shown(document.getElementById(id))),
  unloaded: [...document.images]
    .filter((img) => shown(img) && !(img.complete && img.naturalWidth > 0))
    .map((img) => img.id || img.alt),
  status: document.getElementById("status").textContent,
  disabled: controls.filter((el) => el.disabled).length === controls.length,
};
"""

IMAGE_SIZE = """
const img = document.getElementById(arguments[0]);
return img.complete && img.naturalWidth > 0 ? [img.naturalWidth, img.naturalHeight] : null;
"""

HOLD_UPLOADS = """
if (!window.fetchNow) {
  window.fetchNow = window.fetch;
  window.fetch = async (url, init) => {
    if (String(url).startsWith("/api/segment")) await window.uploadGate;
    return window.fetchNow(url, init);
  };
}
window.uploadGate = new Promise((resolve) => { window.releaseUploads = resolve; });
"""
"""Holds the page's uploads until ``window.releaseUploads()``: the uploading state, caught
without racing the server."""

MODEL_CARD_ASKED = """
return performance.getEntriesByType("resource")
  .some((entry) => new URL(entry.name).pathname === "/api/model");
"""


@pytest.fixture(scope="module")
def page_url(proxy):
    return f"{proxy}/"


@pytest.fixture(scope="module")
def down_page_url(server, tmp_path_factory):
    """The page of a web app whose TorchServe is down: nothing listens, no key file."""
    with running_web(server, **offline_config(tmp_path_factory.mktemp("down"))) as web:
        yield f"{web.url}/"


TRAINING = {
    "state": "training",
    "detail": "epoch 3 of 12 done",
    "epoch": 3,
    "epochs": 12,
    "loss": 0.412,
    "val_miou": 0.531,
    "seconds_left": 425.0,
    "history": [
        {"epoch": 1, "loss": 0.93, "val_miou": 0.212},
        {"epoch": 2, "loss": 0.6, "val_miou": 0.404},
        {"epoch": 3, "loss": 0.412, "val_miou": 0.531},
    ],
}
"""A progress file three epochs into the demo's training (model_training.progress)."""


@pytest.fixture
def training_page(server, tmp_path) -> Iterator[tuple[str, Path]]:
    """(page URL, progress file) of a web app that waits for its model, as `petseg run
    --prepare` serves it meanwhile; the progress file, once it says ready, hands the page over
    to the session's TorchServe."""
    progress_file = tmp_path / "progress.json"
    write(progress_file, TRAINING)
    with running_web(server, PROGRESS_FILE=str(progress_file)) as web:
        yield f"{web.url}/", progress_file


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = chromium(tmp_path_factory.mktemp("chromium"), console=True)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": CSP_LISTENER})
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


@contextlib.contextmanager
def window_size(driver, width: int, height: int) -> Iterator[None]:
    """The browser window at ``width`` x ``height`` for a while (the viewport is smaller by
    the window's frame)."""
    before = driver.get_window_size()
    driver.set_window_size(width, height)
    try:
        yield
    finally:
        driver.set_window_size(before["width"], before["height"])


def wait_until(driver, condition, message: str) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, WAIT_S).until(condition, message)


def open_page(driver, url: str, card: bool = True) -> None:
    """Load the page and wait until its request for the model card has been answered (and,
    with ``card``, until the card shows): the page's state before any upload."""
    driver.get(url)
    wait_until(driver, lambda d: d.execute_script(MODEL_CARD_ASKED), "no GET /api/model")
    if card:
        wait_until(driver, lambda d: d.find_element("id", "model-summary").text, "no card")


def upload(driver, path: Path) -> None:
    driver.find_element("id", "file").send_keys(str(path))


def photo(tmp_path: Path, width: int, height: int) -> Path:
    path = tmp_path / f"photo-{width}x{height}.jpg"
    path.write_bytes(images.jpeg(width, height))
    return path


def wait_for_image(driver, element_id: str, size: tuple[int, int]) -> None:
    """Wait until the <img> shows a loaded picture of ``size``: the result of this upload,
    not an earlier one's."""
    wait_until(
        driver,
        lambda d: d.execute_script(IMAGE_SIZE, element_id) == list(size),
        f"#{element_id} never showed a loaded {size} picture",
    )


def csp_violations(driver) -> list[str]:
    """What the browser reported against the Content-Security-Policy since the last call: the
    page's ``securitypolicyviolation`` events and the console's messages."""
    caught = driver.execute_script(
        "return window.cspViolations ? window.cspViolations.splice(0) : ['no CSP listener'];"
    )
    logged = [
        entry["message"]
        for entry in driver.get_log("browser")
        if "Content Security Policy" in entry["message"]
    ]
    return caught + logged


@pytest.fixture(autouse=True)
def no_csp_violation_left(browser) -> Iterator[None]:
    """A violation no state check read (one after a test's last check, or in a test that
    failed before it) fails the test that caused it, not the next one."""
    yield
    assert csp_violations(browser) == []


def expect_page(driver, state: str, shown: set[str], status: str = "") -> None:
    """Assert that the page shows exactly the ``shown`` panels of ``PANELS`` (each of the
    others is hidden), that every image on screen has loaded, that the status line reads
    ``status`` (uploading: the controls are disabled) and that the browser reported no CSP
    violation. The screenshot ``state``.png is saved first, to look at when an assertion fails."""
    assert shown <= set(PANELS), shown - set(PANELS)
    driver.save_screenshot(str(SCREENSHOTS / f"{state}.png"))
    page = driver.execute_script(PAGE_STATE, PANELS)
    assert set(page["panels"]) == shown, state
    assert page["unloaded"] == [], f"{state}: images on screen without a picture"
    assert page["status"] == status, state
    assert page["disabled"] == bool(status), f"{state}: controls disabled while uploading only"
    assert csp_violations(driver) == [], state


def training_text(driver) -> dict[str, str]:
    """What the training panel says: its title, detail and figures."""
    names = ("title", "detail", "epoch", "loss", "miou", "left")
    return {name: driver.find_element("id", f"training-{name}").text for name in names}


def wait_for_title(driver, title: str) -> None:
    wait_until(driver, lambda d: training_text(d)["title"] == title, f"never {title!r}")


def test_while_the_model_trains_the_page_shows_its_progress_then_segments_by_itself(
    browser, training_page
):
    url, progress_file = training_page
    browser.get(url)
    wait_for_title(browser, "Training the demo model…")
    expect_page(browser, "training", {"training"})  # no upload, no card: no model yet
    assert training_text(browser) == {
        "title": "Training the demo model…",
        "detail": "epoch 3 of 12 done",
        "epoch": "3 of 12",
        "loss": "0.4120",
        "miou": "0.5310",
        "left": "7 min 5 s",
    }
    curve = "return document.getElementById(arguments[0]).getAttribute('points').split(' ')"
    assert len(browser.execute_script(curve, "curve-miou")) == 3  # one point per epoch
    assert len(browser.execute_script(curve, "curve-loss")) == 3
    box = "const b = document.getElementById('training-curve').getBoundingClientRect();"
    assert browser.execute_script(f"{box} return b.width > 0 && b.height > 0;")
    assert not browser.execute_script(MODEL_CARD_ASKED)

    set_state(progress_file, "starting", "starting TorchServe")
    wait_for_title(browser, "Getting the model ready…")
    expect_page(browser, "training-starting", {"training"})
    assert training_text(browser)["left"] == "–"

    set_state(progress_file, "ready", "TorchServe serves the model")  # no reload from here on
    wait_until(browser, lambda d: d.find_element("id", "model-summary").text, "no switch")
    expect_page(browser, "training-served", CARD)
    upload(browser, CAT)
    wait_for_image(browser, "mask", CAT_SIZE)
    expect_page(browser, "training-served-result", RESULT)


def test_a_failed_training_says_why_and_offers_no_upload(browser, training_page):
    url, progress_file = training_page
    set_state(progress_file, "failed", "RuntimeError: 'make archive' failed with exit status 2")
    browser.get(url)
    wait_for_title(browser, "The model could not be prepared")
    expect_page(browser, "training-failed", {"training"})
    assert training_text(browser)["detail"].endswith("failed with exit status 2")
    failed = "return document.getElementById('training').classList.contains('failed')"
    assert browser.execute_script(failed)
    assert not browser.execute_script(MODEL_CARD_ASKED)


def test_before_any_upload_the_page_offers_the_upload_and_the_model_card(browser, page_url):
    open_page(browser, page_url)
    expect_page(browser, "empty", CARD)  # one version: nothing to compare
    summary = browser.find_element("id", "model-summary").text
    assert "petseg 1.0" in summary and "trained on synthetic" in summary
    assert "make train DATA=" in browser.find_element("id", "synthetic-notice").text


def test_while_uploading_only_the_progress_shows(browser, page_url, tmp_path):
    open_page(browser, page_url)
    for state, size in (("uploading", (320, 240)), ("uploading-again", (200, 150))):
        browser.execute_script(HOLD_UPLOADS)
        upload(browser, photo(tmp_path, *size))
        wait_until(browser, lambda d: d.find_element("id", "status").text, "no progress shown")
        # The second time, the first result is hidden: it is not this upload's.
        expect_page(browser, state, CARD, status=f"Segmenting photo-{size[0]}x{size[1]}.jpg…")
        browser.execute_script("window.releaseUploads()")
        wait_for_image(browser, "mask", size)
        expect_page(browser, f"{state}-done", RESULT)


def test_a_result_shows_the_image_mask_overlay_and_figures(browser, page_url):
    from selenium.webdriver.common.keys import Keys

    open_page(browser, page_url)
    upload(browser, CAT)
    for image in ("original", "mask", "overlay-base", "overlay-mask"):
        wait_for_image(browser, image, CAT_SIZE)
    expect_page(browser, "result", RESULT)
    figures = {i: browser.find_element("id", i).text for i in ("foreground", "found", "model")}
    assert figures["foreground"].endswith(" %") and figures["found"]
    assert figures["model"] == "petseg 1.0"
    assert browser.find_element("id", "latency").text.endswith(" ms")
    with window_size(browser, 1280, 1150):  # tall enough for the figures and the footer
        browser.save_screenshot(str(README_SCREENSHOT))
    browser.find_element("id", "opacity").send_keys(Keys.END)  # the script styles the overlay
    opacity = "return getComputedStyle(document.getElementById('overlay-mask')).opacity"
    assert browser.execute_script(opacity) == "1"
    expect_page(browser, "result-opaque", RESULT)


def test_a_non_image_after_a_result_shows_only_the_error(browser, page_url, tmp_path):
    open_page(browser, page_url)
    upload(browser, photo(tmp_path, 320, 240))
    wait_for_image(browser, "mask", (320, 240))
    junk = tmp_path / "notes.txt"
    junk.write_text("this is not a picture")
    upload(browser, junk)
    error = browser.find_element("id", "error")
    wait_until(browser, lambda d: error.text, "no error shown")
    expect_page(browser, "error", CARD | {"error"})  # the last result is gone
    assert "HTTP 415" in error.text and "not a supported image" in error.text


def test_with_torchserve_down_only_the_upload_and_its_error_show(browser, down_page_url, tmp_path):
    open_page(browser, down_page_url, card=False)
    expect_page(browser, "down-empty", {"drop"})  # no card to show
    upload(browser, photo(tmp_path, 320, 240))
    error = browser.find_element("id", "error")
    wait_until(browser, lambda d: error.text, "no error shown")
    expect_page(browser, "down-error", {"drop", "error"})
    assert "HTTP 503" in error.text


def test_a_narrow_window_shows_the_same_panels_in_one_column(browser, page_url, tmp_path):
    with window_size(browser, 400, 900):
        open_page(browser, page_url)
        expect_page(browser, "narrow-empty", CARD)
        upload(browser, photo(tmp_path, 320, 240))
        wait_for_image(browser, "overlay-mask", (320, 240))
        browser.execute_script("document.getElementById('results').scrollIntoView()")
        expect_page(browser, "narrow-result", RESULT)
        width, overflow, lefts = browser.execute_script(
            "const root = document.documentElement;"
            "return [root.clientWidth, root.scrollWidth - root.clientWidth,"
            "  [...document.querySelectorAll('#results figure')]"
            "    .map((f) => f.getBoundingClientRect().left)];"
        )
    assert width <= 400 and overflow == 0  # nothing sticks out sideways
    assert len(set(lefts)) == 1 and len(lefts) == 3  # one column


def test_the_status_page_shows_operators_what_is_served(browser, web):
    from selenium.webdriver.common.by import By

    browser.get(f"{web.operator_url}/status")
    figure = {e.get_attribute("id"): e.text for e in browser.find_elements(By.TAG_NAME, "dd")}
    assert figure["served"] == "yes" and figure["torchserve"] == "up"
    assert re.match(r"1\.0 \(default\): [1-9]\d* of [1-9]\d*", figure["versions"])
    assert figure["serving-state"] == "served as declared"
    assert set(figure) == {"served", "torchserve", "versions", "serving-state"}
    layout = "return getComputedStyle(document.querySelector('dl')).display"
    assert browser.execute_script(layout) == "grid"  # its stylesheet applies
    assert csp_violations(browser) == []
    with window_size(browser, 640, 480):
        browser.save_screenshot(str(SCREENSHOTS / "status.png"))
        browser.save_screenshot(str(STATUS_SCREENSHOT))


def test_sample_button_segments_a_sample(browser, page_url):
    open_page(browser, page_url)
    browser.find_element("css selector", ".sample[data-src$='dog.jpg']").click()
    wait_for_image(browser, "mask", (285, 275))
    expect_page(browser, "sample", RESULT)


@pytest.fixture
def second_version(server, tiny_export, tmp_path):
    """Version 2.0 of the model, registered beside 1.0: the tiny model with its last layer
    perturbed, so the two versions really disagree on some pixels."""
    store = server.model_store
    perturbed_archive(tiny_export, store, tmp_path, "petseg-compare", "2.0", SOME_PIXELS)
    client = server.client()
    client.register("petseg-compare.mar", workers=1)
    try:
        yield "2.0"
    finally:
        client.unregister("2.0")


def test_two_versions_side_by_side_with_their_agreement_then_one_alone(
    browser, page_url, second_version, tmp_path
):
    from selenium.webdriver.support.ui import Select

    open_page(browser, page_url)
    offered = CARD | {"compare"}
    expect_page(browser, "compare-offered", offered)
    versions = Select(browser.find_element("id", "compare-version"))
    versions.select_by_value(second_version)
    upload(browser, photo(tmp_path, 240, 180))
    wait_for_image(browser, "mask-a", (240, 180))
    wait_for_image(browser, "mask-b", (240, 180))
    wait_until(browser, lambda d: d.find_element("id", "disagreement").text, "no disagreement")
    browser.execute_script("document.getElementById('comparison').scrollIntoView()")
    expect_page(browser, "compare-on", offered | RESULT | {"comparison", "agreement"})
    assert browser.find_element("id", "caption-b").text == "version 2.0"
    disagree = float(browser.find_element("id", "disagreement").text.split(" %")[0])
    assert 0 < disagree < 100
    ious = [browser.find_element("id", f"iou-{name}").text for name in ("background", "cat")]
    assert all(text == "n/a" or 0 <= float(text) <= 1 for text in ious) and ious != ["n/a"] * 2
    canvas = browser.execute_script(
        "const c = document.getElementById('difference'); return [c.width, c.height];"
    )
    assert canvas == [240, 180]

    versions.select_by_value("")  # compare with none: the comparison goes
    upload(browser, photo(tmp_path, 200, 150))
    wait_for_image(browser, "mask", (200, 150))
    expect_page(browser, "compare-off", offered | RESULT)
