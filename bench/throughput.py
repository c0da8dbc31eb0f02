"""Trial throughput: persistent workers vs a fresh process per trial, 1 vs 2 Ray workers.

    OMP_WAIT_POLICY=PASSIVE python bench/throughput.py            # demo model, 20 steps/trial
    python bench/throughput.py --steps 50 --trials 3               # the demo's full fidelity

Everything runs on the demo study (MiniLM-L6 on TREC-6, ``studies/demo.yaml``), with
``max_steps`` cut to ``--steps`` to keep the run short. Prints one table:

1. per-trial overhead (wall time outside train + eval) of a persistent worker (model and data
   loaded once; adapter attached in place and removed) vs a fresh Python process per trial
   (import, load, tokenize, run one trial), plus the costs of ``copy.deepcopy`` of the base vs
   the in-place restore;
2. trials per hour of whole studies: Ray executor with 1 and 2 workers of 1 thread each vs the
   in-process executor with 2 threads (the pre-Ray default), steady state between the first
   trial start and the last trial end, and the wall time including start-up;
3. Ray's scheduling overhead per trial (driver round trip minus the worker's own time) vs a plain
   Ray task round trip and an actor method round trip measured on the same instance.

Timings on a shared machine are noisy: compare the ratios, measured in the same run.
Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autopeft.executors.ray_session import start_local  # noqa: E402
from autopeft.run.driver import run_study  # noqa: E402
from autopeft.run.prepare import prepare_study, worker_setup  # noqa: E402
from autopeft.search.samplers import make_sampler  # noqa: E402
from autopeft.spec import ExecutorSpec  # noqa: E402
from autopeft.trial.runner import TrialRequest  # noqa: E402

DEMO = ROOT / "studies" / "demo.yaml"
FRESH = """
import json, pickle, sys, time
t0 = time.perf_counter()
from autopeft.executors.worker import TrialWorker
setup, request = pickle.load(open(sys.argv[1], "rb"))
result = TrialWorker(setup).run(request)
print(json.dumps({**result.metrics, "ok": result.ok, "inside": time.perf_counter() - t0}))
"""


def demo_spec(tmp: Path, steps: int, executor: str) -> Path:
    text = DEMO.read_text()
    text = text.replace("max_steps: 50", f"max_steps: {steps}")
    text = text.replace("search_space: ../", f"search_space: {ROOT}/")
    text = text.replace("executor: {name: ray, workers: 2, cpus_per_trial: 1}", executor)
    path = tmp / f"demo_{abs(hash(executor))}.yaml"
    path.write_text(text + f"storage: sqlite:///{tmp}/bench.db\n")
    return path


def requests(steps: int, n: int, tmp: Path) -> tuple[object, list[TrialRequest]]:
    p = prepare_study(demo_spec(tmp, steps, "executor: {name: inprocess, threads: 1}"))
    sampler = make_sampler("sobol", p.bound, p.objectives, 0, {})
    points = sampler.propose([], n)
    setup = worker_setup(p, ExecutorSpec(threads=1, device="cpu"))
    return setup, [TrialRequest(i, p.bound.compile(x), 0) for i, x in enumerate(points)]


def overhead(m: dict) -> float:
    return m["worker_seconds"] - m["train_seconds"] - m["eval_seconds"]


def persistent(setup: object, reqs: list[TrialRequest]) -> dict[str, float]:
    from autopeft.executors.worker import TrialWorker
    from autopeft.trial.reuse import weights_checksum

    t0 = time.perf_counter()
    worker = TrialWorker(setup)  # type: ignore[arg-type]
    load = time.perf_counter() - t0
    runs = [worker.run(r).metrics for r in reqs]
    model = worker.context.model
    t0 = time.perf_counter()
    for _ in range(3):
        copy.deepcopy(model)
    deepcopy_s = (time.perf_counter() - t0) / 3
    t0 = time.perf_counter()
    weights_checksum(model)
    checksum_s = time.perf_counter() - t0
    return {
        "load": load,
        "overhead": statistics.median(overhead(m) for m in runs),
        "trial": statistics.median(m["worker_seconds"] for m in runs),
        "restore": statistics.median(m["restore_seconds"] for m in runs),
        "deepcopy": deepcopy_s,
        "checksum": checksum_s,
    }


def fresh(setup: object, reqs: list[TrialRequest], tmp: Path) -> dict[str, float]:
    out = []
    for r in reqs:
        job = tmp / f"job{r.number}.pkl"
        job.write_bytes(pickle.dumps((setup, r)))
        t0 = time.perf_counter()
        run = subprocess.run(
            [sys.executable, "-c", FRESH, str(job)], capture_output=True, text=True, check=True
        )
        wall = time.perf_counter() - t0
        m = json.loads(run.stdout.strip().splitlines()[-1])
        out.append((wall - m["train_seconds"] - m["eval_seconds"], wall))
    return {
        "overhead": statistics.median(o for o, _ in out),
        "trial": statistics.median(w for _, w in out),
    }


def study_rate(tmp: Path, steps: int, n: int, executor: str) -> dict[str, float]:
    from autopeft.storage.store import Store

    spec = demo_spec(tmp, steps, executor)
    name = f"bench_{abs(hash(executor))}"
    t0 = time.perf_counter()
    done = run_study(spec, trials=n, name=name)
    wall = time.perf_counter() - t0
    trials = Store(done.url).optuna_study(name).trials
    span = max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)
    sched = [r.metrics.get("scheduling_seconds") for r in done.records]
    sched = [s for s in sched if s is not None]
    return {
        "steady_per_hour": 3600 * n / span.total_seconds(),
        "wall_per_hour": 3600 * n / wall,
        "wall": wall,
        "scheduling": statistics.median(sched) if sched else float("nan"),
    }


def ray_round_trips() -> dict[str, float]:
    import ray

    @ray.remote(num_cpus=0)
    def noop() -> int:
        return 0

    @ray.remote(num_cpus=0)
    class Echo:
        def ping(self) -> int:
            return 0

    ray.get(noop.remote())
    echo = Echo.remote()
    ray.get(echo.ping.remote())
    task, actor = [], []
    for _ in range(50):
        t0 = time.perf_counter()
        ray.get(noop.remote())
        task.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ray.get(echo.ping.remote())
        actor.append(time.perf_counter() - t0)
    return {"task": statistics.median(task), "actor": statistics.median(actor)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="max_steps per trial (demo: 50)")
    parser.add_argument("--trials", type=int, default=2, help="per overhead row; x2 per study")
    args = parser.parse_args()
    import ray
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        setup, reqs = requests(args.steps, args.trials, tmp)
        per = persistent(setup, reqs)
        new = fresh(setup, reqs, tmp)
        start_local()  # the same embedded instance a study starts (workers not niced)
        trips = ray_round_trips()
        one = study_rate(
            tmp, args.steps, 2 * args.trials, "executor: {name: ray, workers: 1, cpus_per_trial: 1}"
        )
        two = study_rate(
            tmp, args.steps, 2 * args.trials, "executor: {name: ray, workers: 2, cpus_per_trial: 1}"
        )
        ray.shutdown()
        base = study_rate(
            tmp, args.steps, 2 * args.trials, "executor: {name: inprocess, threads: 2}"
        )
    pct = per["overhead"] / per["trial"]
    fresh_x = new["overhead"] / max(per["overhead"], 1e-9)
    fresh_pct = new["overhead"] / new["trial"]
    one_h, two_h, base_h = (x["steady_per_hour"] for x in (one, two, base))
    rows = [
        (
            "overhead/trial, persistent worker [s]",
            per["overhead"],
            f"{pct:.1%} of its {per['trial']:.1f} s trial",
        ),
        (
            "overhead/trial, fresh process [s]",
            new["overhead"],
            f"{fresh_x:.1f}x persistent; {fresh_pct:.1%} of {new['trial']:.1f} s",
        ),
        ("persistent worker one-time load [s]", per["load"], "paid once per worker"),
        (
            "restore after trial (unload+head+check) [s]",
            per["restore"],
            f"vs deepcopy of the base {per['deepcopy']:.3f} s",
        ),
        ("base checksum [s]", per["checksum"], "part of the restore"),
        (
            "trials/hour, Ray 1 worker x 1 thread",
            one_h,
            f"wall incl. start-up {one['wall_per_hour']:.0f}/h ({one['wall']:.0f} s)",
        ),
        (
            "trials/hour, Ray 2 workers x 1 thread",
            two_h,
            f"{two_h / one_h:.2f}x 1 worker; wall incl. start-up {two['wall_per_hour']:.0f}/h "
            f"({two['wall']:.0f} s)",
        ),
        (
            "trials/hour, in-process x 2 threads",
            base_h,
            f"2 Ray workers = {two_h / base_h:.2f}x this; wall {base['wall_per_hour']:.0f}/h "
            f"({base['wall']:.0f} s)",
        ),
        (
            "Ray scheduling overhead/trial [ms]",
            1000 * two["scheduling"],
            f"1 worker: {1000 * one['scheduling']:.1f} ms; target < 100 ms",
        ),
        (
            "plain Ray task round trip [ms]",
            1000 * trips["task"],
            f"actor call round trip {1000 * trips['actor']:.1f} ms",
        ),
    ]
    print(
        f"\ndemo model, {args.steps} steps/trial, {args.trials} trials per overhead row, "
        f"{2 * args.trials} per study, "
        f"load {os.getloadavg()[0]:.1f}"
    )
    for label, value, note in rows:
        print(f"{label:<46} {value:>10.3f}  {note}")


if __name__ == "__main__":
    main()
