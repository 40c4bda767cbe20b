"""The demo's agreement page is populated by its SIMULATED raters, and says so."""

from __future__ import annotations

import threading
import time

import pytest

from amgs.demo.run import Demo
from tests.web_helpers import ARTIFACTS, http, launch_chromium

pytestmark = [pytest.mark.slow, pytest.mark.browser]
playwright_api = pytest.importorskip("playwright.sync_api")


def test_demo_agreement_page_is_populated_and_labelled_simulated(tmp_path, scorer):
    lines: list[str] = []
    d = Demo(tmp_path, scorer, port=0, replay_s=12, variants=1, echo=lines.append)
    d.start()
    runner = threading.Thread(target=d.run, daemon=True)
    runner.start()
    try:
        base = d.url.rstrip("/")
        deadline = time.monotonic() + 240
        body = {}
        while time.monotonic() < deadline:
            _, _, body = http("GET", f"{base}/api/rating/agreement")
            if any("SIMULATED raters" in line for line in lines):  # printed once they are done
                _, _, body = http("GET", f"{base}/api/rating/agreement")
                break
            time.sleep(1)
        assert body.get("groups"), lines
        g = body["groups"][0]
        assert set(g["raters"]) == {"simulated-rater-1", "simulated-rater-2"}
        assert g["model_vs_human"]["icc_a1"]["n"] >= 20 and g["inter_rater"]["icc2"]["icc"] is not None
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        with playwright_api.sync_playwright() as p:
            b = launch_chromium(p)
            page = b.new_page(viewport={"width": 1300, "height": 1000})
            page.goto(f"{base}/agreement")
            page.wait_for_function("Number(document.body.dataset.ready || 0) >= 1")
            banner = page.inner_text("#a-simulated")
            assert "SIMULATED" in banner and "not by people" in banner
            page.screenshot(path=str(ARTIFACTS / "demo-agreement.png"), full_page=True)
            b.close()
    finally:
        d.stop()
        runner.join(10)
