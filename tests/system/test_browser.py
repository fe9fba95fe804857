"""The page in a real headless Chromium, against the real proxy and TorchServe."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import requests

from petseg.archive import build_archive
from tests.support import images

SCREENSHOTS = Path(__file__).resolve().parents[2] / "logs" / "screenshots"


@pytest.fixture(scope="module")
def page_url(proxy):
    return f"{proxy}/"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.fail("Debian's chromium and chromium-driver are missing: run `make browser`")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        "--window-size=1280,1000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    yield driver
    driver.quit()


def rendered_size(driver, element_id: str) -> tuple[int, int]:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 60).until(
        lambda d: d.execute_script(
            "const i = document.getElementById(arguments[0]);"
            "return i.complete && i.naturalWidth > 0 && i.src.length > 0;",
            element_id,
        )
    )
    return tuple(
        driver.execute_script(
            "const i = document.getElementById(arguments[0]);"
            "return [i.naturalWidth, i.naturalHeight];",
            element_id,
        )
    )


def test_upload_shows_mask_and_overlay_at_the_image_size(browser, page_url, tmp_path):
    from selenium.webdriver.common.by import By

    photo = tmp_path / "photo.jpg"
    photo.write_bytes(images.jpeg(320, 240))
    browser.get(page_url)
    browser.find_element(By.ID, "file").send_keys(str(photo))
    assert rendered_size(browser, "mask") == (320, 240)
    assert rendered_size(browser, "overlay-mask") == (320, 240)
    assert rendered_size(browser, "original") == (320, 240)
    assert browser.find_element(By.ID, "latency").text.endswith("ms")
    assert browser.find_element(By.ID, "error").get_attribute("hidden") is not None
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / "page.png"))


def test_a_non_image_shows_a_clear_error(browser, page_url, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    junk = tmp_path / "notes.txt"
    junk.write_text("this is not a picture")
    browser.get(page_url)
    browser.find_element(By.ID, "file").send_keys(str(junk))
    error = browser.find_element(By.ID, "error")
    WebDriverWait(browser, 30).until(lambda d: error.is_displayed())
    assert "HTTP 415" in error.text and "not a supported image" in error.text
    browser.save_screenshot(str(SCREENSHOTS / "error.png"))


def test_the_status_page_shows_live_figures_for_operators(browser, web):
    from selenium.webdriver.common.by import By

    for size in ((320, 240), (200, 150), (500, 375)):
        photo = {"file": ("photo.jpg", images.jpeg(*size))}
        assert requests.post(f"{web.url}/api/segment", files=photo, timeout=60).ok
    browser.get(f"{web.operator_url}/status")
    figure = {e.get_attribute("id"): e.text for e in browser.find_elements(By.TAG_NAME, "dd")}
    assert float(figure["uploads-per-minute"]) > 0 and figure["p95"].endswith(" ms")
    assert figure["torchserve"] == "up" and figure["versions"] == "1.0"
    assert int(figure["ready-workers"].split(" of ")[0]) >= 1
    size = browser.get_window_size()
    browser.set_window_size(640, 480)
    browser.save_screenshot(str(SCREENSHOTS / "status.png"))
    browser.set_window_size(size["width"], size["height"])


def test_sample_button_segments_a_sample(browser, page_url):
    from selenium.webdriver.common.by import By

    browser.get(page_url)
    browser.find_element(By.CSS_SELECTOR, ".sample[data-src$='dog.jpg']").click()
    assert rendered_size(browser, "mask") == (285, 275)


def test_the_model_card_warns_that_the_model_only_knows_synthetic_pets(browser, page_url):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(page_url)
    summary = browser.find_element(By.ID, "model-summary")
    WebDriverWait(browser, 30).until(lambda d: summary.text)
    assert "petseg 1.0" in summary.text and "trained on synthetic" in summary.text
    notice = browser.find_element(By.ID, "synthetic-notice")
    assert notice.is_displayed() and "make train DATA=" in notice.text
    assert not browser.find_element(By.ID, "compare").is_displayed()  # one version only


@pytest.fixture
def second_version(server, tiny_export, tmp_path):
    """Version 2.0 of the model, registered beside 1.0: the tiny model with its last layer
    perturbed, so the two versions really disagree on some pixels."""
    import torch

    export = Path(shutil.copytree(tiny_export, tmp_path / "v2"))
    weights = torch.load(export / "weights.pt", weights_only=True)
    head = next(k for k in reversed(weights) if k.endswith("bias"))
    weights[head] = weights[head] + torch.tensor([0.0, 0.5, -0.5])[: len(weights[head])]
    torch.save(weights, export / "weights.pt")
    build_archive(export, server.model_store, name="petseg-compare", version="2.0")
    client = server.client()
    client.register("petseg-compare.mar", workers=1)
    try:
        yield "2.0"
    finally:
        client.unregister("2.0")


def test_two_versions_side_by_side_with_their_agreement(
    browser, page_url, second_version, tmp_path
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    photo = tmp_path / "photo.jpg"
    photo.write_bytes(images.jpeg(240, 180))
    browser.get(page_url)
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "compare").is_displayed())
    Select(browser.find_element(By.ID, "compare-version")).select_by_value(second_version)
    browser.find_element(By.ID, "file").send_keys(str(photo))
    assert rendered_size(browser, "mask-a") == rendered_size(browser, "mask-b") == (240, 180)
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "disagreement").text)
    assert browser.find_element(By.ID, "caption-b").text == "version 2.0"
    disagree = float(browser.find_element(By.ID, "disagreement").text.split(" %")[0])
    assert 0 < disagree < 100
    ious = [browser.find_element(By.ID, f"iou-{name}").text for name in ("background", "cat")]
    assert all(text == "n/a" or 0 <= float(text) <= 1 for text in ious) and ious != ["n/a"] * 2
    canvas = browser.execute_script(
        "const c = document.getElementById('difference'); return [c.width, c.height];"
    )
    assert canvas == [240, 180]
    browser.execute_script("document.getElementById('comparison').scrollIntoView()")
    browser.save_screenshot(str(SCREENSHOTS / "compare.png"))
