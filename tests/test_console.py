"""The operator console in real headless Chromium: upload -> overlay visible -> review saved."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import httpx
import pytest

pytest.importorskip("pytest_playwright", reason="pytest-playwright is not installed")

from xray.service import Settings, create_app
from xray.simulate.scenarios import simulate_scan

CHROMIUM = next((p for p in ("/usr/lib/chromium/chromium", "/usr/bin/chromium") if os.path.exists(p)), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install -y chromium); "
                             "browsers downloaded by `playwright install` are not used")
SCREENSHOT = Path("/tmp/console.png")


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    # The system's Chromium, never a browser downloaded by `playwright install`.
    return {**browser_type_launch_args, "executable_path": CHROMIUM}


@pytest.fixture(scope="session")
def base_url() -> None:
    # Each test gets its server's URL from `console`; this replaces pytest-base-url's fixture.
    return None


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1440, "height": 1100}}


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> list[dict[str, Path]]:
    """A few simulated 20-ft dual-energy scans as 16-bit PNGs with their manifests."""
    out = tmp_path_factory.mktemp("sim")
    scans = []
    for seed, scenario in ((11, "concealment"), (12, "clean"), (13, "undeclared")):
        sim = simulate_scan(seed, size="20ft", scenario=scenario)
        files = {"high": out / f"{sim.scan_id}_high.png", "low": out / f"{sim.scan_id}_low.png",
                 "manifest": out / f"{sim.scan_id}.json"}
        cv2.imwrite(str(files["high"]), sim.images[0])
        cv2.imwrite(str(files["low"]), sim.images[1])
        sim.manifest.save(files["manifest"])
        scans.append(files)
    return scans


@pytest.fixture(scope="module")
def console(tmp_path_factory, tiny_engine, live_server, simulated):
    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("console-data")), engine=tiny_engine)
    with live_server(app) as url:
        key = app.state.new_api_key
        for files in simulated[1:]:  # history for the recent list
            r = httpx.post(f"{url}/v1/inspections", headers={"X-API-Key": key},
                           files={"high": files["high"].open("rb"), "low": files["low"].open("rb")},
                           data={"manifest": files["manifest"].read_text()})
            assert r.status_code == 201
        yield url, key


def test_upload_review_and_filter_in_the_browser(console, simulated, page) -> None:
    url, key = console
    files = simulated[0]
    page.goto(url)
    page.fill("#api-key", key)
    page.click("#save-key")
    page.wait_for_selector("#recent li[data-id]")
    assert page.locator("#model-status").get_attribute("class") == "model ready"

    page.click("text=High + low energy")
    page.set_input_files("#high-file", str(files["high"]))
    page.set_input_files("#low-file", str(files["low"]))
    page.fill("#manifest-text", files["manifest"].read_text())  # pasted, not a file
    page.click("#inspect")

    # A function, not an expression string: the console's CSP forbids eval, which a string predicate needs.
    page.wait_for_function("() => document.querySelector('#overlay').naturalWidth > 0", timeout=20_000)
    overlay_width = page.evaluate("document.querySelector('#overlay').naturalWidth")
    assert overlay_width == cv2.imread(str(files["high"]), cv2.IMREAD_UNCHANGED).shape[1]
    assert page.locator("#overlay").is_visible()
    badge = page.inner_text("#channel-badge")
    assert badge in ("GREEN", "YELLOW", "RED")
    assert page.locator("#goods-table tbody tr").count() >= 1
    assert "model" in page.inner_text("#timings")
    inspection_id = page.evaluate("location.hash.slice(1)")

    page.fill("#reviewer", "officer 7")
    page.fill("#review-note", "organic block behind the declared goods")
    page.click(".btn.override[data-channel=red]")
    page.wait_for_selector("#review-status .ok")
    assert "override" in page.inner_text("#review-status")

    saved = httpx.get(f"{url}/v1/inspections/{inspection_id}", headers={"X-API-Key": key}).json()
    assert saved["review"]["decision"] == "override" and saved["review"]["channel"] == "red"
    assert saved["review"]["reviewer"] == "officer 7"
    assert saved["review"]["note"] == "organic block behind the declared goods"
    assert saved["scan_id"] == files["high"].name.removesuffix("_high.png")

    # The channel filter: the list shows only inspections of that channel.
    page.click(f"#filters .chip[data-filter={saved['channel']}]")
    page.wait_for_selector(f"#recent li[data-id='{inspection_id}']")
    classes = page.eval_on_selector_all("#recent li .dot-ch", "els => els.map(e => e.className)")
    assert classes and all(saved["channel"] in c for c in classes)
    page.click("#filters .chip[data-filter='']")
    page.wait_for_selector("#recent li[data-id]")
    page.screenshot(path=str(SCREENSHOT), full_page=True)


def test_wrong_key_asks_for_the_key(console, page) -> None:
    url, _ = console
    page.goto(url)
    page.fill("#api-key", "xr_wrong")
    page.click("#save-key")
    page.wait_for_selector("#banner:not(.hidden)")
    assert "API key" in page.inner_text("#banner")
