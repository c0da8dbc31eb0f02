"""Multi-fidelity on the synthetic classes: hypervolume against cumulative training steps.

    python bench/fidelity.py --quick                  # a few minutes: base, 1 seed, N = 12
    python bench/fidelity.py --classes base,tight,two_obj --seeds 3 --configs 40 --cache runs/fid
    python bench/fidelity.py --budget --classes base,lowcorr --seeds 1, --cache runs/fid-budget

Four arms on the same seeded problems (:mod:`autopeft.testing.synthetic_classes`), driven like
a study by a simulated asynchronous executor:

* ``mobo``: ``--configs`` (N) configurations, each trained for the top rung's steps;
* ``mobo+mf``: ``--mf-configs`` configurations through the rungs ``--rungs`` (training steps,
  default 12,25,50,100) with the asynchronous multi-objective successive-halving rule of
  :mod:`autopeft.search.promotion` (``--eta``, its reduction factor, default 3);
* ``random``: 3N configurations at the top rung's steps (its curve passes N on the way);
* ``random+sh``: the random sampler through the same rungs as ``mobo+mf``.

By default ``--mf-configs`` is chosen so that the multi-fidelity arms' expected steps (one
rung-0 run per configuration, ``1 / eta ** k`` of them reaching rung ``k``) equal N top-rung
runs; asynchronous promotion and the draining rule promote a little more than that.

**Fidelity model.** A trial of configuration ``x`` trained for ``s`` of the top rung's ``S``
steps (``f = s / S``) reports accuracy::

    acc_f = BASE_ACC + (acc(x) - BASE_ACC) * (1 - exp(-k f)) / (1 - exp(-k))
            + 0.02 * (1 - f) * u(x) + noise * (1 + 2 * (1 - f)) * N(0, 1)

with ``acc(x)`` the problem's noise-free accuracy, ``k = 3 * exp(-0.5 * share + 0.3 * d)``
(``share``: the configuration's total rank over the largest; ``d``: ``log10(lr / lr_opt)``
clipped to [-1, 1]), so large-rank and low-learning-rate configurations learn slower and
low rungs under-rate them, ``u(x)`` a standard normal seeded by the problem and the
configuration (the same at every rung: a systematic mis-ranking that vanishes at ``f = 1``),
and the class's noise, larger at low fidelity. ``trainable_params`` and ``peak_memory_mb``
do not depend on the steps; failures are the problem's (at every rung). At ``f = 1`` this is
the problem's own accuracy model. Spearman correlation of accuracy at 12 / 25 / 50 steps with
accuracy at 100, over 200 random configurations of seed 0: base 0.38 / 0.72 / 0.90, tight
0.59 / 0.80 / 0.93, two_obj 0.33 / 0.70 / 0.91 (low rungs rank configurations imperfectly).

**Executor.** ``--workers`` (4) workers; a trial occupies one for its steps (simulated time).
When a worker is free: a promotion if the rule names one (highest rung first; the promoted
configuration is trained again from scratch at the next rung's steps), else a new proposal
if fewer than the arm's configurations have been started, else it waits; ``draining`` once
they all have. A sampler with ``multi_fidelity`` (mobo) sees every rung's trials (fidelity =
steps / top steps) and the running ones (``RUNNING``, pending); one without (random) sees the
rung-0 trials only, as in the real driver. The study ends when nothing runs and nothing is
promotable. Cost = training steps of finished trials.

**Measured.** Hypervolume over the trials finished at the top rung only (their measured
values), in the fixed frame of ``bench/optimizer.py`` (``frame_for``), after every finished
trial, against the cumulative steps. The target is random@3N's final HV (per seed): for every
arm, the steps it needed to first reach it and their ratio to random@3N's total steps.
Medians over seeds. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autopeft.core.hypervolume import hypervolume  # noqa: E402
from autopeft.core.states import TrialState  # noqa: E402
from autopeft.search.promotion import (  # noqa: E402
    COST_TOLERANCE,
    RungEntry,
    promotions,
)
from autopeft.search.samplers import Observation, make_sampler  # noqa: E402
from autopeft.search.samplers.base import point_key  # noqa: E402
from autopeft.space.bound import Point  # noqa: E402
from autopeft.testing.synthetic_classes import (  # noqa: E402
    BASE_ACC,
    CLASSES,
    ClassProblem,
    make_problem,
)
from bench.optimizer import _cell, _one_thread, frame_for, seed_list  # noqa: E402

ARMS = ("mobo", "mobo+mf", "random", "random+sh")
_COST_TOLERANCE = COST_TOLERANCE
QUICK = {"classes": "base", "seeds": "1", "configs": 12}
Curve = list[tuple[int, float]]


class FidelityProblem:
    """A :class:`ClassProblem` trained for part of its steps (see the module docstring)."""

    def __init__(self, problem: ClassProblem) -> None:
        self.problem = problem
        # the same problem without accuracy noise: the noise is added here, by fidelity
        self._clean = replace(problem, cls=replace(problem.cls, noise=0.0))
        self._cells = len(problem.bound.layout.sites) * 2 ** (problem.cls.rungs - 1)

    def evaluate_at(self, point: Point, steps: int, top_steps: int) -> dict[str, float] | None:
        values = self._clean.evaluate(point)
        if values is None:
            return None
        f = steps / top_steps
        p = self.problem
        method = point.get("method", "lora")
        share = sum(p.bound.method.cell_sizes(p.bound, point).values()) / self._cells
        lr = float(p.bound.value(point, "learning_rate"))
        d = min(1.0, max(-1.0, math.log10(lr / p.lr_opt[method])))
        k = 3.0 * math.exp(-0.5 * share + 0.3 * d)
        curve = (1 - math.exp(-k * f)) / (1 - math.exp(-k))
        digest = hashlib.sha1(repr((p.seed, point_key(point))).encode()).digest()
        u = np.random.default_rng(int.from_bytes(digest[:8], "little")).normal()
        acc = BASE_ACC + (values["accuracy"] - BASE_ACC) * curve + 0.02 * (1 - f) * u
        acc += p.rng.normal(0, p.cls.noise * (1 + 2 * (1 - f)))
        return {**values, "accuracy": float(np.clip(acc, 0, 1))}

    def noise_free(self, point: Point) -> dict[str, float] | None:
        """The configuration's top-rung values without accuracy noise (the problem's own
        model), leaving the run's noise stream where it was."""
        rng = self._clean.rng
        state = rng.bit_generator.state
        try:
            return self._clean.evaluate(point)
        finally:
            rng.bit_generator.state = state


@dataclass
class Trial:
    number: int
    config: int
    point: Point
    rung: int
    finished: bool = False
    values: dict[str, float] = field(default_factory=dict)
    promoted: bool = False


def simulate(arm: str, cls: str, seed: int, configs: int, rungs: list[int], eta: float,
             workers: int, options: dict, continued: bool = False,
             rule: str = "") -> dict:  # fmt: skip
    """One arm on problem ``seed`` of ``cls``: the (cumulative steps, HV) curve and counts.
    ``rule``: the promotion order (``crowding``, ``metric``; ``tolerance2``: ``metric`` with a
    cost tolerance of 2). Runs cached before ``rule`` was always written (no ``rule`` key) used
    ``metric`` with tolerance 2 (``runs/fid-pays``) or 1 (``runs/fid-pays2``)."""
    _one_thread()
    import autopeft.search.promotion as promotion_module

    order = "metric" if rule in ("metric", "tolerance2") else "crowding"
    promotion_module.COST_TOLERANCE = 2.0 if rule == "tolerance2" else _COST_TOLERANCE
    problem = make_problem(cls, seed)  # a fresh noise stream per run
    model = FidelityProblem(problem)
    frame = frame_for(problem)
    sampler = make_sampler(arm.split("+")[0], problem.bound, problem.objectives, seed, options)
    top = len(rungs) - 1
    trials: list[Trial] = []
    events: list[tuple[float, int]] = []  # (finish time, trial number)
    started, clock, steps, hv = 0, 0.0, 0, 0.0
    front: list[dict[str, float]] = []
    clean: list[dict[str, float]] = []  # the top-rung trials' noise-free values
    curve: Curve = []

    def history() -> list[Observation]:
        seen = trials if sampler.multi_fidelity else [t for t in trials if t.rung == 0]
        out = []
        for t in seen:
            fidelity = {"fidelity": rungs[t.rung] / rungs[top]} if sampler.multi_fidelity else {}
            state = TrialState.COMPLETE if t.values else TrialState.FAIL
            state = state if t.finished else TrialState.RUNNING
            out.append(Observation(t.point, state, t.values, state == TrialState.FAIL, **fidelity))
        return out

    def start(config: int, point: Point, rung: int) -> None:
        trials.append(Trial(len(trials), config, point, rung))
        heapq.heappush(events, (clock + cost(rung), len(trials) - 1))

    def cost(rung: int) -> int:  # a continued promotion trains only the steps between rungs
        return rungs[rung] - (rungs[rung - 1] if continued and rung else 0)

    while True:
        while len(events) < workers:
            entries = [
                RungEntry(t.number, t.rung, t.finished, t.values, t.promoted) for t in trials
            ]
            up = promotions(
                entries,
                problem.objectives,
                len(rungs),
                eta,
                draining=started >= configs,
                order=order,
            )
            if up:
                source = trials[up[0]]
                source.promoted = True
                start(source.config, source.point, source.rung + 1)
            elif started < configs:
                start(started, sampler.propose(history(), 1)[0], 0)
                started += 1
            else:
                break
        if not events:
            break
        clock, number = heapq.heappop(events)
        trial = trials[number]
        trial.finished = True
        trial.values = model.evaluate_at(trial.point, rungs[trial.rung], rungs[top]) or {}
        steps += cost(trial.rung)
        if trial.rung == top and trial.values:
            front.append(trial.values)
            clean += [v for v in [model.noise_free(trial.point)] if v]
            hv = hypervolume(frame, front)
        curve.append((steps, hv))
    counts = [sum(t.rung == r for t in trials) for r in range(len(rungs))]
    noise_free = hypervolume(frame, clean)
    return {"curve": curve, "per_rung": counts, "time": clock, "hv_noise_free": noise_free}


def cached(
    cache: Path | None,
    job: dict,
    cached_only: bool,
    run: Callable[..., dict] | None = None,
    prefix: str = "fid",
    salt: dict | None = None,
) -> dict | None:
    """``run(**job)`` (default :func:`simulate`; + ``seconds``), or its stored result from an
    earlier run; ``prefix`` and ``salt`` keep another runner's results apart in the cache."""
    key = json.dumps({**(salt or {}), **job}, sort_keys=True)
    path = cache / f"{prefix}-{hashlib.sha1(key.encode()).hexdigest()[:16]}.json" if cache else None
    if path is not None and path.exists():
        return json.loads(path.read_text())
    if cached_only:
        return None
    t0 = time.perf_counter()
    result = (run or simulate)(**job)
    result["seconds"] = time.perf_counter() - t0
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"key": key, **result}))
    return result


def hv_at(curve: Curve, budget: float) -> float:
    """HV after the last trial finished within ``budget`` cumulative steps."""
    return max([hv for s, hv in curve if s <= budget], default=0.0)


def steps_to(curve: Curve, target: float) -> float:
    """Cumulative steps at which the curve first reaches ``target`` (inf: never)."""
    return next((s for s, hv in curve if hv >= target - 1e-12), math.inf)


def main() -> None:
    args = _parse()
    if args.budget:
        from bench.fidelity_budget import main as budget_main

        budget_main(args)
        return
    classes = args.classes.split(",")
    unknown = [c for c in classes if c not in CLASSES]
    if unknown:
        sys.exit(f"unknown classes {unknown}; classes: {', '.join(CLASSES)}")
    rungs, n = args.rungs, args.configs
    below = [0, *rungs[:-1]] if args.continued else [0] * len(rungs)
    per_config = sum((rungs[k] - below[k]) / args.eta**k for k in range(len(rungs))) / rungs[-1]
    mf = args.mf_configs or round(n / per_config)
    top = rungs[-1]
    plan = {
        "mobo": (n, [top]),
        "mobo+mf": (mf, rungs),
        "random": (3 * n, [top]),
        "random+sh": (mf, rungs),
    }
    arms = args.arms.split(",")
    print(__doc__.split("\n\n")[0] if __doc__ else "")
    print(
        f"Measured: HV (fixed frame of bench/optimizer.py) over the trials finished at the top "
        f"rung ({top} steps) against cumulative training steps (cost = steps), {args.workers} "
        f"simulated asynchronous workers. Arms: mobo = {n} configs x {top} steps; mobo+mf, "
        f"random+sh = {mf} configs through rungs {rungs} (eta {args.eta:g}); random = {3 * n} "
        f"configs x {top} steps. Target = random@{3 * n}'s final HV (per seed); 'steps to "
        f"target' = cumulative steps when an arm first reaches it, and its ratio to "
        f"random@{3 * n}'s total steps ({3 * n * top}). Medians over seeds {args.seeds}; "
        "[IQR] inclusive quartiles."
    )
    for c in classes:
        print(f"  {c:10} {CLASSES[c].description}")
    results: dict[tuple[str, str, int], dict] = {}
    seconds: dict[str, float] = {}
    for s in args.seeds:  # seed-major: an interrupted run still covers every class
        for c in classes:
            for arm in arms:
                configs, arm_rungs = plan[arm]
                job = {"arm": arm, "cls": c, "seed": s, "configs": configs, "rungs": arm_rungs,
                       "eta": args.eta, "workers": args.workers,
                       "options": args.mobo_options if arm.startswith("mobo") else {},
                       **({"continued": True} if args.continued and "+" in arm else {}),
                       **({"rule": args.rule} if "+" in arm else {})}  # fmt: skip
                result = cached(args.cache, job, args.cached_only)
                if result is None:
                    continue
                results[arm, c, s] = result
                seconds[arm] = seconds.get(arm, 0.0) + result["seconds"]
                curve = result["curve"]
                print(
                    f"# {arm:9} {c:8} seed {s}: {curve[-1][0]:6} steps, HV {curve[-1][1]:.3f}, "
                    f"trials per rung {result['per_rung']}, {result['seconds']:.0f} s",
                    flush=True,
                )
    table(classes, arms, results, args, n, top)
    print("\nwall seconds per arm (sum over runs; cached runs count their original time): "
          + ", ".join(f"{a} {seconds.get(a, 0):.0f}" for a in arms))  # fmt: skip


def table(classes: list[str], arms: list[str], results: dict, args: argparse.Namespace,
          n: int, top: int) -> None:  # fmt: skip
    full = 3 * n * top  # random@3N's total steps
    checkpoints = [full // 12, full // 6, full // 3, 2 * full // 3, full]
    print(
        f"\nper class: final HV median [IQR] (* = fewer seeds), total steps, trials at the top "
        f"rung, steps to first reach random@{3 * n}'s final HV (seeds that reached it / seeds)"
    )
    print(
        f"{'class':9} {'arm':10} {'final HV':>22} {'steps':>7} {'top-rung':>8} "
        f"{'steps to target':>16} {'/ random total':>14}"
    )
    verdicts = []
    for c in classes:
        seeds = [s for s in args.seeds if ("random", c, s) in results]
        target = {s: results["random", c, s]["curve"][-1][1] for s in seeds}
        for arm in arms:
            runs = {s: results[arm, c, s] for s in seeds if (arm, c, s) in results}
            if not runs:
                continue
            finals = [r["curve"][-1][1] for r in runs.values()]
            total = statistics.median(r["curve"][-1][0] for r in runs.values())
            tops = statistics.median(r["per_rung"][-1] for r in runs.values())
            reach = [steps_to(r["curve"], target[s]) for s, r in runs.items()]
            med = statistics.median(reach)
            hit = sum(x < math.inf for x in reach)
            cell = "not reached" if med == math.inf else f"{med:.0f}"
            ratio = "-" if med == math.inf else f"{med / full:.2f}"
            print(
                f"{c:9} {arm:10} {_cell(finals, len(seeds)):>22} {total:7.0f} {tops:8.0f} "
                f"{cell + f' ({hit}/{len(reach)})':>16} {ratio:>14}"
            )
            if arm == "mobo+mf":
                ok = med <= full / 3
                verdicts.append(f"{c}: {'met' if ok else 'not met'} (median {cell} steps)")
    print(
        f"\nHV (median over seeds) after cumulative training steps (an arm that ended earlier "
        f"keeps its final HV); random@{3 * n} ends at {full}"
    )
    print(f"{'class':9} {'arm':10} " + " ".join(f"{x:>7}" for x in checkpoints))
    for c in classes:
        for arm in arms:
            curves = [results[arm, c, s]["curve"] for s in args.seeds if (arm, c, s) in results]
            if curves:
                cells = [statistics.median(hv_at(cv, x) for cv in curves) for x in checkpoints]
                print(f"{c:9} {arm:10} " + " ".join(f"{v:7.3f}" for v in cells))
    if verdicts:
        print(
            f"\ntarget: mobo+mf reaches random@{3 * n}'s full-fidelity HV within 1/3 of its steps "
            f"(<= {full // 3}), on medians over seeds:"
        )
        for v in verdicts:
            print(f"  {v}")


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--classes", default="base,tight,two_obj", help="comma-separated names")
    parser.add_argument(
        "--seeds", default="3", type=seed_list, help="a count (3 = seeds 0,1,2) or a list (0,4; 2,)"
    )
    parser.add_argument("--configs", type=int, default=40, help="N: mobo's configurations")
    parser.add_argument(
        "--mf-configs", type=int, default=0, help="configurations of the multi-fidelity arms "
        "(0: as many as make their expected steps equal N top-rung runs)"
    )  # fmt: skip
    parser.add_argument(
        "--rungs",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[12, 25, 50, 100],
        help="training steps per rung, ascending",
    )
    parser.add_argument("--eta", type=float, default=3.0, help="reduction factor (> 1)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument(
        "--mobo-options", type=json.loads, default={}, help='JSON, e.g. {"mc_samples": 32}'
    )
    parser.add_argument(
        "--cache", type=Path, default=None, help="directory of per-run results: runs found "
        "there are read instead of re-run (split a long comparison over invocations)"
    )  # fmt: skip
    parser.add_argument(
        "--cached-only", action="store_true", help="tabulate the runs in --cache, run nothing"
    )
    parser.add_argument(
        "--continued", action="store_true", help="promotions continue their source's training "
        "(cost: the steps between the rungs), as the driver does; without: re-train from scratch"
    )  # fmt: skip
    parser.add_argument(
        "--rule", default="crowding", choices=["crowding", "metric", "tolerance2"],
        help="the promotion order (fidelity.promotion_order): crowding (default) or metric; "
        "tolerance2: metric with COST_TOLERANCE 2, for comparison"
    )  # fmt: skip
    parser.add_argument(
        "--budget", action="store_true", help="equal steps under fidelity.budget_steps "
        "(--configs x top steps): mobo, mobo+rungs, mobo+auto; classes may include lowcorr "
        "(bench/fidelity_budget.py)"
    )  # fmt: skip
    parser.add_argument(
        "--show-distrusted", action="store_true", help="with --budget: the sampler sees the "
        "results at distrusted rungs too (the rule before they were hidden), for comparison"
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help=f"defaults become {QUICK}")
    if "--quick" in sys.argv:
        parser.set_defaults(**QUICK)  # explicit options still win
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    return args


if __name__ == "__main__":
    main()
