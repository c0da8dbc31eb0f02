"""Warm start on synthetic task pairs: fast enough to compare transfer designs over many seeds.

``bench/warm_start.py`` measures warm start on real training (two built-in datasets, ~50 min
for 3 seeds); this is its synthetic companion. For each seed of a problem class
(:mod:`autopeft.testing.synthetic_classes`) it draws a **source** problem and a **related
target**: the same space, its learning-rate optimum moved by up to ``--shift`` decades, its
layer and module importances multiplied by lognormal(0, ``--shift``) factors, and every
method's accuracy ceiling lowered by 0.1 (another task, another accuracy level). Then

* a cold ``mobo`` study of ``--source-trials`` on the source (what a user has stored),
* a cold study on the target, and
* one warm study per ``--variants`` entry on the target, planned exactly as a real study is
  (:func:`autopeft.search.warm_start.design_from`,
  :class:`autopeft.search.warm_start.WarmStartSampler`),

each ``--trials`` sequential proposals through the sampler API. Hypervolume uses the fixed frame
of ``bench/optimizer.py``. It prints, per class, the mean HV curve over seeds of each variant,
the first trial at which each variant's mean curve reaches the cold study's final mean HV, and
per seed the trial at which the warm study reaches that seed's cold final HV.

    python bench/warm_start_synthetic.py --classes base,two_obj --seeds 8 --jobs 2
    python bench/warm_start_synthetic.py --variants 'default|design6;design=6,prior=0'

A variant is ``name`` or ``name;key=value,...``: ``design`` (warm points; default: mobo's
``prior_start``), ``prior`` (1/0: hand the transfer prior to mobo), any other key a mobo
option (JSON value). ``default`` is the shipped behaviour. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autopeft.core.hypervolume import hypervolume  # noqa: E402
from autopeft.search.samplers import Observation, make_sampler  # noqa: E402
from autopeft.testing.synthetic_classes import ClassProblem, make_problem  # noqa: E402
from bench.optimizer import frame_for, study  # noqa: E402
from bench.warm_start import reached  # noqa: E402

#: The demo's mobo: 6 Sobol points, then the model.
MOBO = {"n_initial": 6}


def related(problem: ClassProblem, seed: int, shift: float, need: float = 1.0) -> ClassProblem:
    """A target task related to ``problem`` (see the module docstring)."""
    rng = np.random.default_rng([seed, 77])
    # the capacity at which accuracy saturates is ``cls.layers`` (the only other reader of
    # ``cls.layers`` after binding is the soft prompt's weight, absent outside method choice)
    scale = problem.cls.layers * need ** rng.uniform(-1, 1)
    lr_opt = {}
    for method, lr in problem.lr_opt.items():
        name = "learning_rate" if method == "lora" else f"{method}.learning_rate"
        dim = next((d for d in problem.bound.dimensions if d.name == name), None)
        moved = lr * 10 ** rng.uniform(-shift, shift)
        if dim is not None:
            moved = min(max(moved, float(dim.spec.low)), float(dim.spec.high))
        lr_opt[method] = moved
    layers = problem.layer_weight * rng.lognormal(0, shift, len(problem.layer_weight))
    modules = {m: w * float(rng.lognormal(0, shift)) for m, w in problem.module_weight.items()}
    return dataclasses.replace(
        problem,
        cls=dataclasses.replace(problem.cls, layers=scale),
        lr_opt=lr_opt,
        layer_weight=layers / layers.mean(),
        module_weight=modules,
        top_acc={m: t - 0.1 for m, t in problem.top_acc.items()},
        rng=np.random.default_rng([seed, 78]),
    )


def parse_variant(text: str) -> tuple[str, dict]:
    name, _, rest = text.partition(";")
    options: dict = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        options[key.strip()] = json.loads(value)
    return name.strip(), options


def warm_sampler(target: ClassProblem, source: list[Observation], seed: int, options: dict):
    from autopeft.search.warm_start import WarmStartSampler, design_from
    from autopeft.storage.records import TrialRecord

    options = dict(options)
    size = options.pop("design", None)
    use_prior = bool(options.pop("prior", 1))
    inner = make_sampler("mobo", target.bound, target.objectives, seed, {**MOBO, **options})
    records = [
        TrialRecord(i, "COMPLETE", dict(h.values), dict(h.point))
        for i, h in enumerate(source)
        if h.state == "COMPLETE"
    ]
    size = inner.prior_start if size is None else size
    design = design_from(["source"], [(target.objectives, records)], target.bound, max(size, 1))
    points = design.points[:size]
    return WarmStartSampler(inner, points, design.prior_observations() if use_prior else ())


def run_seed(job: tuple) -> dict:
    cls, seed, trials, source_trials, shift, need, variants = job
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    source_problem = make_problem(cls, seed)
    target = related(make_problem(cls, seed), seed, shift, need)
    frame = frame_for(target)
    source = study(
        source_problem,
        make_sampler("mobo", source_problem.bound, source_problem.objectives, seed, MOBO),
        source_trials,
    )
    curves: dict[str, list[float]] = {}
    walls: dict[str, float] = {}
    runs = [("cold", None)] + [parse_variant(v) for v in variants]
    for name, options in runs:
        problem = dataclasses.replace(target, rng=np.random.default_rng([seed, 78]))
        t0 = time.perf_counter()
        sampler = (
            make_sampler("mobo", problem.bound, problem.objectives, seed + 1000, MOBO)
            if options is None
            else warm_sampler(problem, source, seed + 1000, options)
        )
        history = study(problem, sampler, trials)
        walls[name] = time.perf_counter() - t0
        done = [h.values for h in history]
        curves[name] = [
            hypervolume(frame, [v for v in done[: i + 1] if v]) for i in range(len(done))
        ]
    return {"cls": cls, "seed": seed, "curves": curves, "walls": walls}


def report(results: list[dict], names: list[str]) -> None:
    for cls in dict.fromkeys(r["cls"] for r in results):
        rows = [r for r in results if r["cls"] == cls]
        print(f"\n{cls}: mean HV over {len(rows)} seeds after each trial")
        mean = {
            n: [statistics.fmean(v) for v in zip(*(r["curves"][n] for r in rows), strict=True)]
            for n in names
        }
        goal = mean["cold"][-1]
        for n in names:
            hit = reached(mean[n], goal)
            per_seed = [reached(r["curves"][n], r["curves"]["cold"][-1]) for r in rows]
            within = sum(h is not None and h < len(mean[n]) for h in per_seed)
            wall = statistics.fmean(r["walls"][n] for r in rows)
            print(
                f"  {n:34s} " + " ".join(f"{v:.3f}" for v in mean[n])
                + f"  | mean reaches cold@{len(mean[n])} at {hit or '-'}; per seed before the"
                f" last trial {within}/{len(rows)}; {wall:.0f} s/study"
            )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", default="base,two_obj,ladder8,lr4dec")
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--source-trials", type=int, default=12)
    parser.add_argument("--shift", type=float, default=0.3, help="how far the target moves")
    parser.add_argument(
        "--need", type=float, default=1.0,
        help="the target saturates at a capacity up to this factor above or below the source's",
    )  # fmt: skip
    parser.add_argument("--variants", default="default", help="';'-free list joined by '|'")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    variants = [v for v in args.variants.split("|") if v]
    jobs = [
        (c, s, args.trials, args.source_trials, args.shift, args.need, variants)
        for c in args.classes.split(",")
        for s in range(args.seeds)
    ]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(run_seed, jobs))
    print(f"{len(jobs)} (class, seed) pairs in {time.perf_counter() - t0:.0f} s wall; "
          f"shift {args.shift}, need {args.need}, source {args.source_trials} trials")  # fmt: skip
    report(results, ["cold"] + [parse_variant(v)[0] for v in variants])


if __name__ == "__main__":
    main()
