"""A bounded load check of ``autopeft serve``: N clients poll a study's status and front.

    python bench/service_load.py --url http://127.0.0.1:8000 --token apt_... --study demo \
        --clients 8 --seconds 30

Each client is a thread with its own :class:`autopeft.Client` that alternates
``GET /api/studies/NAME`` and ``GET /api/studies/NAME/front`` back to back for ``--seconds``.
The script prints, per endpoint, the request count, p50/p99/max latency and the errors. Run it
while the study runs to see what polling costs the server next to a driver writing the same
database. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections import defaultdict

from autopeft.service.client import Client, ServiceError


def _poll(client: Client, study: str, until: float, out: dict[str, list[float]], errors: list):
    calls = (("status", client.status), ("front", client.front))
    i = 0
    while time.monotonic() < until:
        label, call = calls[i % 2]
        start = time.perf_counter()
        try:
            call(study)
        except ServiceError as exc:
            errors.append(f"{label}: {exc}")
        out[label].append(time.perf_counter() - start)
        i += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--token", default=None)
    parser.add_argument("--study", required=True)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: list[str] = []
    until = time.monotonic() + args.seconds
    threads = [
        threading.Thread(
            target=_poll, args=(Client(args.url, args.token), args.study, until, latencies, errors)
        )
        for _ in range(args.clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"{args.clients} clients, {args.seconds:.0f} s, study {args.study!r} at {args.url}")
    print(f"{'endpoint':<8} {'requests':>8} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for label, values in sorted(latencies.items()):
        ms = sorted(v * 1000 for v in values)
        p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))]
        print(
            f"{label:<8} {len(ms):>8} {len(ms) / args.seconds:>7.1f} "
            f"{statistics.median(ms):>8.1f} {p99:>8.1f} {ms[-1]:>8.1f}"
        )
    print(f"errors: {len(errors)}" + (f" (first: {errors[0]})" if errors else ""))


if __name__ == "__main__":
    main()
