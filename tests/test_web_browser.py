"""The browser console in a real browser: Debian's headless Chromium, driven by selenium
through chromium-driver, against a real emulated daemon, guest and backend.

The canvas noVNC draws is compared pixel for pixel with `xend-vfb screenshot`; keys
typed and clicks made in the page are read back from the guest's `input.jsonl`.
"""

import base64
import hashlib
import io
import math
import os
import shutil
import tempfile

import pytest
from cryptography.hazmat.primitives import serialization
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.actions.action_builder import ActionBuilder
from selenium.webdriver.common.by import By

from tests.helpers_daemon import EXAMPLES, allConnected
from tests.helpers_rfb import BTN_LEFT, KEY_H, KEY_I
from tests.helpers_tls import issue, makeCA, writeCertDir
from tests.helpers_wait import waitUntil
from tests.helpers_web import Link, WsViewer

pytestmark = pytest.mark.timeout(240)

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def certificates():
    """A CA and a server certificate for localhost and 127.0.0.1, made here."""
    ca = makeCA()
    return ca, issue(ca, "localhost")


@pytest.fixture(scope="module")
def browser(certificates):
    """Headless Chromium with a fresh profile, as root needs it, trusting the server
    certificate of `certificates` (its key pinned: there is no CA store to add to)."""
    profile = tempfile.mkdtemp(prefix="xend-vfb-chromium-")
    server = certificates[1].cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    pin = base64.b64encode(hashlib.sha256(server).digest()).decode()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1024,800",
                 f"--user-data-dir={profile}", f"--ignore-certificate-errors-spki-list={pin}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def pageState(browser, *states):
    """Wait until the console page's state is one of `states`; (state, status text)."""
    def reached():
        bar = browser.find_element(By.ID, "bar")
        state = bar.get_attribute("data-state")
        return (state, browser.find_element(By.ID, "status").text) if state in states else None

    try:
        return waitUntil(reached, f"the console page to be {' or '.join(states)}")
    except AssertionError as e:
        bar = browser.find_element(By.ID, "bar")
        raise AssertionError(f"{e}; it is {bar.get_attribute('data-state')}: {bar.text}") \
            from None


def canvas(browser):
    """What noVNC's canvas shows, as an RGB image."""
    url = browser.execute_script(
        "return document.querySelector('#screen canvas').toDataURL('image/png')")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")


def screenshot(run, tmp_path, *args):
    path = tmp_path / "shot.png"
    run.cli("screenshot", "demo", str(path), *args)
    return Image.open(path).convert("RGB")


def inputSince(run, count):
    """The guest's input events after the first `count`."""
    return run.inputEvents(1)[count:]


def test_the_page_shows_the_guest_and_takes_its_input(demo, browser, tmp_path):
    link = Link.of(demo, "demo")
    browser.get(link.url)
    assert pageState(browser, "connected", "error") == ("connected", "Connected")
    assert browser.current_url == link.origin + "/console"  # the token left the address bar

    # Pixel for pixel what the display's screen holds (noVNC draws as updates arrive).
    waitUntil(lambda: canvas(browser).tobytes() == screenshot(demo, tmp_path).tobytes(),
              "the canvas to show the guest's screen")

    before = len(demo.inputEvents(1))
    ActionChains(browser).send_keys("hi").perform()
    keys = [(KEY_H, True), (KEY_H, False), (KEY_I, True), (KEY_I, False)]
    waitUntil(lambda: [(e["keycode"], e["pressed"]) for e in inputSince(demo, before)
                       if e["type"] == "key"] == keys, "the keys to reach the guest")

    before = len(demo.inputEvents(1))
    left, top, width, height = browser.execute_script(
        "const r = document.querySelector('#screen canvas').getBoundingClientRect();"
        "return [r.left, r.top, r.width, r.height];")
    assert (width, height) == (800, 600)
    # The pointer moves in whole CSS pixels; the canvas may start between two.
    actions = ActionBuilder(browser)
    actions.pointer_action.move_to_location(math.ceil(left) + 10, math.ceil(top) + 20)
    actions.pointer_action.click()
    actions.perform()
    click = [{"dev": "vkbd/0", "type": "pos", "abs_x": 10, "abs_y": 20, "rel_z": 0},
             {"dev": "vkbd/0", "type": "key", "keycode": BTN_LEFT, "pressed": True},
             {"dev": "vkbd/0", "type": "key", "keycode": BTN_LEFT, "pressed": False}]
    waitUntil(lambda: inputSince(demo, before)[-3:] == click, "the click to reach the guest")
    assert link.token not in demo.log()


def test_a_used_or_missing_token_shows_an_error(demo, browser):
    link = Link.of(demo, "demo")
    WsViewer(link.open()).close()
    browser.get(link.url)
    state, text = pageState(browser, "connected", "error")
    assert state == "error"
    assert text.startswith("This console link is not valid: it was used already, has expired")
    assert "xend-vfb console-url DOM" in text

    browser.get(link.origin + "/console")
    assert pageState(browser, "connected", "error") == (
        "error", "This page needs a console link with its token. "
                 "Ask for a new link with: xend-vfb console-url DOM")


def test_the_display_password_is_still_asked(demo, browser):
    demo.cli("vfb-attach", "demo", "vnc=1,vncunused=1,vncpasswd=s3cret")
    waitUntil(lambda: allConnected(demo, "demo"), "the new display to connect")

    browser.get(Link.of(demo, "demo", "--devid", "1").url)
    assert pageState(browser, "password", "connected", "error")[0] == "password"
    browser.find_element(By.ID, "secret").send_keys("wrong\n")
    state, text = pageState(browser, "connected", "error")
    assert (state, text.split(":")[0]) == ("error", "The display refused the connection")

    browser.get(Link.of(demo, "demo", "--devid", "1").url)
    pageState(browser, "password")
    browser.find_element(By.ID, "secret").send_keys("s3cret\n")
    assert pageState(browser, "connected", "error")[0] == "connected"
    assert "s3cret" not in demo.log()


def test_with_tls_the_page_is_https(run, browser, certificates, tmp_path):
    certDir = writeCertDir(str(tmp_path / "vnc"), *certificates)
    run.env.update(XEND_VFB_VNC_TLS="1", XEND_VFB_VNC_X509_CERT_DIR=certDir)
    run.start()
    run.createConnected(os.path.join(EXAMPLES, "demo.cfg"), "demo")
    link = Link.of(run, "demo")
    assert link.url.startswith("https://127.0.0.1:")
    browser.get(link.url)
    assert pageState(browser, "connected", "error") == ("connected", "Connected")
    waitUntil(lambda: canvas(browser).tobytes() == screenshot(run, tmp_path).tobytes(),
              "the canvas to show the guest's screen")
