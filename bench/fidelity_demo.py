"""Hypervolume against cumulative training steps on the demo task, plain mobo against mobo
with rungs under a budget in training steps (real training).

Per seed, studies derived from ``studies/demo.yaml`` (MiniLM-L6 on TREC-6, layer-wise LoRA
ranks, objectives accuracy / trainable_params / peak_memory_mb; its references left out), run
in process with :func:`autopeft.run.driver.run_study`, one trial at a time, one thread each:

* ``mobo``: N configurations (``--n``, 24) at full fidelity (``--steps``, 50): N x 50 = 1,200
  training steps;
* ``mobo+mf``: mobo with ``fidelity.rungs`` (``--rungs``, default 6,17,50, reduction factor
  ``--factor`` 3) and ``fidelity.budget_steps`` = N x 50, ``n_trials`` unset, so the step
  budget ends it (:mod:`autopeft.search.budget`: promotions continue their source's
  checkpoint and cost only the steps between the rungs; the first 6 configurations are
  trained to the top rung to calibrate the rungs);
* ``mobo+auto``: the same with ``fidelity.rungs: auto`` (``max_steps / factor ** k``: 2, 6,
  17, 50 at 50 steps and factor 3);
* off by default, with ``--arms``: ``random@3x`` (the random sampler, 3N configurations at full
  fidelity) and ``random+sh`` (the random sampler through ``--rungs`` under the same budget).

For each seed the hypervolume is framed once (:class:`autopeft.core.hypervolume.Frame`) by the
union of every arm's top-rung (COMPLETE) trials, so all curves compare. An arm's curve is its
HV over its top-rung trials after each finished trial, against the cumulative training steps
charged to every finished trial (what it trained: a promotion only the steps past its source;
partial rungs, stored PRUNED, and failures included), in trial-number order (one trial at a
time, so finish order). HV at S steps: the HV after the last trial that finished within S
cumulative steps (an arm that stopped short of S: its final HV).

    python bench/fidelity_demo.py --quick      # end to end in a few minutes (N and steps / 10)
    python bench/fidelity_demo.py --seeds 1    # 1-2 h on 2 shared, loaded CPU cores
    python bench/fidelity_demo.py --jobs 3     # the arms of a seed in 3 processes at once

The targets (autopeft issue 28), for ``mobo+mf`` and ``mobo+auto`` against ``mobo``: HV at
N/2 x 50 (600) and N x 50 (1,200) cumulative steps at least plain mobo's, and plain mobo's
600-step HV reached within 60 % of 600 steps. Each arm's studies live in its own SQLite file
under ``--workdir``; a rerun resumes them. ``--report-only`` reports what is stored: an
unfinished arm (a trial running, or fewer configurations than asked) is marked PARTIAL, its HV
at step counts it has not spent yet is '.', the targets it decides are "not measured yet", and
the HV of every arm at the steps all have spent is printed. After the seeds, the medians over
them and the targets on the medians (the issue's reading: 3 seeds, medians). ``--run mobo+mf``
re-runs only that arm and reports it beside the others' stored studies (after a change the
others do not use: their specs, written by newer code, may no longer match them). Not a test.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import yaml
from warm_start import ROOT, SPACE, _spec  # bench/ is the script's directory

PLAIN = "mobo"
STEP_ARMS = ("mobo+mf", "mobo+auto")
ARMS = (PLAIN, *STEP_ARMS, "random@3x", "random+sh")
DEFAULT_ARMS = f"{PLAIN},{','.join(STEP_ARMS)}"
#: Fraction of the half budget (600 steps) within which an arm must reach mobo's HV there.
REACH = 0.6


def study_name(arm: str, seed: int) -> str:
    return f"fd_{arm.replace('@', '').replace('+', '_')}_s{seed}"


def url(workdir: Path, arm: str) -> str:
    """One SQLite file per arm, so arms can run in parallel processes."""
    return f"sqlite:///{workdir / (study_name(arm, 0)[:-3] + '.db')}"


def arm_configs(args: argparse.Namespace, arm: str) -> int | None:
    """The configurations an arm runs; None: its step budget ends the study."""
    return {PLAIN: args.n, "random@3x": 3 * args.n}.get(arm)


def arm_specs(
    args: argparse.Namespace, seed: int, arms: list[str]
) -> dict[str, tuple[Path, int | None]]:
    """Write the specs of ``arms`` for one seed; arm -> (spec path, configurations; None: the
    step budget ends the study)."""
    base = _spec(args.workdir / "base", "trec6", seed, args.n, args.steps, None, SPACE)
    spec = yaml.safe_load(base.read_text())
    spec.pop("references", None)  # trained beside the search, not part of the comparison
    if args.quick:
        spec["fidelity"]["eval_examples"] = 100
    budget = args.n * args.steps
    mobo, rand = spec["sampler"], {"name": "random"}
    table = {
        PLAIN: (mobo, None),
        "mobo+mf": (mobo, list(args.rungs)),
        "mobo+auto": (mobo, "auto"),
        "random@3x": (rand, None),
        "random+sh": (rand, list(args.rungs)),
    }
    out: dict[str, tuple[Path, int | None]] = {}
    for arm in arms:
        (sampler, rungs), configs = table[arm], arm_configs(args, arm)
        name = study_name(arm, seed)
        fidelity = dict(spec["fidelity"])
        derived = {**spec, "name": name, "sampler": sampler}
        if rungs:
            fidelity.update(rungs=rungs, reduction_factor=args.factor, budget_steps=budget)
            derived.pop("n_trials", None)
        else:
            derived["n_trials"] = configs
        derived["fidelity"] = fidelity
        path = args.workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(derived, sort_keys=False))
        out[arm] = (path, configs)
    return out


def run_arm(workdir: Path, arm: str, path: Path, configs: int | None) -> float:
    """Run (or resume) one study; its wall seconds this run."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from autopeft.run.driver import run_study

    t0 = time.perf_counter()
    run_study(path, storage=url(workdir, arm), trials=configs)
    wall = time.perf_counter() - t0
    print(f"# {path.stem}: {wall:.0f} s wall this run", flush=True)
    return wall


def run_arms(args: argparse.Namespace, seed: int) -> None:
    """Run (or resume) the studies of one seed, ``--jobs`` at a time."""
    specs = arm_specs(args, seed, args.run)
    walls_file = args.workdir / "walls.json"
    walls = json.loads(walls_file.read_text()) if walls_file.exists() else {}
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = {
            arm: pool.submit(run_arm, args.workdir, arm, path, configs)
            for arm, (path, configs) in specs.items()
        }
        for arm, future in futures.items():
            name = specs[arm][0].stem
            walls[name] = walls.get(name, 0.0) + future.result()
            walls_file.write_text(json.dumps(walls, indent=1))


def curve(view, frame) -> tuple[list[tuple[int, float]], list[int], int, int]:
    """(cumulative charged steps, HV) after each finished trial; trials per rung; new
    configurations (trials not promoted from another); failures."""
    from autopeft.core.hypervolume import hypervolume

    rungs = view.rung_steps() or [int(view.spec["fidelity"]["max_steps"])]
    done = sorted(
        (r for r in view.records if r.state.is_finished() and r.reference is None),
        key=lambda r: r.number,
    )
    points, front, total, failed, configs = [], [], 0, 0, 0
    per_rung = [0] * len(rungs)
    for r in done:
        total += r.charged_steps(rungs)
        per_rung[r.rung or 0] += 1
        configs += r.promoted_from is None
        failed += r.state == "FAIL"
        if r.state == "COMPLETE" and r.values:
            front.append(r.values)
        points.append((total, hypervolume(frame, front)))
    return points, per_rung, configs, failed


def first_reach(points: list[tuple[int, float]], goal: float) -> int | None:
    return next((s for s, hv in points if hv >= goal - 1e-12), None)


def at(points: list[tuple[int, float]], steps: int) -> float | None:
    """HV with ``steps`` training steps spent; None past the arm's last trial."""
    if not points or steps > points[-1][0]:
        return None
    return hv_within(points, steps)


def hv_within(points: list[tuple[int, float]], steps: int) -> float:
    """HV after the last trial that finished within ``steps`` cumulative steps."""
    return max((hv for s, hv in points if s <= steps), default=0.0)


def hv_by(points: list[tuple[int, float]], steps: int, done: bool) -> float | None:
    """:func:`hv_within`, or None while an unfinished arm has not spent ``steps`` yet."""
    if not done and (not points or points[-1][0] < steps):
        return None
    return hv_within(points, steps)


def cell(value: float | None, width: int) -> str:
    return f"{'.' if value is None else f'{value:.3f}':>{width}s}"


def finished(view, configs: int | None) -> bool:
    """No trial running (a killed run leaves its trials RUNNING until resumed) and, for an arm
    with a configuration count, that many configurations finished."""
    records = [r for r in view.records if r.reference is None]
    if any(r.state == "RUNNING" for r in records):
        return False
    done = sum(r.state.is_finished() and r.promoted_from is None for r in records)
    return configs is None or done >= configs


def report(
    args: argparse.Namespace, seed: int
) -> tuple[dict[str, bool | None], dict[str, tuple[float | None, float | None, float | None]]]:
    """Print one seed's table; return target -> met (None: not measurable yet, a study is
    unfinished), for each step-budget arm that started, and arm -> (HV at half the steps, HV
    at all of them, the fraction of half at which it reached mobo's half-step HV: inf if it
    did not; None where not measured yet). Unfinished arms are marked PARTIAL; their HV at a
    step count they have not spent yet is '.'."""
    from autopeft.core.hypervolume import Frame
    from autopeft.exceptions import StudyError
    from autopeft.results.views import load_view

    views = {}
    for arm in args.arms:
        try:
            views[arm] = load_view(study_name(arm, seed), url(args.workdir, arm))
        except StudyError:  # --report-only before the arm started
            print(f"# {arm}: study {study_name(arm, seed)} not started yet")
    if PLAIN not in views:
        return {}, {}
    top = [r for v in views.values() for r in v.complete() if r.values and r.reference is None]
    frame = Frame.from_observations(views[PLAIN].objectives, top)
    walls_file = args.workdir / "walls.json"
    walls = json.loads(walls_file.read_text()) if walls_file.exists() else {}
    half, full = args.n * args.steps // 2, args.n * args.steps
    curves = {arm: curve(view, frame) for arm, view in views.items()}
    done = {arm: finished(view, arm_configs(args, arm)) for arm, view in views.items()}
    goal = hv_by(curves[PLAIN][0], half, done[PLAIN])
    print(f"\n== seed {seed}: frame = {len(top)} top-rung trials of {len(views)} arms ==")
    print(f"{'arm':10s} {'configs':>7s} {'per rung':>12s} {'failed':>6s} {'steps':>6s} "
          f"{f'HV@{half}':>7s} {f'HV@{full}':>8s} {'reach':>6s} {'frac':>5s} {'wall s':>7s} "
          f"{'trial s':>7s}")  # fmt: skip
    for arm, view in views.items():
        points, per_rung, configs, failed = curves[arm]
        trial_s = sum(
            sum(r.metrics.get(k, 0.0) for k in ("setup_seconds", "train_seconds", "eval_seconds"))
            for r in view.records
        )
        hit = None if goal is None else first_reach(points, goal)
        reach = f"{hit:6d} {hit / half:5.2f}" if hit is not None else f"{'-':>6s} {'-':>5s}"
        wall = walls.get(study_name(arm, seed), float("nan"))
        print(f"{arm:10s} {configs:7d} {'/'.join(map(str, per_rung)):>12s} {failed:6d} "
              f"{points[-1][0] if points else 0:6d} {cell(hv_by(points, half, done[arm]), 7)} "
              f"{cell(hv_by(points, full, done[arm]), 8)} {reach} {wall:7.0f} {trial_s:7.0f}"
              + ("" if done[arm] else "  PARTIAL (unfinished)"))  # fmt: skip
    print(f"(configs: new configurations; steps: charged in all; reach: cumulative steps at which "
          f"the arm first had mobo's {half}-step HV "
          f"{'(not measured yet)' if goal is None else f'{goal:.3f}'}, frac: that / {half}; "
          "wall s: the arm's wall seconds, summed over runs)")  # fmt: skip
    figures = {}
    for arm, (points, *_) in curves.items():
        hit = None if goal is None else first_reach(points, goal)
        frac = None if goal is None else math.inf if hit is None else hit / half
        if frac == math.inf and not done[arm]:
            frac = None
        figures[arm] = (hv_by(points, half, done[arm]), hv_by(points, full, done[arm]), frac)
    met: dict[str, bool | None] = {}
    for arm in STEP_ARMS:
        if arm not in curves:
            continue
        points = curves[arm][0]
        for steps in (half, full):
            mine = hv_by(points, steps, done[arm])
            plain = hv_by(curves[PLAIN][0], steps, done[PLAIN])
            ok = None if mine is None or plain is None else mine >= plain - 1e-12
            met[f"{arm}: HV@{steps} >= mobo's"] = ok
        hit = None if goal is None else first_reach(points, goal)
        ok = None if goal is None else hit is not None and hit <= REACH * half
        if ok is False and not done[arm] and points and points[-1][0] < REACH * half:
            ok = None  # may still reach it within the steps
        met[f"{arm}: reaches mobo's {half}-step HV within {REACH:.0%} of {half}"] = ok
    if not all(done.values()):
        common = min(c[0][-1][0] if c[0] else 0 for c in curves.values())
        print(
            f"PARTIAL: HV at the {common} cumulative steps every arm has spent: "
            + ", ".join(f"{a} {hv_within(c[0], common):.3f}" for a, c in curves.items())
        )
    for target, ok in met.items():
        verdict = "not measured yet (PARTIAL)" if ok is None else "met" if ok else "MISSED"
        print(f"target {target}: {verdict}")
    step = max(1, min(args.checkpoint, full // 8))
    print(
        f"\nHV against cumulative training steps ('-': the arm had finished; '.': not there yet)"
        f"\n{'steps':>6s} " + " ".join(f"{a:>10s}" for a in curves)
    )
    for m in range(step, full + step, step):
        cells = [at(c[0], m) if done[a] else hv_by(c[0], m, False) for a, c in curves.items()]
        marks = ["-" if done[a] else "." for a in curves]
        print(
            f"{m:6d} "
            + " ".join(
                f"{k if c is None else f'{c:.3f}':>10s}" for c, k in zip(cells, marks, strict=True)
            )
        )
    return met, figures


def medians(
    args: argparse.Namespace,
    figures: list[dict[str, tuple[float | None, float | None, float | None]]],
) -> None:
    """The issue's targets on the medians over the seeds measured (each figure's median over the
    seeds where it was measured; a reach fraction of inf: mobo's half-step HV never reached)."""
    half, full = args.n * args.steps // 2, args.n * args.steps
    columns = (f"HV@{half}", f"HV@{full}", "reach frac")

    def median(arm: str, k: int) -> float | None:
        values = [v for f in figures if arm in f and (v := f[arm][k]) is not None]
        return statistics.median(values) if values else None

    arms = list(dict.fromkeys(a for f in figures for a in f))
    print(f"\nmedians over {len(figures)} seeds (n: seeds where measured)")
    print(f"{'arm':10s} " + " ".join(f"{c:>14s}" for c in columns))
    for arm in arms:
        cells = []
        for k in range(3):
            n = sum(1 for f in figures if arm in f and f[arm][k] is not None)
            m = median(arm, k)
            cells.append(f"{'-' if m is None else f'{m:.3f}'} (n={n})")
        print(f"{arm:10s} " + " ".join(f"{c:>14s}" for c in cells))
    for arm in arms:
        if arm == PLAIN:
            continue
        for k, label in ((0, f"HV@{half} >= mobo's"), (1, f"HV@{full} >= mobo's")):
            mine, plain = median(arm, k), median(PLAIN, k)
            ok = None if mine is None or plain is None else mine >= plain - 1e-12
            print(f"target on medians {arm}: {label}: {_verdict(ok)}")
        frac = median(arm, 2)
        ok = None if frac is None else frac <= REACH
        label = f"reaches mobo's {half}-step HV within {REACH:.0%} of {half}"
        print(f"target on medians {arm}: {label}: {_verdict(ok)}")


def _verdict(ok: bool | None) -> str:
    return "not measured yet" if ok is None else "met" if ok else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--n", type=int, default=24, help="mobo's configurations (N)")
    parser.add_argument("--steps", type=int, default=50, help="full-fidelity training steps")
    parser.add_argument("--rungs", default="6,17,50", help="steps per rung; the last = --steps")
    parser.add_argument("--factor", type=float, default=3.0, help="reduction factor")
    parser.add_argument("--arms", default=DEFAULT_ARMS, help=f"of {','.join(ARMS)}")
    parser.add_argument(
        "--run", default="", help="run only these of --arms (default: all); the rest are reported"
    )
    parser.add_argument("--jobs", type=int, default=1, help="arms run at once (processes)")
    parser.add_argument("--checkpoint", type=int, default=150, help="table row every N steps")
    parser.add_argument("--quick", action="store_true", help="N and steps (and rungs) / 10")
    parser.add_argument("--workdir", type=Path, default=ROOT / "runs" / "fidelity_demo")
    parser.add_argument("--report-only", action="store_true", help="run nothing, report")
    args = parser.parse_args()
    args.rungs = [int(s) for s in args.rungs.split(",")]
    args.arms = [a for a in args.arms.split(",") if a]
    if (unknown := [a for a in args.arms if a not in ARMS]) or PLAIN not in args.arms:
        parser.error(f"unknown arms {unknown}" if unknown else f"--arms needs {PLAIN}")
    args.run = [a for a in args.run.split(",") if a] or args.arms
    if stray := [a for a in args.run if a not in args.arms]:
        parser.error(f"--run names arms not in --arms: {stray}")
    if args.quick:
        args.n, args.steps = max(2, args.n // 10), max(2, args.steps // 10)
        args.rungs = sorted({max(1, round(s / 10)) for s in args.rungs})
        args.checkpoint = max(1, args.checkpoint // 10)
        args.workdir = args.workdir.with_name(args.workdir.name + "_quick")
    if args.rungs[-1] != args.steps:
        parser.error(f"the last rung ({args.rungs[-1]}) must be --steps ({args.steps})")
    args.workdir = args.workdir.resolve()
    (args.workdir / "base").mkdir(parents=True, exist_ok=True)
    print(f"# arms {','.join(args.arms)}; mobo: N={args.n} at {args.steps} steps; step-budget "
          f"arms: budget_steps {args.n * args.steps}, rungs {args.rungs} / auto, factor "
          f"{args.factor:g}; workdir {args.workdir}", flush=True)  # fmt: skip
    met: list[dict[str, bool | None]] = []
    figures = []
    t0 = time.perf_counter()
    for seed in range(args.seeds):
        if not args.report_only:
            run_arms(args, seed)
        seed_met, seed_figures = report(args, seed)
        met.append(seed_met)
        figures.append(seed_figures)
    print(f"\n{time.perf_counter() - t0:.0f} s wall")
    for target in dict.fromkeys(t for m in met for t in m):
        measured = [ok for m in met if (ok := m.get(target)) is not None]
        print(f"target {target}: met in {sum(measured)} of {len(measured)} seeds measured")
    medians(args, figures)


if __name__ == "__main__":
    main()
