"""Compare samplers over seeded classes of synthetic PEFT-like problems: hypervolume and latency.

    python bench/optimizer.py --quick                 # a few minutes: 4 classes, 1 seed, 3 samplers
    python bench/optimizer.py --seeds 3 --jobs 2      # every class, 3 seeds, all samplers
    python bench/optimizer.py --classes tight,loose20x --samplers mobo,random --no-latency
    python bench/optimizer.py --samplers mobo,mobo-structured --no-latency   # structured design

Problems come from :mod:`autopeft.testing.synthetic_classes`: each class (``tight``,
``loose20x``, ``ladder8``, ``lr4dec``, ``sparse``, ``failures``, ``two_obj``, ``deep32``,
``method_choice``, ...) names one combination of budget, rank ladder, learning-rate range,
importance pattern, noise, failure regions, objectives, depth and method choice; seed ``s`` of a
class is one seeded problem (a real search-space file on a synthetic layout). Every sampler runs
on the same problems through ``make_sampler`` / ``Observation``, like a study does.

Hypervolume uses one fixed frame per problem for every sampler: accuracy in [0.3, 0.95],
trainable_params in [0, budget], peak memory (3-objective classes) between its floor (150 MB)
and the ceiling a feasible point can reach; 1 = best, clipped, the reference point is the origin.
Prints per class the median [IQR] (inclusive quartiles) over seeds of HV after ``--trials``
(and random after ``--random-trials``), whether mobo >= gp, mobo >= random@``--random-trials``
and mobo > tpe (medians), and the CPU / wall seconds of one warm mobo and gp proposal at 100 and 300
observations on a 32-layer all-linear space (torch on one thread).
``mobo-structured`` / ``mobo-flat`` are mobo with structured candidates on / off
(``structured: true|false``, over ``--mobo-options``); with mobo in ``--samplers`` a paired
table compares mobo with each. ``mobo-profiled`` is ``mobo-structured`` given a synthetic
sensitivity profile (the problem's true cell weights times lognormal noise of scale
``profile_noise``: :meth:`ClassProblem.profile`), so its structured design adds the profile
family; with ``mobo-structured`` in ``--samplers`` a paired table compares the two.
Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autopeft.core.hypervolume import Frame, hypervolume  # noqa: E402
from autopeft.search.samplers import Observation, make_sampler  # noqa: E402
from autopeft.testing.synthetic_classes import (  # noqa: E402
    CLASSES,
    ClassProblem,
    ProblemClass,
    make_problem,
)

QUICK = {"classes": "base,loose20x,two_obj,method_choice", "seeds": 1, "trials": 20,
         "random_trials": 60, "samplers": "mobo,tpe,random", "latency": "100"}  # fmt: skip
#: Sampler variants the bench knows by name: (sampler, options over its defaults).
VARIANTS = {
    "mobo-flat": ("mobo", {"structured": False}),
    "mobo-structured": ("mobo", {"structured": True}),
    "mobo-profiled": ("mobo", {"structured": True, "profile_noise": 0.5}),
}
LATENCY_CLASS = ProblemClass("latency32", layers=32, targets=("all_linear",))
Results = list[dict[str, float] | None]


def frame_for(problem: ClassProblem) -> Frame:
    """The fixed HV frame of a problem (see the module docstring)."""
    bounds = {
        "accuracy": (0.3, 0.95),
        "trainable_params": (0.0, float(problem.budget)),
        "peak_memory_mb": (150.0, problem.memory_ceiling()),
    }
    names = [o.name for o in problem.objectives]
    return Frame({n: bounds[n] for n in names}, {o.name: o.direction for o in problem.objectives})


def run(name: str, cls: str, seed: int, trials: int, options: dict) -> Results:
    """``trials`` sequential proposals of sampler ``name`` on problem ``seed`` of ``cls``."""
    _one_thread()
    problem = make_problem(cls, seed)  # rebuilt: a fresh noise stream per run
    options = dict(options)
    noise = options.pop("profile_noise", None)  # a bench option (part of the cache key)
    sampler = make_sampler(_base(name), problem.bound, problem.objectives, seed, options)
    if noise is not None:
        sampler.set_profiles({"sensitivity": problem.profile(noise)})
    return [h.values or None for h in study(problem, sampler, trials)]


def study(problem: ClassProblem, sampler: Any, trials: int) -> list[Observation]:
    """``trials`` sequential proposals of ``sampler`` on ``problem``: the history."""
    history: list[Observation] = []
    for _ in range(trials):
        point = sampler.propose(history, 1)[0]
        values = problem.evaluate(point)
        history.append(
            Observation(point, "COMPLETE", values)
            if values
            else Observation(point, "FAIL", {}, True)
        )
    return history


def cached_run(cache: Path | None, job: tuple, cached_only: bool = False) -> tuple[Results, float]:
    """:func:`run` of ``job``, or its stored results from an earlier invocation; + seconds.
    With ``cached_only``, a run not in the cache is skipped (no results)."""
    key = json.dumps(job, sort_keys=True)
    path = cache / f"{hashlib.sha1(key.encode()).hexdigest()[:16]}.json" if cache else None
    if path is not None and path.exists():
        stored = json.loads(path.read_text())
        return stored["results"], stored.get("seconds", 0.0)
    if cached_only:
        return [], 0.0
    t0 = time.perf_counter()
    results = run(*job)
    seconds = time.perf_counter() - t0
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"key": key, "results": results, "seconds": seconds}))
    return results, seconds


def hv_at(problem: ClassProblem, results: Results, k: int) -> float:
    return hypervolume(frame_for(problem), [v for v in results[:k] if v is not None])


def latency(name: str, observations: int, options: dict) -> tuple[float, float]:
    """CPU and wall seconds of one warm proposal after ``observations`` random ones."""
    _one_thread()
    problem = make_problem(LATENCY_CLASS, 0)
    random = make_sampler("random", problem.bound, problem.objectives, 0, {})
    history = []
    for p in random.propose([], observations):
        v = problem.evaluate(p)
        history.append(Observation(p, "COMPLETE", v) if v else Observation(p, "FAIL", {}, True))
    sampler = make_sampler(_base(name), problem.bound, problem.objectives, 0, options)
    sampler.propose(history, 1)  # warm-up: fits from scratch
    point = sampler.propose(history, 1)[0]
    cpu, wall = time.process_time(), time.perf_counter()
    sampler.propose([*history, Observation(point, "RUNNING", {})], 1)
    return time.process_time() - cpu, time.perf_counter() - wall


def seed_list(text: str) -> list[int]:
    """``--seeds``: a count (``3`` = seeds 0, 1, 2) or a comma-separated list (``2,`` = seed 2)."""
    try:
        if "," in text:
            return [int(s) for s in text.split(",") if s.strip()]
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected a count or a list such as 0,4"
        ) from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"a count of {count} runs nothing (seed 0 alone: 1)")
    return list(range(count))


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def main() -> None:
    args = _parse()
    classes = args.classes.split(",")
    names = args.samplers.split(",")
    unknown = [c for c in classes if c not in CLASSES]
    if unknown:
        sys.exit(f"unknown classes {unknown}; classes: {', '.join(CLASSES)}")
    print("problem classes (budget = fraction of the largest reachable parameter count)")
    for c in classes:
        print(f"  {c:14} {CLASSES[c].description}")
    if not args.latency_only:
        hv_table(classes, names, args)
    if not args.no_latency:
        latency_table(names, args)


def hv_table(classes: list[str], names: list[str], args: argparse.Namespace) -> None:
    # seed-major order: a run cut short still has every sampler on the same problems
    jobs = [
        (name, c, s, max(args.trials, args.random_trials if name == "random" else 0), opts)
        for s in args.seeds
        for c in classes
        for name, opts in ((n, _options(n, args)) for n in names)
    ]
    t0 = time.perf_counter()
    hv: dict[tuple[str, str, int], list[float]] = {}
    by_seed: dict[tuple[str, str, int], float] = {}  # (sampler, class, seed) -> HV @ trials
    problems = {(c, s): make_problem(c, s) for c in classes for s in args.seeds}
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = {pool.submit(cached_run, args.cache, j, args.cached_only): j for j in jobs}
        for future in as_completed(futures):
            (name, c, s, _, _), (results, seconds) = futures[future], future.result()
            if not results:
                continue
            for k in {args.trials, args.random_trials if name == "random" else args.trials}:
                value = hv_at(problems[c, s], results, k)
                hv.setdefault((name, c, k), []).append(value)
                if k == args.trials:
                    by_seed[name, c, s] = value
            print(
                f"# {name:6} {c:14} seed {s}: {len(results)} trials in {seconds:.0f} s", flush=True
            )
    print(f"{len(jobs)} runs in {time.perf_counter() - t0:.0f} s wall on {args.jobs} processes")
    columns = [(n, args.trials) for n in names]
    if "random" in names:
        columns.append(("random", args.random_trials))
    print(f"\nnormalised hypervolume, median [IQR] over seeds {args.seeds}")
    print(f"{'class':14} " + " ".join(f"{n + '@' + str(k):>22}" for n, k in columns) + "  checks")
    for c in classes:
        cells = [_cell(hv.get((n, c, k), []), len(args.seeds)) for n, k in columns]
        print(f"{c:14} " + " ".join(f"{x:>22}" for x in cells) + "  " + _checks(hv, c, args))
    print(
        f"checks: mobo@{args.trials} >= gp@{args.trials} | >= random@{args.random_trials} | "
        f"> tpe@{args.trials}, on medians (y/n; - = not run; * = over fewer seeds)"
    )
    for other in ("gp", "mobo-flat", "mobo-structured"):
        paired_table(by_seed, classes, args, other)
    paired_table(by_seed, classes, args, "mobo-structured", left="mobo-profiled")


def paired_table(
    by_seed: dict[tuple[str, str, int], float],
    classes: list[str],
    args: argparse.Namespace,
    other: str,
    left: str = "mobo",
) -> None:
    """``left`` (mobo) against ``other`` on the same problems: every (class, seed) both ran;
    with per-class medians of both and of the differences when there are several seeds, and
    the median of the differences over all pairs."""
    pairs = [
        (c, s) for c in classes for s in args.seeds if {(left, c, s), (other, c, s)} <= set(by_seed)
    ]
    if not pairs:
        return
    k = args.trials
    print(f"\n{left}@{k} vs {other}@{k} paired on the same problem (class, seed)")
    for c, s in pairs:
        m, g = by_seed[left, c, s], by_seed[other, c, s]
        print(f"  {c:14} seed {s}  {left} {m:.3f}  {other} {g:.3f}  {m - g:+.3f}")
    ahead = sum(by_seed[left, c, s] >= by_seed[other, c, s] for c, s in pairs)
    print(f"{left} >= {other} in {ahead} of {len(pairs)} pairs")
    overall = statistics.median(by_seed[left, c, s] - by_seed[other, c, s] for c, s in pairs)
    print(f"median paired difference over the {len(pairs)} pairs: {overall:+.3f}")
    print(f"per class, medians over the paired seeds: {left} | {other} | paired difference")
    for c in classes:
        seeds = [s for cc, s in pairs if cc == c]
        if not seeds:
            continue
        m = [by_seed[left, c, s] for s in seeds]
        g = [by_seed[other, c, s] for s in seeds]
        diff = statistics.median(a - b for a, b in zip(m, g, strict=True))
        print(
            f"  {c:14} {statistics.median(m):.3f} | {statistics.median(g):.3f} | {diff:+.3f}"
            f"  ({len(seeds)} seeds)"
        )


def _cell(values: list[float], seeds: int) -> str:
    if not values:
        return "-"
    q = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else values * 3
    star = "*" if len(values) < seeds else ""  # fewer seeds ran (--cached-only)
    return f"{star}{statistics.median(values):.3f} [{q[0]:.3f},{q[2]:.3f}]"


def _checks(hv: dict, c: str, args: argparse.Namespace) -> str:
    def med(name: str, k: int) -> float | None:
        values = hv.get((name, c, k))
        return statistics.median(values) if values else None

    mobo = med("mobo", args.trials)
    others = [
        (med("gp", args.trials), lambda a, b: a >= b),
        (med("random", args.random_trials), lambda a, b: a >= b),
        (med("tpe", args.trials), lambda a, b: a > b),
    ]
    flags = [
        "-" if mobo is None or o is None else "y" if test(mobo, o) else "n" for o, test in others
    ]
    return " ".join(flags)


def latency_table(names: list[str], args: argparse.Namespace) -> None:
    counts = [int(n) for n in args.latency.split(",")]
    print(
        "\nproposal latency of one warm proposal, CPU s / wall s, on a 32-layer all-linear "
        f"space ({len(make_problem(LATENCY_CLASS, 0).bound.dimensions)} dimensions; torch on "
        "1 thread; a shared machine: load inflates wall)"
    )
    print(f"{'sampler':8} " + " ".join(f"{'@' + str(n):>16}" for n in counts))
    for name in [n for n in names if _base(n) in ("mobo", "gp")]:
        cells = [latency(name, n, _options(name, args)) for n in counts]
        print(f"{name:8} " + " ".join(f"{c:7.2f}/{w:7.2f}s" for c, w in cells), flush=True)


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--classes", default=",".join(CLASSES), help="comma-separated names")
    parser.add_argument(
        "--seeds", default="3", type=seed_list, help="a count (3 = seeds 0,1,2) or a list (0,4; 2,)"
    )
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--random-trials", type=int, default=120)
    parser.add_argument("--samplers", default="mobo,gp,tpe,nsga2,random")
    parser.add_argument("--latency", default="100,300", help="observation counts")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (processes)")
    parser.add_argument(
        "--quick", action="store_true", help=f"a few minutes: defaults become {QUICK}"
    )
    parser.add_argument(
        "--mobo-options", type=json.loads, default={}, help='JSON, e.g. {"mc_samples": 32}'
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="directory of per-(sampler, options, class, seed, trials) results: runs found "
        "there are read instead of re-run, so a long comparison can be split over invocations",
    )
    parser.add_argument(
        "--cached-only", action="store_true", help="tabulate the runs in --cache, run nothing"
    )
    parser.add_argument("--no-latency", action="store_true", help="skip the latency table")
    parser.add_argument("--latency-only", action="store_true", help="only the latency table")
    if "--quick" in sys.argv:
        parser.set_defaults(**QUICK)  # explicit options still win
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    return args


def _options(name: str, args: argparse.Namespace) -> dict:
    """The sampler's options, mobo's resolved against its defaults: the cache key then names
    every option, so a run made under other defaults is never read for this one."""
    if _base(name) != "mobo":
        return {}
    from autopeft.search.samplers.mobo import MoboSampler

    defaults = {
        p.name: p.default
        for p in inspect.signature(MoboSampler.__init__).parameters.values()
        if p.kind == p.KEYWORD_ONLY
    }
    return {**defaults, **args.mobo_options, **VARIANTS.get(name, (name, {}))[1]}


def _base(name: str) -> str:
    """The sampler a bench name runs (``mobo-flat`` -> ``mobo``)."""
    return VARIANTS[name][0] if name in VARIANTS else name


if __name__ == "__main__":
    main()
