"""End to end in a real browser: headless Chromium (Debian's ``chromium`` + ``chromium-driver``, installed by
``make chromium``) driven by Selenium against a live app. Without them these tests are reported as not run
(the summary line at the end of pytest's output says so), never silently passed."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import chromium_paths, report_browser_skip
from serve_tiny_runs import save_image
from test_server import free_port

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser(runs_dir, tmp_path_factory):
    """``(driver, url, screenshot folder)``: the app on a free port and a headless Chromium on it."""
    chromium, driver_path = chromium_paths()
    if not (chromium and driver_path):
        reason = "chromium / chromedriver not found (run `make chromium`, or apt-get install chromium chromium-driver)"
        report_browser_skip(reason)
        pytest.skip(reason)
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    from imaginate.serve.app import build_app, launch

    blocks, ctx = build_app(runs_dir, tmp_path_factory.mktemp("browser_work"), device="cpu")
    port = free_port()
    launch(blocks, "127.0.0.1", port, block=False)
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000",
                 "--enable-unsafe-swiftshader", "--disable-gpu"):
        options.add_argument(flag)
    options.binary_location = chromium
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    shots = tmp_path_factory.mktemp("screenshots")
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        yield driver, shots
    finally:
        driver.quit()
        blocks.close()


def _wait(driver, condition, seconds=60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds, poll_frequency=0.25).until(condition)


def _open_tab(driver, name):
    from selenium.webdriver.common.by import By

    tabs = _wait(driver, lambda d: [b for b in d.find_elements(By.CSS_SELECTOR, "button[role=tab]")
                                    if b.text.strip() == name])
    tabs[0].click()


def _upload(driver, elem_id, path):
    from selenium.webdriver.common.by import By

    for button in driver.find_elements(By.CSS_SELECTOR, f"#{elem_id} button[aria-label=Clear]"):
        button.click()
    field = _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, f"#{elem_id} input[type=file]"))[0]
    field.send_keys(str(path))
    _wait(driver, lambda d: path.stem in d.find_element(By.ID, elem_id).text)  # the page shows "one" ".png"


def test_classify_tab_upload_predict_and_bad_upload_message(browser, tmp_path):
    from selenium.webdriver.common.by import By

    driver, shots = browser
    _open_tab(driver, "classify")
    digit = np.zeros((96, 96))
    digit[12:84, 42:54] = 1.0
    _upload(driver, "classify-upload", save_image(tmp_path / "one.png", digit))
    driver.find_element(By.ID, "classify-run").click()
    _wait(driver, lambda d: "%" in d.find_element(By.ID, "classify-label").text)
    lines = driver.find_element(By.ID, "classify-label").text.splitlines()
    assert sum(line.endswith("%") for line in lines) == 5  # five classes with their probabilities
    image = _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#classify-seen img"))[0]
    _wait(driver, lambda d: image.get_attribute("naturalWidth") not in (None, "0"))
    assert image.get_attribute("naturalWidth") == "192"  # the network's 8x8 input, enlarged 24x
    driver.save_screenshot(str(shots / "classify.png"))

    (tmp_path / "bad.png").write_text("this is not an image")
    _upload(driver, "classify-upload", tmp_path / "bad.png")
    driver.find_element(By.ID, "classify-run").click()
    toast = _wait(driver, lambda d: [t for t in d.find_elements(By.CSS_SELECTOR, ".toast-body")
                                     if "not a readable image" in t.text])
    assert "Traceback" not in toast[0].text and "bad.png" in toast[0].text
    assert len(toast[0].text.splitlines()) <= 3  # "Error", the close mark, one line
    driver.save_screenshot(str(shots / "classify_bad_upload.png"))


def test_gan_tab_generates_a_grid(browser):
    from selenium.webdriver.common.by import By

    driver, shots = browser
    _open_tab(driver, "gan")
    _wait(driver, lambda d: d.find_element(By.ID, "gan-run").is_displayed())
    driver.find_element(By.ID, "gan-run").click()
    image = _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#gan-samples img"))[0]
    _wait(driver, lambda d: image.get_attribute("naturalWidth") not in (None, "0"))
    width, height = int(image.get_attribute("naturalWidth")), int(image.get_attribute("naturalHeight"))
    assert height > width  # 10 class rows of 8 samples: taller than wide
    driver.save_screenshot(str(shots / "gan.png"))


def test_lns_madam_tab_shows_the_energy_table(browser):
    from selenium.webdriver.common.by import By

    driver, shots = browser
    _open_tab(driver, "lns_madam")
    _wait(driver, lambda d: d.find_element(By.ID, "lns_madam-run").is_displayed())
    driver.find_element(By.ID, "lns_madam-run").click()
    _wait(driver, lambda d: "fp32" in d.find_element(By.ID, "lns_madam-table").text)
    table = driver.find_element(By.ID, "lns_madam-table").text
    assert "lns" in table and "x" in table
    assert "test_acc" in driver.find_element(By.ID, "lns_madam-summary").text
    driver.save_screenshot(str(shots / "lns_madam.png"))
