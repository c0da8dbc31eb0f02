"""``autopeft serve`` under load: 20 clients on a 5,000-trial study, on SQLite and PostgreSQL.

    python bench/service_load.py --db sqlite --trials 5000 --clients 20 --seconds 25
    eval "$(tools/ci_services.sh)"   # PostgreSQL and Chromium; exports AUTOPEFT_TEST_POSTGRES
    python bench/service_load.py --db postgresql --trials 5000 --clients 20 --seconds 25

Self-contained: it seeds a finished study of ``--trials`` trials into a fresh database
(:func:`autopeft.testing.load_study.seed_study`: no training, the driver's tables), makes a read
token, starts ``autopeft serve`` on it as a subprocess, and then:

* load: ``--clients`` threads, each with its own :class:`autopeft.Client`, call the study LIST
  (``GET /api/studies``), STATUS (``GET /api/studies/NAME``) and FRONT
  (``GET /api/studies/NAME/front``) endpoints in turn, back to back, for ``--seconds``; per
  endpoint it prints requests, req/s, p50/p99/max latency and errors (a timeout is an error);
* UI, during that load: headless Chromium (playwright, as ``tests/test_service_ui.py``) opens
  the study page and reports the first contentful paint, the time until the front's points are
  drawn, the page's poll (``route()``) while the study is unchanged (the summary fetched) and as
  if it had moved (the summary, then the trials the page draws fetched, everything redrawn),
  each against the bound printed beside it, and when the insight panel (loaded beside the poll)
  showed its health list.

PostgreSQL: ``--postgres-url`` or ``AUTOPEFT_TEST_POSTGRES`` names a server and a role that may
create databases; a fresh database ``autopeft_load_<hex>`` is created and dropped afterwards.
Not a test: the bounds are printed, nothing asserts.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autopeft.service.client import Client

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
POLL_LIMIT_S = 120
#: The page's marks in a redraw (app.js showStudy), each printed as ms after the poll began.
MARKS = {
    "autopeft-fetched": "summary and trials fetched",
    "autopeft-front": "front drawn",
    "autopeft-table": "hypervolume and table drawn",
    "autopeft-drawn": "memory front drawn (parallel coordinates: once in view)",
}
#: UI bounds (milliseconds): first paint, front drawn, one poll cycle (the page polls every 3 s
#: while a study runs, so a cycle must end well within that), unchanged study or moved. The
#: insight panel (loaded beside the poll; made once per version of the study) has none.
BOUNDS = {
    "first_paint_ms": 2000.0,
    "front_drawn_ms": 5000.0,
    "first_poll_ms": 3000.0,
    "poll_cycle_ms": 3000.0,
    "poll_moved_ms": 3000.0,
}


@contextmanager
def database(kind: str, directory: Path, postgres: str | None) -> Iterator[str]:
    """A fresh database URL of ``kind``; a PostgreSQL one is dropped afterwards."""
    if kind == "sqlite":
        path = directory / "service_load.db"
        path.unlink(missing_ok=True)
        yield f"sqlite:///{path}"
        return
    if not postgres:
        sys.exit("--db postgresql needs --postgres-url or AUTOPEFT_TEST_POSTGRES")
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = make_url(postgres)
    name = f"autopeft_load_{uuid.uuid4().hex[:10]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def server(url: str, directory: Path) -> Iterator[str]:
    """``autopeft serve`` on ``url`` in a subprocess; yields its base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    log = (directory / "serve.log").open("w")
    command = [sys.executable, "-m", "autopeft.cli", "serve", "--storage", url, "--port", str(port)]
    proc = subprocess.Popen(
        [*command, "--service-dir", str(directory / "svc")], env=env, stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(base + "/health", timeout=2):
                    break
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"autopeft serve did not start; see {log.name}") from None
                time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:  # busy with queued requests
            proc.kill()
            proc.wait(30)
        log.close()


def _client_loop(
    client: Client, study: str, first: int, until: float, out: dict, errors: list
) -> None:
    calls = (
        ("list", lambda: client.studies()),
        ("status", lambda: client.status(study)),
        ("front", lambda: client.front(study)),
    )
    i = first
    while time.monotonic() < until:
        label, call = calls[i % 3]
        start = time.perf_counter()
        try:
            call()
            out[label].append(time.perf_counter() - start)
        except Exception as exc:  # a timeout, a 5xx: counted, the loop goes on
            errors.append(f"{label}: {type(exc).__name__}: {exc}")
            out[label + "_failed"].append(time.perf_counter() - start)
        i += 1


def load(base: str, token: str, study: str, clients: int, seconds: float, timeout: float):
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: list[str] = []
    until = time.monotonic() + seconds
    threads = [
        threading.Thread(
            target=_client_loop,
            args=(Client(base, token, timeout=timeout), study, k, until, latencies, errors),
        )
        for k in range(clients)
    ]
    for t in threads:
        t.start()
    return threads, latencies, errors


def table(latencies: dict[str, list[float]], errors: list[str], seconds: float) -> list[str]:
    lines = [
        f"{'endpoint':<8} {'requests':>8} {'req/s':>7} {'p50 ms':>9} {'p99 ms':>9} "
        f"{'max ms':>9} {'errors':>6}"
    ]
    for label in ("list", "status", "front"):
        ms = sorted(v * 1000 for v in latencies.get(label, []))
        failed = sum(1 for e in errors if e.startswith(label + ":"))
        if not ms:
            lines.append(f"{label:<8} {0:>8} {0:>7.1f} {'-':>9} {'-':>9} {'-':>9} {failed:>6}")
            continue
        p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))]
        lines.append(
            f"{label:<8} {len(ms):>8} {len(ms) / seconds:>7.1f} {statistics.median(ms):>9.1f} "
            f"{p99:>9.1f} {ms[-1]:>9.1f} {failed:>6}"
        )
    if errors:
        lines.append(f"first error: {errors[0][:200]}")
    return lines


def ui(base: str, token: str, study: str) -> dict[str, Any]:
    """First contentful paint, front drawn and one poll cycle of the study page, in ms."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(base + "/")
            page.evaluate(f"localStorage.setItem('autopeft-token', {token!r})")
            start = time.perf_counter()
            page.goto(f"{base}/#/study/{study}")
            page.reload()  # a fresh load of the study page, with the token in place
            try:
                page.locator("#front .scatterlayer .point").first.wait_for(timeout=120_000)
            except PlaywrightTimeout:
                return {"first_paint_ms": _paint(page), "front_drawn_ms": -1.0, "points": 0}
            drawn = (time.perf_counter() - start) * 1000
            paint = _paint(page)
            loaded = page.evaluate(  # the first load's marks, ms after the page's navigation
                "(names) => names.map((n) => performance.getEntriesByName(n)[0]?.startTime ?? -1)",
                list(MARKS),
            )
            # the page's own poll (route()), timed in the page: while the study is unchanged
            # (the summary fetched, the trials kept), and as if it had moved (the summary, then
            # the trials the page draws fetched and everything redrawn; the server's bodies for
            # this version made already); the insight panel loads beside the poll
            script = (  # -1: not done within POLL_LIMIT_S
                "async ([limit, moved]) => { if (moved && current) current.version = 'moved';"
                " const t = performance.now(); window.pollStart = t;"
                " const done = await Promise.race([route().then(() => true),"
                " new Promise((r) => setTimeout(() => r(false), limit))]);"
                " return done ? performance.now() - t : -1; }"
            )
            first_cycle = page.evaluate(script, [POLL_LIMIT_S * 1000, False])
            redraw = page.evaluate(script, [POLL_LIMIT_S * 1000, True])
            steps = page.evaluate(  # where the moved poll's time went (the page's marks)
                "(names) => names.map((n) => { const e = performance.getEntriesByName(n);"
                " return e.length ? e[e.length - 1].startTime - window.pollStart : -1; })",
                list(MARKS),
            )
            cycle = page.evaluate(script, [POLL_LIMIT_S * 1000, False])
            points = page.locator("#front .scatterlayer .point").count()
            try:  # the insight panel's health list, from the page's start
                page.locator("#health li").first.wait_for(timeout=POLL_LIMIT_S * 1000)
                insight = (time.perf_counter() - start) * 1000
            except PlaywrightTimeout:
                insight = -1.0
            shown = page.evaluate("document.getElementById('shown')?.textContent ?? ''")
        finally:
            browser.close()
    return {
        "first_paint_ms": paint,
        "front_drawn_ms": drawn,
        "first_poll_ms": first_cycle,
        "poll_cycle_ms": cycle,
        "poll_moved_ms": redraw,
        "insight_ms": insight,
        "points": points,
        "shown": shown.split(":")[0],
        "steps": steps,
        "loaded": loaded,
    }


def _paint(page: Any) -> float:
    """The page's first contentful paint (ms after navigation start); -1 if none yet."""
    script = "performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? -1"
    return float(page.evaluate(script))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--postgres-url", default=os.environ.get("AUTOPEFT_TEST_POSTGRES"))
    parser.add_argument("--trials", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=25.0)
    parser.add_argument("--timeout", type=float, default=60.0, help="Per request, seconds.")
    parser.add_argument("--no-ui", action="store_true", help="Skip the Chromium check.")
    parser.add_argument("--dir", type=Path, default=None, help="Work directory (default: temp).")
    args = parser.parse_args()
    directory = args.dir or Path(tempfile.mkdtemp(prefix="service_load_"))
    directory.mkdir(parents=True, exist_ok=True)
    from autopeft.storage.store import Store
    from autopeft.storage.tokens import create_token
    from autopeft.testing.load_study import seed_study

    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"# {args.db}, {when}, {platform.machine()} {os.cpu_count()} CPUs, "
        f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    with database(args.db, directory, args.postgres_url) as url:
        seeded = seed_study(url, args.trials)
        print(
            f"seeded {seeded.trials} trials ({seeded.complete} complete, {seeded.failed} failed, "
            f"{seeded.interrupted} interrupted and re-run) in {seeded.seconds:.1f} s"
        )
        token = create_token(Store(url), "read")[1]
        with server(url, directory) as base:
            probe = Client(base, token, timeout=args.timeout)
            for label, call in (("status", probe.status), ("front", probe.front)):
                start = time.perf_counter()
                try:
                    call(seeded.name)
                    took = f"{(time.perf_counter() - start) * 1000:.0f} ms"
                except Exception as exc:
                    took = f"failed after {time.perf_counter() - start:.0f} s ({exc})"
                print(f"first {label} (one client, cold): {took}")
            threads, latencies, errors = load(
                base, token, seeded.name, args.clients, args.seconds, args.timeout
            )
            measured = None
            if not args.no_ui and Path(CHROMIUM).exists():
                time.sleep(min(3.0, args.seconds / 4))
                measured = ui(base, token, seeded.name)
            for t in threads:
                t.join()
            elapsed = max(args.seconds, 1e-9)
            print(f"{args.clients} clients, {args.seconds:.0f} s, list/status/front in turn:")
            print("\n".join(table(latencies, errors, elapsed)))
            if measured is None:
                print("UI: not measured (--no-ui or no Chromium at /usr/bin/chromium)")
            else:
                points, shown = measured.pop("points"), measured.pop("shown")
                steps, loaded = measured.pop("steps"), measured.pop("loaded")
                print(f"UI during the load, {points:.0f} points drawn ({shown or 'all shown'}):")
                for key, value in measured.items():
                    if key in BOUNDS:
                        verdict = "within" if 0 <= value < BOUNDS[key] else "OVER (or never)"
                        bound = f"{verdict} the bound < {BOUNDS[key]:.0f} ms"
                    else:
                        bound = "no bound" if value >= 0 else "never"
                    print(f"  {key:<15} {value:>8.0f} ms  ({bound})")
                marked = ", ".join(
                    f"{what} {ms:.0f}" for what, ms in zip(MARKS.values(), steps, strict=True)
                )
                print(f"  the moved poll, ms after it began (-1: no mark): {marked}")
                marked = ", ".join(
                    f"{what} {ms:.0f}" for what, ms in zip(MARKS.values(), loaded, strict=True)
                )
                print(f"  the first load, ms after the page's navigation: {marked}")


if __name__ == "__main__":
    main()
