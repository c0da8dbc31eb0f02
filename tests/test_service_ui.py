"""A real server (uvicorn in a thread): the Python client, and the web UI in headless Chromium."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.service_support import Served

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def base_url(served: Served) -> Iterator[str]:
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(served.app, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_client_reads_and_loads_the_peft_config(served: Served, base_url: str) -> None:
    import autopeft
    from autopeft.results.export import load_peft_config
    from autopeft.service.client import ServiceError

    client = autopeft.Client(base_url, token=served.read)
    assert client.status("tiny")["counts"]["complete"] == 3
    front = client.front("tiny")
    assert front == json.loads(json.dumps(front)) and front and "placement" in front[0]
    config = client.load_peft_config("tiny", pick="knee")
    local = load_peft_config(served.url, "tiny", pick="knee")
    assert config.to_dict() == local.to_dict()
    assert client.load_peft_config("tiny", trial=0).rank_pattern is not None
    remote_config, remote_args = client.load_trial("tiny", pick="knee")
    local_config, local_args = autopeft.load_trial(served.url, "tiny", pick="knee")
    assert remote_config.to_dict() == local_config.to_dict() and remote_args == local_args
    assert remote_args["max_steps"] == 4 and remote_args["max_grad_norm"] == 0.0
    files = client.export_files("tiny", pick="knee", format="llamafactory")
    assert set(files) == {"adapter_config.json", "training.json", "README.md", "llamafactory.yaml"}
    with pytest.raises(ServiceError, match="403"):
        client.submit("name: x", "version: 1")
    with pytest.raises(ServiceError, match="no study named 'nope'") as caught:
        client.status("nope")
    assert caught.value.status == 404
    with pytest.raises(ServiceError, match="401"):
        autopeft.Client(base_url).studies()


def served_front(served: Served) -> list[int]:
    from autopeft.results.views import load_view

    return [r.number for r in load_view("tiny", served.url).front()]


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}")
def test_study_page_in_chromium(served: Served, base_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(base_url + "/")
            page.add_init_script(f"localStorage.setItem('autopeft-token', {served.read!r})")
            page.evaluate(f"localStorage.setItem('autopeft-token', {served.read!r})")
            page.goto(base_url + "/#/study/tiny")
            page.reload()
            points = page.locator("#front .scatterlayer .point")
            expect(points.first).to_be_visible(timeout=20_000)
            assert points.count() == 3  # every complete trial, front and dominated
            expect(page.locator("#trials tbody tr")).to_have_count(3)
            expect(page.locator("#study-summary")).to_contain_text("complete 3")
            box = page.locator("#front .scatterlayer .trace:last-child .point").first.bounding_box()
            assert box is not None
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            expect(page.locator("#front .hoverlayer")).to_contain_text("placement", timeout=5_000)
            page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            expect(page.locator("#config")).to_contain_text('"peft_type": "LORA"', timeout=10_000)
            expect(page.locator("#snippet")).to_contain_text('load_peft_config("tiny"')
            # learning curves: the front's and the selected trial's, drawn as SVG polylines
            front_lines = page.locator("#front-curves svg.curve-chart polyline.curve-line")
            expect(front_lines.first).to_be_attached(timeout=10_000)
            front_size = len(served_front(served))
            assert front_lines.count() == front_size
            trial_line = page.locator("#trial-curve svg.curve-chart polyline.curve-line")
            expect(trial_line).to_have_count(1, timeout=10_000)
            points = (trial_line.get_attribute("points") or "").split()
            assert len(points) == 4  # 4 training steps, one point each
            assert len({p.split(",")[1] for p in points}) > 1  # the loss moved: not a flat line
            box = page.locator("#trial-curve svg.curve-chart").bounding_box()
            assert box is not None and box["width"] > 100 and box["height"] > 100
            href = page.locator("#download").get_attribute("href")
            assert href is not None and "/api/studies/tiny/export?trial=" in href
            expect(page.locator("#shown")).to_be_hidden()  # every trial is drawn
            # the insight panel loads beside the poll: there before the screenshot
            expect(page.locator("#health li").first).to_be_visible(timeout=20_000)
            shot = tmp_path / "study_page.png"
            page.screenshot(path=str(shot), full_page=True)
            # a cap below the study's trials: the front drawn, the others left out, and said
            page.evaluate("localStorage.setItem('autopeft-max-points', '0')")
            page.reload()
            expect(page.locator("#study-summary")).to_contain_text("complete 3", timeout=20_000)
            if front_size < 3:
                expect(page.locator("#shown")).to_contain_text(
                    f"{front_size} of 3 trials shown: the Pareto front", timeout=10_000
                )
            else:  # nothing to leave out
                expect(page.locator("#shown")).to_be_hidden()
            expect(page.locator("#trials tbody tr")).to_have_count(front_size)
            assert page.locator("#front .scatterlayer .point").count() == front_size
            page.evaluate("localStorage.removeItem('autopeft-max-points')")
            assert not errors, errors
        finally:
            browser.close()
    keep = Path(__file__).resolve().parents[1] / "runs" / "screenshots"
    keep.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, keep / "study_page.png")


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}")
def test_cockpit_submit_run_export_and_insight_in_chromium(
    served: Served, base_url: str, tmp_path: Path
) -> None:
    """Through the page only: submit a study from files, watch it run to complete, export a
    trial; the health list, the placement heatmaps (with a second trial compared) and the
    importance panels render, with no page error."""
    from playwright.sync_api import expect, sync_playwright

    from tests.service_support import tiny_submission

    body = tiny_submission(served, "cockpit", n_trials=4)
    spec, space = tmp_path / "study.yaml", tmp_path / "space.yaml"
    spec.write_text(body["spec"])
    space.write_text(body["search_space"])
    keep = Path(__file__).resolve().parents[1] / "runs" / "screenshots"
    keep.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(base_url + "/")
            page.evaluate(f"localStorage.setItem('autopeft-token', {served.write!r})")
            page.reload()
            page.set_input_files("#submit-spec", str(spec))
            page.set_input_files("#submit-space", str(space))
            page.fill("#submit-trials", "4")  # the spec says 3
            page.click("#submit-form button[type=submit]")
            page.wait_for_url("**/#/study/cockpit", timeout=60_000)
            summary = page.locator("#study-summary")
            expect(summary).to_contain_text("running", timeout=30_000)
            expect(summary).to_contain_text("complete |", timeout=240_000)
            expect(page.locator("#trials tbody tr")).to_have_count(4, timeout=10_000)
            expect(page.locator("#health li").first).to_be_visible(timeout=20_000)
            expect(page.locator("#usage .hm, #usage .heatmaplayer").first).to_be_attached(
                timeout=20_000
            )
            expect(page.locator("#importance .plot").first).to_be_visible()
            page.locator("#parcoords").scroll_into_view_if_needed()  # drawn once in view
            expect(page.locator("#parcoords .parcoords").first).to_be_attached(timeout=10_000)
            rows = page.locator("#trials tbody tr")
            rows.nth(0).click()
            expect(page.locator("#config")).to_contain_text('"peft_type"', timeout=10_000)
            expect(page.locator("#placement-a .main-svg").first).to_be_attached(timeout=10_000)
            rows.nth(1).click(modifiers=["Shift"])
            expect(page.locator("#placement-b .main-svg").first).to_be_attached(timeout=10_000)
            with page.expect_download(timeout=30_000) as download:
                page.click("#download")
            exported = json.loads(Path(download.value.path()).read_text())
            assert exported["peft_type"] in {"LORA", "ADALORA"}
            report = page.locator("#report-link").get_attribute("href")
            assert report == "/api/studies/cockpit/report"
            page.screenshot(path=str(keep / "cockpit_study.png"), full_page=True)
            page.goto(base_url + "/")
            expect(page.locator("#studies tbody")).to_contain_text("cockpit")
            page.screenshot(path=str(keep / "cockpit_list.png"), full_page=True)
            assert not errors, errors
        finally:
            browser.close()
