"""Compare samplers on the synthetic PEFT-like problem family: hypervolume and latency.

    python bench/optimizer.py                       # full: 5 seeds, 20/40/80 trials, random to 120
    python bench/optimizer.py --seeds 3 --trials 20,40 --samplers mobo,random,tpe

Every sampler sees the same problems (one per seed: seeded layer/module importances and noise).
Hypervolume uses one fixed frame per problem for every sampler: accuracy in [0.3, 0.95],
trainable_params in [0, budget], peak memory between its floor and ceiling; 1 = best, the
reference point is the origin. Prints median [IQR] of HV after each checkpoint, the ratio to
random, and proposal latency (CPU and wall seconds of one warm proposal) at 50/100/200
observations.
Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autopeft.core.hypervolume import Frame, hypervolume  # noqa: E402
from autopeft.core.objectives import Objective  # noqa: E402
from autopeft.methods.binding import load_space  # noqa: E402
from autopeft.samplers import Observation, make_sampler  # noqa: E402
from autopeft.samplers.synthetic import synthetic_problem  # noqa: E402

OBJECTIVES = [
    Objective("accuracy", "maximize"),
    Objective("trainable_params", "minimize"),
    Objective("peak_memory_mb", "minimize"),
]


def frame_for(problem) -> Frame:
    budget = problem.bound.space.max_trainable_params
    cells = len(problem.bound.searched_cells)
    memory_ceiling = 150.0 + 0.9 * cells + budget * 16 / 2**20
    return Frame(
        {
            "accuracy": (0.3, 0.95),
            "trainable_params": (0.0, float(budget)),
            "peak_memory_mb": (150.0, memory_ceiling),
        },
        {o.name: o.direction for o in OBJECTIVES},
    )


def run(
    name: str, problem, seed: int, trials: int, options: dict | None = None
) -> list[dict[str, float] | None]:
    problem = dataclasses.replace(problem)  # fresh noise stream per run
    sampler = make_sampler(name, problem.bound, OBJECTIVES, seed, options or {})
    history: list[Observation] = []
    results: list[dict[str, float] | None] = []
    for _ in range(trials):
        point = sampler.propose(history, 1)[0]
        values = problem.evaluate(point)
        results.append(values)
        history.append(
            Observation(point, "COMPLETE", values)
            if values
            else Observation(point, "FAIL", {}, True)
        )
    return results


def cached_run(
    cache: Path | None, name: str, problem, seed: int, trials: int, options: dict
) -> list[dict[str, float] | None]:
    """:func:`run`, or its stored results from an earlier invocation with the same inputs."""
    if cache is None:
        return run(name, problem, seed, trials, options)
    key = json.dumps([name, options, seed, trials], sort_keys=True)
    path = cache / f"{hashlib.sha1(key.encode()).hexdigest()[:16]}.json"
    if path.exists():
        return json.loads(path.read_text())["results"]
    results = run(name, problem, seed, trials, options)
    cache.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"key": key, "results": results}))
    return results


def hv_at(frame: Frame, results: list, k: int) -> float:
    return hypervolume(frame, [v for v in results[:k] if v is not None])


def latency(
    name: str, problem, observations: int, options: dict | None = None
) -> tuple[float, float]:
    random = make_sampler("random", problem.bound, OBJECTIVES, 0, {})
    history = []
    for p in random.propose([], observations):
        v = problem.evaluate(p)
        history.append(Observation(p, "COMPLETE", v) if v else Observation(p, "FAIL", {}, True))
    sampler = make_sampler(name, problem.bound, OBJECTIVES, 0, options or {})
    sampler.propose(history, 1)  # warm-up: fits from scratch
    point = sampler.propose(history, 1)[0]
    cpu, wall = time.process_time(), time.perf_counter()
    sampler.propose([*history, Observation(point, "RUNNING", {})], 1)
    return time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", default="20,40,80")
    parser.add_argument("--random-trials", type=int, default=120)
    parser.add_argument("--samplers", default="mobo,random,tpe,nsga2,gp")
    parser.add_argument("--latency", default="50,100,200")
    parser.add_argument(
        "--mobo-options", type=json.loads, default={}, help='JSON, e.g. {"mc_samples": 32}'
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="directory of per-(sampler, options, seed, trials) results: runs found there are "
        "read instead of re-run, so a long comparison can be split over several invocations",
    )
    parser.add_argument("--no-latency", action="store_true", help="skip the latency table")
    parser.add_argument("--latency-only", action="store_true", help="only the latency table")
    parser.add_argument(
        "--max-trials",
        default="",
        help="per-sampler caps, e.g. gp=40 (Optuna's GP is slow at 80 trials on 2 cores)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    checkpoints = [int(t) for t in args.trials.split(",")]
    names = args.samplers.split(",")
    space = load_space(ROOT / "search_spaces" / "lora_layerwise.yaml")
    problems = [synthetic_problem(space, seed=s) for s in range(args.seeds)]
    hv: dict[str, dict[int, list[float]]] = {n: {} for n in names}
    if args.latency_only:
        return latency_table(names, problems[0], args)
    caps = {k: int(v) for k, v in (c.split("=") for c in args.max_trials.split(",") if c)}
    for name in names:
        trials = max(checkpoints + ([args.random_trials] if name == "random" else []))
        trials = min(trials, caps.get(name, trials))
        for seed, problem in enumerate(problems):
            t0 = time.time()
            results = cached_run(args.cache, name, problem, seed, trials, _options(name, args))
            for k in sorted({*(c for c in checkpoints if c <= trials), trials}):
                hv[name].setdefault(k, []).append(hv_at(frame_for(problem), results, k))
            print(f"# {name} seed {seed}: {trials} trials in {time.time() - t0:.0f} s", flush=True)
    print("\nnormalised hypervolume, median [IQR] over seeds")
    print(f"{'sampler':8} " + " ".join(f"{'@' + str(k):>22}" for k in checkpoints))
    for name in names:
        cells = []
        for k in checkpoints:
            values = hv[name].get(k)
            if not values:
                cells.append("-")
                continue
            q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
            cells.append(f"{statistics.median(values):.4f} [{q[0]:.3f},{q[2]:.3f}]")
        print(f"{name:8} " + " ".join(f"{c:>22}" for c in cells))
    if "random" in hv:
        base = {k: statistics.median(v) for k, v in hv["random"].items()}
        print("\nratio of median HV to random's at the same trial count")
        for name in names:
            print(f"{name:8} " + " ".join(_ratio(hv[name], base, k) for k in checkpoints))
        if args.random_trials in base:
            print(f"\nrandom @{args.random_trials}: {base[args.random_trials]:.4f}")
    if not args.no_latency:
        latency_table(names, problems[0], args)


def latency_table(names: list[str], problem, args: argparse.Namespace) -> None:
    print("\nproposal latency of one warm proposal, CPU s / wall s (torch on 1 thread)")
    counts = [int(n) for n in args.latency.split(",")]
    print(f"{'sampler':8} " + " ".join(f"{'@' + str(n):>14}" for n in counts))
    for name in [n for n in names if n in ("mobo", "gp", "tpe")]:
        cells = [latency(name, problem, n, _options(name, args)) for n in counts]
        print(f"{name:8} " + " ".join(f"{c:6.2f}/{w:6.2f}s" for c, w in cells), flush=True)


def _ratio(hv: dict[int, list[float]], base: dict[int, float], k: int) -> str:
    return f"{statistics.median(hv[k]) / base[k]:>8.3f}" if k in hv else " " * 8


def _options(name: str, args: argparse.Namespace) -> dict:
    return args.mobo_options if name == "mobo" else {}


if __name__ == "__main__":
    main()
