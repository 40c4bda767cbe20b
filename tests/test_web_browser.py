"""The dashboard in real headless Chromium against the real demo stack (Mosquitto, collector, simulated
devices): every page loads, the charts hold the API's numbers and draw them, an alert is acknowledged
through the page. Screenshots go to test-artifacts/screenshots (printed at the end)."""

from __future__ import annotations

import threading
import time

import pytest

from amgs.demo.run import Demo
from tests.web_helpers import ARTIFACTS, http, launch_chromium

pytestmark = [pytest.mark.browser, pytest.mark.slow]
playwright_api = pytest.importorskip("playwright.sync_api")


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def demo(tmp_path_factory, scorer, request):
    lines: list[str] = []
    d = Demo(tmp_path_factory.mktemp("demo"), scorer, port=0, replay_s=12, variants=1, echo=lines.append)
    d.start()
    runner = threading.Thread(target=d.run, daemon=True)
    runner.start()
    base = d.url.rstrip("/")

    def c03_alert():
        _, _, alerts = http("GET", f"{base}/api/alerts?state=open")
        return d.clock.caught_up and any(
            a["cage_id"] == "C03" and a["rule"] == "sustained_pain" for a in alerts
        )

    wait_for(c03_alert, 240, "the demo's sustained-pain alert on cage C03")
    yield d, base, lines
    d.stop()
    runner.join(10)
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\ndashboard screenshots: {ARTIFACTS}")


@pytest.fixture(scope="module")
def browser():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as p:
        b = launch_chromium(p)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1300, "height": 900}, accept_downloads=True)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    context.close()
    assert not errors, f"JavaScript errors: {errors}"


def open_page(page, url: str, ready: int = 1) -> None:
    page.goto(url)
    page.wait_for_function(f"Number(document.body.dataset.ready || 0) >= {ready}", timeout=45000)
    assert page.evaluate("document.body.dataset.error || ''") == ""


def drawn_pixels(page, chart: str, rgb: tuple[int, int, int]) -> int:
    """Pixels of roughly this colour inside the chart's plot area (proves the series was drawn)."""
    return page.evaluate(
        """([name, rgb]) => {
            const u = AMGS.charts[name], c = u.ctx, b = u.bbox;
            const px = c.getImageData(b.left, b.top, b.width, b.height).data;
            let n = 0;
            for (let i = 0; i < px.length; i += 4)
                if (Math.abs(px[i] - rgb[0]) < 40 && Math.abs(px[i + 1] - rgb[1]) < 40 && Math.abs(px[i + 2] - rgb[2]) < 40) n++;
            return n;
        }""",
        [chart, list(rgb)],
    )


def log_in(page, password: str, back_to: str) -> None:
    page.click("text=Log in")
    page.fill("input[name=username]", "demo")
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(back_to)


def test_overview_tiles_states_and_filters(demo, page):
    d, base, _ = demo
    _, _, api = http("GET", f"{base}/api/overview")
    open_page(page, base + "/")
    tiles = page.locator("a.tile")
    assert tiles.count() == len(api["cages"]) == 7
    assert page.locator('a.tile[data-cage="C03"]').get_attribute("data-state") == "alert"
    assert page.locator('a.tile[data-cage="C04"]').get_attribute("data-state") == "ok"
    assert page.locator('a.tile[data-cage="C03"] svg path').get_attribute("d").count("L") >= 10  # sparkline
    page.screenshot(path=str(ARTIFACTS / "overview.png"), full_page=True)
    page.select_option("#f-room", "room-2")
    assert sorted(page.locator("a.tile").evaluate_all("ts => ts.map(t => t.dataset.cage)")) == [
        "C03",
        "C06",
        "C07",
    ]
    page.select_option("#f-room", "")
    page.select_option("#f-group", "sham")
    assert sorted(page.locator("a.tile").evaluate_all("ts => ts.map(t => t.dataset.cage)")) == ["C04", "C05"]


def test_synthetic_model_banner_on_the_demo_pages(demo, page):
    """The demo's scores come from a synthetic-trained model: every page says so, visibly."""
    _, base, _ = demo
    for path in ("/", "/cages/C03"):
        open_page(page, base + path)
        banner = page.locator("#synthetic-banner")
        assert banner.is_visible(), path
        assert (
            "SYNTHETIC MODEL" in banner.inner_text() and "say nothing about real mice" in banner.inner_text()
        )


def test_cage_page_charts_hold_and_draw_the_api_data(demo, page):
    d, base, _ = demo
    _, _, api = http("GET", f"{base}/api/timecourse/cage/C03?hours=72&bin=1h")
    open_page(page, base + "/cages/C03", ready=2)
    chart = page.evaluate("AMGS.charts.amgs.data[1]")
    expected = [b["mean_amgs"] for b in api["bins"]]
    assert len(chart) == len(expected)
    assert sum(v is not None for v in chart) >= 40  # ~60 h of hourly bins with scores
    assert all((a is None and b is None) or abs(a - b) < 1e-9 for a, b in zip(chart, expected, strict=True))
    assert drawn_pixels(page, "amgs", (198, 40, 40)) > 200  # the red mean line and threshold
    assert page.evaluate("AMGS.charts.pain.data[2].reduce((a, b) => a + (b || 0), 0)") == sum(
        b["n"] for b in api["bins"]
    )
    crops = page.locator("#crops img")
    assert crops.count() > 0
    page.wait_for_function(
        "[...document.querySelectorAll('#crops img')].slice(0, 4).every(i => i.complete && i.naturalWidth > 0)"
    )
    assert "humane endpoint" in page.locator("#cage-alerts").inner_text().lower()
    page.screenshot(path=str(ARTIFACTS / "cage-wall-clock.png"), full_page=True)

    page.select_option("#c-align", "surgery")
    page.wait_for_function("Number(document.body.dataset.ready) >= 3")
    xs = page.evaluate("AMGS.charts.amgs.data[0]")
    assert xs[0] < 0 < xs[-1] and xs[-1] < 100  # hours since surgery, not epoch seconds
    page.screenshot(path=str(ARTIFACTS / "cage-since-surgery.png"), full_page=True)


def test_group_page_curves_and_downloads(demo, page, tmp_path):
    d, base, _ = demo
    open_page(page, base + "/groups")
    u = page.evaluate(
        "({n: AMGS.charts.groups.series.length, labels: AMGS.charts.groups.series.map(s => s.label)})"
    )
    assert sum(1 for s in u["labels"] if s and not s.endswith("SEM") and "(n=" in s) == 3
    _, _, api = http(
        "GET", f"{base}/api/timecourse/groups?group=laparotomy&bin=2h&hours_before=12&hours_after=48"
    )
    lap = [b["mean_amgs"] for b in api["groups"]["laparotomy"]["bins"]]
    peak = max(v for v in lap if v is not None)
    sham = [
        b["mean_amgs"]
        for b in http("GET", f"{base}/api/timecourse/groups?group=sham")[2]["groups"]["sham"]["bins"]
    ]
    assert peak > max(v for v in sham if v is not None) + 0.2  # laparotomy rises well above sham
    for button, suffix in (("#dl-png", ".png"), ("#dl-svg", ".svg")):
        with page.expect_download() as info:
            page.click(button)
        path = tmp_path / ("groups" + suffix)
        info.value.save_as(path)
        head = path.read_bytes()[:200]
        assert head.startswith(b"\x89PNG") if suffix == ".png" else b"<svg" in head
    with page.expect_download() as info:
        page.click("#dl-csv")
    info.value.save_as(tmp_path / "groups.csv")
    lines = (tmp_path / "groups.csv").read_text().splitlines()
    assert lines[0].startswith("group_id,hours_since_event,n_animals,n_images,mean_amgs,sem_amgs")
    assert {line.split(",")[0] for line in lines[1:]} == {"analgesic", "laparotomy", "sham"}
    page.screenshot(path=str(ARTIFACTS / "groups.png"), full_page=True)


def test_devices_page(demo, page):
    d, base, _ = demo
    open_page(page, base + "/devices")
    rows = page.locator("#devices tbody tr[data-device]")
    assert rows.count() == 4
    text = page.locator('#devices tr[data-device="dev-a"]').inner_text()
    assert "online" in text and "C01, C02" in text and "no_face" in text
    page.screenshot(path=str(ARTIFACTS / "devices.png"), full_page=True)


def test_acknowledge_an_alert_in_the_browser(demo, page):
    d, base, _ = demo
    open_page(page, base + "/alerts")
    assert page.locator(".alert-card form").count() == 0  # not logged in: view only
    log_in(page, d.password, "**/alerts")
    page.wait_for_function("Number(document.body.dataset.ready || 0) >= 1")
    card = page.locator('.alert-card[data-state="open"]', has_text="sustained pain").first
    alert_id = card.get_attribute("data-alert")
    card.locator("input[name=comment]").fill("buprenorphine given, vet informed")
    card.locator("button[value=acknowledge]").click()
    page.wait_for_selector(f'.alert-card[data-alert="{alert_id}"]', state="detached")
    _, _, alerts = http("GET", f"{base}/api/alerts?state=acknowledged")
    mine = next(a for a in alerts if a["alert_id"] == alert_id)
    assert (mine["acknowledged_by"], mine["ack_comment"]) == ("demo", "buprenorphine given, vet informed")
    page.click('#tabs button[data-state="acknowledged"]')
    page.wait_for_selector(f'.alert-card[data-alert="{alert_id}"]')
    assert "acknowledged by demo" in page.locator(f'.alert-card[data-alert="{alert_id}"]').inner_text()
    page.screenshot(path=str(ARTIFACTS / "alerts-acknowledged.png"), full_page=True)


def test_staff_record_an_event_from_the_cage_page(demo, page):
    d, base, _ = demo
    open_page(page, base + "/cages/C05", ready=2)
    assert page.locator("#event-form").count() == 0  # only staff see the form
    log_in(page, d.password, "**/cages/C05")
    page.wait_for_function("Number(document.body.dataset.ready || 0) >= 2")
    form = page.locator("#event-form")
    form.locator("select[name=kind]").select_option("analgesic")
    form.locator("input[name=value]").fill("0.1")
    form.locator("input[name=unit]").fill("mg/kg buprenorphine")
    form.locator("input[name=notes]").fill("rescue dose")
    form.locator("button[type=submit]").click()
    page.wait_for_function("document.getElementById('event-result').textContent.startsWith('saved')")
    page.wait_for_function("AMGS.lastSeries.events.some(e => e.notes === 'rescue dose')")
    _, _, events = http("GET", f"{base}/api/meta/events?cage_id=C05")
    mine = [e for e in events if e["notes"] == "rescue dose"]
    assert len(mine) == 1 and mine[0]["kind"] == "analgesic" and mine[0]["value"] == 0.1
    page.screenshot(path=str(ARTIFACTS / "cage-event-recorded.png"), full_page=True)
