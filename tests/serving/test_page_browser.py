"""The page of `fsgr serve` in a real headless Chromium (Debian's chromium + chromedriver, driven by Selenium): upload
an image, see its caption, beams and concepts; upload a non-image, see the server's reason."""

from __future__ import annotations

import json
import shutil
import urllib.request

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
if CHROMIUM is None or DRIVER is None:
    pytest.skip("no chromium/chromedriver on PATH (Debian: apt-get install chromium chromium-driver; "
                "`make test` installs them)", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the test extra)")
pytest.importorskip("starlette", reason="the serve extra (pip install fsgr[serve]) is not installed")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1100,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=options)
    yield driver
    driver.quit()


def test_upload_an_image_and_see_the_caption(browser, server_url, real_data, tmp_path):
    photo = real_data / "COCO_val2014_000000391895.jpg"
    browser.get(server_url + "/")
    wait = WebDriverWait(browser, 60)
    wait.until(lambda d: d.find_element(By.ID, "status").text.startswith("ready"))
    assert browser.find_element(By.ID, "beam").get_attribute("value") == "3"        # the checkpoint's eval beam
    browser.find_element(By.ID, "file").send_keys(str(photo))
    wait.until(lambda d: d.find_element(By.ID, "caption").text.strip())
    shown = browser.find_element(By.ID, "caption").text
    beams = browser.find_elements(By.CSS_SELECTOR, "#beams li")
    concepts = browser.find_elements(By.CSS_SELECTOR, "#concepts li")
    assert "captioned in" in browser.find_element(By.ID, "status").text
    # what the page shows is what the API answers for the same file
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"p.jpg\"\r\n\r\n").encode() \
        + photo.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(server_url + "/api/caption", data=body,
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(req) as r:
        api = json.loads(r.read())
    assert shown == api["caption"] and len(beams) == len(api["beams"]) == 3
    assert beams[0].text.startswith(api["beams"][0]["caption"]) and len(concepts) == len(api["concepts"])
    # the canvas holds the photo (640x360) at its aspect ratio, 448 px wide
    size = browser.execute_script("const c = document.getElementById('view'); return [c.width, c.height];")
    assert size == [448, 252]
    shot = tmp_path / "page.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000


def test_a_bad_upload_shows_the_servers_reason(browser, server_url, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is text, not a JPEG")
    browser.get(server_url + "/")
    wait = WebDriverWait(browser, 60)
    wait.until(lambda d: d.find_element(By.ID, "status").text.startswith("ready"))
    browser.find_element(By.ID, "file").send_keys(str(bad))
    wait.until(lambda d: "error" in d.find_element(By.ID, "status").get_attribute("class"))
    assert "not an image" in browser.find_element(By.ID, "status").text
    assert browser.find_element(By.ID, "caption").text == ""


def test_sampling_controls_send_what_the_api_samples(browser, server_url, real_data):
    photo = real_data / "COCO_val2014_000000391895.jpg"
    browser.get(server_url + "/")
    wait = WebDriverWait(browser, 60)
    wait.until(lambda d: d.find_element(By.ID, "status").text.startswith("ready"))
    assert "fp32" in browser.find_element(By.ID, "status").text                   # the server's precision
    assert browser.find_element(By.ID, "temperature").get_attribute("disabled")    # a sampling field, off
    browser.find_element(By.ID, "do_sample").click()
    assert browser.find_element(By.ID, "beam").get_attribute("disabled")           # sampling has no beam
    for field, value in (("num_return_sequences", "3"), ("seed", "5")):
        box = browser.find_element(By.ID, field)
        box.clear()
        box.send_keys(value)
    browser.find_element(By.ID, "file").send_keys(str(photo))
    wait.until(lambda d: "sampled" in d.find_element(By.ID, "status").text)
    shown = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#beams li")]
    assert browser.find_element(By.ID, "beams_title").text.lower() == "samples"
    boundary = "b0undary"
    fields = "".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
                     for k, v in (("do_sample", "true"), ("num_return_sequences", "3"), ("seed", "5")))
    body = (fields + f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"p.jpg\"\r\n\r\n"
            ).encode() + photo.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(server_url + "/api/caption", data=body,
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(req) as r:
        api = json.loads(r.read())
    assert len(shown) == 3 and all(text.startswith(c["caption"]) for text, c in zip(shown, api["captions"]))
