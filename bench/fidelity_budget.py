"""Multi-fidelity at equal training steps: ``fidelity.budget_steps`` on the synthetic classes.

    python bench/fidelity.py --budget --classes base,lowcorr --seeds 1, --cache runs/fid-budget

(``bench/fidelity.py --budget`` runs this; every other option is as there.) Arms, on the same
seeded problems and fidelity model as ``bench/fidelity.py`` (its docstring), 4 simulated
asynchronous workers, every arm held to ``budget_steps = --configs x top steps`` (40 full-trial
equivalents by default):

* ``mobo``: plain mobo, ``--configs`` configurations at the top rung (``bench/fidelity.py``'s
  arm, exactly its budget);
* ``mobo+rungs``: mobo through the rungs ``--rungs`` (default 12,25,50,100, factor ``--eta``),
  promotions continuing their source (cost: the steps between the rungs), the first
  configurations trained to the top rung and the rungs judged on them
  (:func:`autopeft.search.budget.calibration`), distrusted rungs (:mod:`autopeft.results.rungs`)
  selecting nothing, their results hidden from the sampler (``--show-distrusted``: shown, the
  rule before) and the lowest of them skipped, new configurations and promotions started
  under :class:`autopeft.search.budget.StepBudget`: the driver's rules, replayed here;
* ``mobo+auto``: as ``mobo+rungs`` with ``rungs: auto`` (the ladder ``max_steps / eta ** k``,
  ``4, 11, 33, 100`` at eta 3; :func:`autopeft.search.budget.entry_rung`).

``lowcorr``, a constructed class on top of ``base``'s problems: below the top rung the accuracy
a configuration reports is mostly a configuration-seeded draw, not its quality::

    acc_f = BASE_ACC + (acc(x) - BASE_ACC) * f ** 3 + 0.3 * (1 - f) * u(x) + noise

(``u(x)`` the fidelity model's systematic normal; at ``f = 1`` the problem's own accuracy), so the
low rungs rank configurations badly against the top rung (Spearman over 200 random
configurations printed with the results). Target: ``mobo+rungs`` within 0.02 HV of ``mobo`` at
equal steps, i.e. the distrusted-rung fallback limits the damage.

Measured: HV (``bench/optimizer.py``'s fixed frame) of the top-rung trials after the last trial
finished within ``budget_steps`` cumulative steps, and the steps the arm spent in all (the
overspend check: at most 10 % over). Medians over seeds. Column ``noise-free``: the same
difference (``mobo+rungs - mobo``) on the HV of the same top-rung trials' noise-free values (the
problem's model without accuracy noise): the measured HV of a noisy metric grows with the number
of top-rung draws, which plain mobo has more of (``nan`` for runs cached before it was
recorded). Column ``paired (ahead)``: the median over seeds of ``mobo+rungs - mobo`` on the same
seed, and on how many seeds it is >= 0 (the verdict reads the difference of the medians, as the
issue does). Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import math
import statistics
from dataclasses import dataclass, field

import numpy as np

from autopeft.core.hypervolume import hypervolume
from autopeft.core.states import TrialState
from autopeft.results.health import spearman
from autopeft.results.rungs import distrusted_rungs, rung_correlations
from autopeft.search.budget import (
    AUTO_MIN_PAIRS,
    StepBudget,
    calibration,
    entry_rung,
    unmeasured_rungs,
)
from autopeft.search.promotion import RungEntry, promotions
from autopeft.search.samplers import Observation, make_sampler
from autopeft.search.samplers.base import point_key
from autopeft.space.bound import Point
from autopeft.storage.records import TrialRecord
from autopeft.testing.synthetic_classes import BASE_ACC, CLASSES, make_problem
from bench.fidelity import FidelityProblem, cached, hv_at
from bench.optimizer import _cell, _one_thread, frame_for

LOWCORR = "lowcorr"
BUDGET_ARMS = ("mobo", "mobo+rungs", "mobo+auto")


class LowCorrelationProblem(FidelityProblem):
    """``base``'s problem whose low rungs rank configurations mostly at random (module
    docstring)."""

    def evaluate_at(self, point: Point, steps: int, top_steps: int) -> dict[str, float] | None:
        values = self._clean.evaluate(point)
        if values is None:
            return None
        f = steps / top_steps
        p = self.problem
        digest = hashlib.sha1(repr((p.seed, point_key(point))).encode()).digest()
        u = np.random.default_rng(int.from_bytes(digest[:8], "little")).normal()
        acc = BASE_ACC + (values["accuracy"] - BASE_ACC) * f**3 + 0.3 * (1 - f) * u
        acc += p.rng.normal(0, p.cls.noise * (1 + 2 * (1 - f)))
        return {**values, "accuracy": float(np.clip(acc, 0, 1))}


def fidelity_model(cls: str, seed: int) -> FidelityProblem:
    problem = make_problem("base" if cls == LOWCORR else cls, seed)
    return LowCorrelationProblem(problem) if cls == LOWCORR else FidelityProblem(problem)


def auto_ladder(top: int, eta: float, count: int = 4) -> list[int]:
    """``rungs: auto``'s ladder (:attr:`autopeft.spec.FidelitySpec.rung_steps`)."""
    return sorted({round(top / eta**k) for k in range(count)} - {0})


@dataclass
class Trial:
    number: int
    point: Point
    rung: int
    promoted_from: int | None
    finished: bool = False
    values: dict[str, float] = field(default_factory=dict)
    promoted: bool = False

    def record(self, top: int) -> TrialRecord:
        state = TrialState.FAIL if not self.values else TrialState.PRUNED
        if self.values and self.rung == top:
            state = TrialState.COMPLETE
        if not self.finished:
            state = TrialState.RUNNING
        return TrialRecord(
            self.number, state, self.values, rung=self.rung, promoted_from=self.promoted_from
        )


def simulate_budget(arm: str, cls: str, seed: int, budget: int, rungs: list[int], eta: float,
                    workers: int, options: dict, auto: bool = False,
                    hide_distrusted: bool = True) -> dict:  # fmt: skip
    """One multi-fidelity arm under ``budget`` steps, with the driver's start rules.

    ``hide_distrusted``: the sampler does not see results at the measured, distrusted rungs
    (:meth:`autopeft.run.mirror.TrialMirror.history`'s ``hidden``); False replays the rule
    before it (every rung's results in the surrogate)."""
    _one_thread()
    model = fidelity_model(cls, seed)
    problem = model.problem
    frame = frame_for(problem)
    sampler = make_sampler(arm.split("+")[0], problem.bound, problem.objectives, seed, options)
    top = len(rungs) - 1
    rules = StepBudget(budget, tuple(rungs), eta)
    trials: list[Trial] = []
    done: list[TrialRecord] = []  # finished trials, as the correlation rule reads them
    events: list[tuple[float, int]] = []
    clock, spent, finished_steps, hv, entry = 0.0, 0, 0, 0.0, 0
    front: list[dict[str, float]] = []
    clean: list[dict[str, float]] = []  # the top-rung trials' noise-free values
    curve: list[tuple[int, float]] = []
    entries_log: list[int] = []
    hidden: frozenset[int] = frozenset()  # measured, distrusted rungs

    def history() -> list[Observation]:
        out = []
        for t in trials:
            state = TrialState.COMPLETE if t.values else TrialState.FAIL
            state = state if t.finished else TrialState.RUNNING
            if state == TrialState.COMPLETE and t.rung in hidden:
                continue
            fid = rungs[t.rung] / rungs[top]
            failed = state == TrialState.FAIL
            out.append(Observation(t.point, state, t.values, failed, fidelity=fid))
        return out

    def start(point: Point, rung: int, source: int | None) -> None:
        nonlocal spent
        cost = rungs[rung] - (rungs[rung - 1] if source is not None else 0)
        trials.append(Trial(len(trials), point, rung, source))
        spent += cost
        heapq.heappush(events, (clock + cost, len(trials) - 1))

    while True:
        while len(events) < workers:
            calib = None
            if auto:
                distrusted = distrusted_rungs(done, "accuracy", len(rungs))
                pairs = {c.rung: c.pairs for c in rung_correlations(done, "accuracy", len(rungs))}
                measured = frozenset(k for k in distrusted if pairs.get(k, 0) >= AUTO_MIN_PAIRS)
                entry = entry_rung(pairs, measured, len(rungs))
                distrusted = measured | unmeasured_rungs(pairs, len(rungs))
                hidden = measured if hide_distrusted else frozenset()
            else:  # fixed rungs: judged on the calibration configurations (the driver's rule)
                calib = calibration([t.record(top) for t in trials], len(rungs))
                distrusted = frozenset()
                if calib.done:
                    judged = rung_correlations(done, "accuracy", len(rungs), calib.roots)
                    distrusted = frozenset(c.rung for c in judged if c.distrusted)
                    pairs = {c.rung: c.pairs for c in judged}
                    entry = entry_rung(pairs, distrusted, len(rungs), min_pairs=1)
                hidden = distrusted if hide_distrusted else frozenset()
            entries = [
                RungEntry(t.number, t.rung, t.finished, t.values, t.promoted) for t in trials
            ]
            new_ok = rules.admits_new(spent, entries, entry)
            up = promotions(
                entries, problem.objectives, len(rungs), eta, draining=not new_ok,
                distrusted=distrusted,
            )  # fmt: skip
            if calib is not None:
                up = [*calib.pending, *(n for n in up if n not in calib.pending)]
            up = [n for n in up if rules.admits_promotion(spent, trials[n].rung)]
            if up:
                source = trials[up[0]]
                source.promoted = True
                start(source.point, source.rung + 1, source.number)
            elif new_ok:
                start(sampler.propose(history(), 1)[0], entry, None)
                entries_log.append(entry)
            else:
                break
        if not events:
            break
        clock, number = heapq.heappop(events)
        trial = trials[number]
        trial.finished = True
        trial.values = model.evaluate_at(trial.point, rungs[trial.rung], rungs[top]) or {}
        done.append(trial.record(top))
        finished_steps += rungs[trial.rung] - (
            rungs[trial.rung - 1] if trial.promoted_from is not None else 0
        )
        if trial.rung == top and trial.values:
            front.append(trial.values)
            clean += [v for v in [model.noise_free(trial.point)] if v]
            hv = hypervolume(frame, front)
        curve.append((finished_steps, hv))
    counts = [sum(t.rung == r for t in trials) for r in range(len(rungs))]
    roots = None if auto else calibration(done, len(rungs)).roots
    correlations = {
        c.rung: [c.rho, c.pairs] for c in rung_correlations(done, "accuracy", len(rungs), roots)
    }
    return {
        "curve": curve,
        "per_rung": counts,
        "time": clock,
        "entry": max(entries_log, default=0),
        "correlations": correlations,
        "hv_noise_free": hypervolume(frame, clean),
    }


def rung_spearman(cls: str, rungs: list[int], seed: int = 0, n: int = 200) -> list[float]:
    """Spearman of the accuracy at each lower rung with the top rung's, over ``n`` random
    configurations of seed ``seed`` (noise included)."""
    model = fidelity_model(cls, seed)
    sampler = make_sampler("random", model.problem.bound, model.problem.objectives, seed, {})
    points = sampler.propose([], n)
    rows = [[model.evaluate_at(p, s, rungs[-1]) for s in rungs] for p in points]
    rows = [r for r in rows if all(v is not None for v in r)]
    top = [r[-1]["accuracy"] for r in rows if r[-1] is not None]
    return [
        spearman([r[k]["accuracy"] for r in rows if r[k] is not None], top)
        for k in range(len(rungs) - 1)
    ]


def main(args: argparse.Namespace) -> None:
    classes = args.classes.split(",")
    unknown = [c for c in classes if c not in CLASSES and c != LOWCORR]
    if unknown:
        raise SystemExit(f"unknown classes {unknown}; classes: {', '.join(CLASSES)}, {LOWCORR}")
    rungs, n, top = args.rungs, args.configs, args.rungs[-1]
    budget = n * top
    arms = [a for a in args.arms.split(",") if a in BUDGET_ARMS]
    if not arms or "mobo+mf" in args.arms:  # bench/fidelity.py's default arms: these instead
        arms = list(BUDGET_ARMS)
    auto = auto_ladder(top, args.eta)
    print((__doc__ or "").split("\n\n")[0])
    print(
        f"budget_steps {budget} ({n} full-trial equivalents); mobo+rungs rungs {rungs}, "
        f"mobo+auto rungs {auto} (auto), eta {args.eta:g}, {args.workers} workers; seeds "
        f"{args.seeds}. HV = at {budget} cumulative steps; steps = spent in all."
    )
    if LOWCORR in classes:
        rho = rung_spearman(LOWCORR, rungs)
        print(
            f"  {LOWCORR}: Spearman of rungs {rungs[:-1]} with the top rung over 200 random "
            "configurations of seed 0: " + " / ".join(f"{r:.2f}" for r in rho)
        )
    results: dict[tuple[str, str, int], dict] = {}
    for s in args.seeds:
        for c in classes:
            for arm in arms:
                result = _run(arm, c, s, args, budget, rungs, auto)
                if result is None:
                    continue
                results[arm, c, s] = result
                curve = result["curve"]
                extra = (
                    f", entry rung {result['entry']}, rho {result['correlations']}"
                    if "+" in arm
                    else ""
                )
                print(
                    f"# {arm:10} {c:13} seed {s}: {curve[-1][0]:6} steps, HV@budget "
                    f"{hv_at(curve, budget):.3f}, final {curve[-1][1]:.3f}, per rung "
                    f"{result['per_rung']}{extra}{_noise_free(result)}, "
                    f"{result['seconds']:.0f} s",
                    flush=True,
                )
    table(classes, arms, results, args.seeds, budget)


def _noise_free(result: dict) -> str:
    clean = result.get("hv_noise_free")  # runs cached before it was recorded lack it
    return "" if clean is None else f", noise-free HV {clean:.3f}"


def _run(arm: str, c: str, s: int, args: argparse.Namespace, budget: int, rungs: list[int],
         auto: list[int]) -> dict | None:  # fmt: skip
    options = args.mobo_options
    if arm == "mobo":  # bench/fidelity.py's own arm, same cache key (lowcorr's top is base's)
        cls = "base" if c == LOWCORR else c
        job = {"arm": "mobo", "cls": cls, "seed": s, "configs": args.configs,
               "rungs": [rungs[-1]], "eta": args.eta, "workers": args.workers,
               "options": options}  # fmt: skip
        return cached(args.cache, job, args.cached_only)
    arm_rungs = auto if arm == "mobo+auto" else rungs
    job = {"arm": arm, "cls": c, "seed": s, "budget": budget, "eta": args.eta,
           "workers": args.workers, "options": options, "auto": arm == "mobo+auto",
           "rungs": arm_rungs}  # fmt: skip
    if getattr(args, "show_distrusted", False):  # the rule before distrusted rungs were hidden
        job["hide_distrusted"] = False
        salt = {"budget_run": 2}  # fixed rungs calibrate
    else:  # budget_run 3: the sampler does not see the distrusted rungs' results
        salt = {"budget_run": 3}
    return cached(args.cache, job, args.cached_only, simulate_budget, prefix="fidb", salt=salt)


def table(classes: list[str], arms: list[str], results: dict, seeds: list[int],
          budget: int) -> None:  # fmt: skip
    print(f"\nHV at {budget} steps, median [IQR] over seeds (* = fewer seeds); steps spent")
    print(
        f"{'class':13} " + " ".join(f"{a:>30}" for a in arms) + "  rungs-mobo   auto-mobo  "
        "noise-free  paired (ahead)  verdict (mobo+rungs)"
    )
    wins, close = 0, 0
    measured = 0
    for c in classes:
        cells, medians, clean = [], {}, {}
        for arm in arms:
            runs = [results[arm, c, s] for s in seeds if (arm, c, s) in results]
            if not runs:
                cells.append(f"{'-':>30}")
                continue
            hvs = [hv_at(r["curve"], budget) for r in runs]
            steps = statistics.median(r["curve"][-1][0] for r in runs)
            medians[arm] = statistics.median(hvs)
            if all("hv_noise_free" in r for r in runs):
                clean[arm] = statistics.median(r["hv_noise_free"] for r in runs)
            cells.append(f"{_cell(hvs, len(seeds)) + f' {steps:5.0f}':>30}")
        delta = (
            medians["mobo+rungs"] - medians["mobo"]
            if "mobo+rungs" in medians and "mobo" in medians
            else math.nan
        )
        auto = medians.get("mobo+auto", math.nan) - medians.get("mobo", math.nan)
        # rungs - mobo on the top-rung trials' noise-free values: a noisy metric's measured HV
        # grows with the number of top-rung draws (the luckiest ones make the front)
        nf = clean.get("mobo+rungs", math.nan) - clean.get("mobo", math.nan)
        # per seed: the median of rungs - mobo on the same seed, and on how many it is >= 0
        paired = [
            hv_at(results["mobo+rungs", c, s]["curve"], budget)
            - hv_at(results["mobo", c, s]["curve"], budget)
            for s in seeds
            if ("mobo+rungs", c, s) in results and ("mobo", c, s) in results
        ]
        pair = (
            f"{statistics.median(paired):+.3f} ({sum(d >= 0 for d in paired)}/{len(paired)})"
            if paired
            else "-"
        )
        verdict = "-"
        if not math.isnan(delta):
            if c == LOWCORR:
                verdict = "met (within 0.02)" if delta >= -0.02 else "MISSED (> 0.02 behind)"
            else:
                measured += 1
                wins += delta >= 0
                close += delta >= -0.02
                verdict = (
                    "won" if delta >= 0 else ("behind <= 0.02" if delta >= -0.02 else "MISSED")
                )
        print(
            f"{c:13} " + " ".join(cells) + f"  {delta:+10.3f}  {auto:+10.3f}  {nf:+10.3f}  "
            f"{pair:>14}  {verdict}"
        )
    if measured:
        print(
            f"\nmobo+rungs >= mobo on {wins} of {measured} synthetic classes measured (target: >= "
            f"12 of 16); within 0.02 on {close} of {measured} (target: all)"
        )
