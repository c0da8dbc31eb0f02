"""Hypervolume against cumulative training steps on the demo task, with and without
multi-fidelity search (real training).

Four studies per seed, derived from ``studies/demo.yaml`` (MiniLM-L6 on TREC-6, layer-wise
LoRA ranks, objectives accuracy / trainable_params / peak_memory_mb), run in process one after
the other with :func:`autopeft.run.driver.run_study`:

* ``mobo``: N configurations (12) at full fidelity (50 steps);
* ``random@3x``: the random sampler, 3N configurations at full fidelity (its curve after its
  first N configurations is ``random@N``);
* ``mobo+mf``: mobo with ``fidelity.rungs`` (``--rungs``, default 6,17,50, reduction factor
  ``--factor`` 3): asynchronous multi-objective successive halving, as many configurations as
  keep its expected training steps within mobo's N x 50 (computed from the rung schedule as if
  exactly ``floor(m / factor)`` of a rung moved up; asynchronous promotions can move up many
  more, see ``bench/results/fidelity_demo.txt``, so the steps actually spent are printed);
* ``random+sh``: the random sampler with the same rungs and configurations.

For each seed the hypervolume is framed once (:class:`autopeft.core.hypervolume.Frame`) by the
union of every arm's top-rung (COMPLETE) trials, so all curves compare. An arm's curve is its
HV over its top-rung trials after each finished trial, against the cumulative training steps
of every finished trial (partial rungs, which are stored PRUNED, and failures included), in
finish order (the in-process executor runs one trial at a time, so trial number order).

    python bench/fidelity_demo.py --quick      # end to end in a few minutes (N=3, steps/10)
    python bench/fidelity_demo.py --seeds 1    # ~60-75 min on 2 shared, loaded CPU cores

The target (the issue's): ``mobo+mf`` reaches ``random@3x``'s final HV with at most 1/3 of
``random@3x``'s training steps. Studies live in one SQLite file under ``--workdir``; a rerun
resumes them. Not a test.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import yaml
from warm_start import ROOT, SPACE, _spec  # bench/ is the script's directory

FULL = "random@3x"


def expected_rung_counts(configs: int, factor: float, rungs: int) -> list[int]:
    """Trials per rung under the promotion rule once the study has drained: the best
    ``floor(m / factor)`` of a rung move up, at least one (asynchronous promotions can add a
    few: a trial promoted early may drop out of the final top share)."""
    counts = [configs]
    for _ in range(rungs - 1):
        counts.append(max(math.floor(counts[-1] / factor + 1e-9), 1 if counts[-1] else 0))
    return counts


def expected_steps(configs: int, rungs: list[int], factor: float) -> int:
    counts = expected_rung_counts(configs, factor, len(rungs))
    return sum(c * s for c, s in zip(counts, rungs, strict=True))


def mf_configs(budget: int, rungs: list[int], factor: float) -> int:
    """The most configurations whose expected training steps stay within ``budget``."""
    n = 1
    while expected_steps(n + 1, rungs, factor) <= budget:
        n += 1
    return n


def arm_specs(args: argparse.Namespace, seed: int) -> dict[str, tuple[Path, int]]:
    """Write the four specs of one seed; arm -> (spec path, configurations)."""
    base = _spec(args.workdir / "base", "trec6", seed, args.n, args.steps, None, SPACE)
    spec = yaml.safe_load(base.read_text())
    if args.quick:
        spec["fidelity"]["eval_examples"] = 100
    mf_n = mf_configs(args.n * args.steps, args.rungs, args.factor)
    out = {}
    for arm, sampler, configs, rungs in [
        ("mobo+mf", spec["sampler"], mf_n, args.rungs),
        (FULL, {"name": "random"}, 3 * args.n, None),
        ("mobo", spec["sampler"], args.n, None),
        ("random+sh", {"name": "random"}, mf_n, args.rungs),
    ]:
        name = f"fd_{arm.replace('@', '').replace('+', '_')}_s{seed}"
        fidelity = dict(spec["fidelity"])
        if rungs:
            fidelity.update(rungs=list(rungs), reduction_factor=args.factor)
        derived = {**spec, "name": name, "sampler": sampler, "n_trials": configs}
        derived["fidelity"] = fidelity
        path = args.workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(derived, sort_keys=False))
        out[arm] = (path, configs)
    return out


def url(workdir: Path) -> str:
    return f"sqlite:///{workdir / 'fidelity_demo.db'}"


def run_arms(args: argparse.Namespace, seed: int) -> dict[str, tuple[str, int]]:
    """Run (or resume) the four studies of one seed; arm -> (study name, configurations)."""
    from autopeft.run.driver import run_study

    walls_file = args.workdir / "walls.json"
    walls = json.loads(walls_file.read_text()) if walls_file.exists() else {}
    names = {}
    for arm, (path, configs) in arm_specs(args, seed).items():
        t0 = time.perf_counter()
        run_study(path, storage=url(args.workdir), trials=configs)
        wall = time.perf_counter() - t0
        walls[path.stem] = walls.get(path.stem, 0.0) + wall
        walls_file.write_text(json.dumps(walls, indent=1))
        print(f"# {path.stem}: {wall:.0f} s wall this run", flush=True)
        names[arm] = (path.stem, configs)
    return names


def steps_of(record, rungs: list[int], top: int) -> int:
    """Training steps a finished trial ran: ``metrics["steps"]``, or for a failure stored
    without it, its rung's scheduled steps (charged in full)."""
    if "steps" in record.metrics:
        return int(record.metrics["steps"])
    return rungs[record.rung or 0] if rungs else top


def curve(view, frame) -> tuple[list[tuple[int, float]], list[int], int]:
    """(cumulative steps, HV) after each finished trial; trials per rung; failures."""
    from autopeft.core.hypervolume import hypervolume

    rungs, top = view.rung_steps(), int(view.spec["fidelity"]["max_steps"])
    done = sorted((r for r in view.records if r.state.is_finished()), key=lambda r: r.number)
    points, front, total, failed = [], [], 0, 0
    per_rung = [0] * max(1, len(rungs))
    for r in done:
        total += steps_of(r, rungs, top)
        per_rung[r.rung or 0] += 1
        failed += r.state == "FAIL"
        if r.state == "COMPLETE" and r.values:
            front.append(r.values)
        points.append((total, hypervolume(frame, front)))
    return points, per_rung, failed


def first_reach(points: list[tuple[int, float]], goal: float) -> int | None:
    return next((s for s, hv in points if hv >= goal - 1e-12), None)


def at(points: list[tuple[int, float]], steps: int) -> float | None:
    """HV with ``steps`` training steps spent; None past the arm's last trial."""
    if not points or steps > points[-1][0]:
        return None
    return max((hv for s, hv in points if s <= steps), default=0.0)


def report(args: argparse.Namespace, seed: int, names: dict[str, tuple[str, int]]) -> bool:
    from autopeft.core.hypervolume import Frame
    from autopeft.exceptions import StudyError
    from autopeft.results.views import load_view

    views = {}
    for arm in ("mobo", FULL, "mobo+mf", "random+sh"):
        try:
            views[arm] = load_view(names[arm][0], url(args.workdir))
        except StudyError:  # --report-only before the arm started
            print(f"# {arm}: study {names[arm][0]} not started yet")
    if FULL not in views or "mobo+mf" not in views:
        return False
    top = [r for v in views.values() for r in v.complete() if r.values]
    frame = Frame.from_observations(views[FULL].objectives, top)
    walls_file = args.workdir / "walls.json"
    walls = json.loads(walls_file.read_text()) if walls_file.exists() else {}
    curves = {}
    print(f"\n== seed {seed}: frame = {len(top)} top-rung trials of the four arms ==")
    print(f"{'arm':10s} {'configs':>7s} {'per rung':>14s} {'failed':>6s} {'steps':>6s} "
          f"{'final HV':>8s} {'wall s':>7s} {'trial s':>7s}")  # fmt: skip
    for arm, view in views.items():
        points, per_rung, failed = curve(view, frame)
        curves[arm] = points
        trial_s = sum(
            sum(r.metrics.get(k, 0.0) for k in ("setup_seconds", "train_seconds", "eval_seconds"))
            for r in view.records
        )
        rungs = "/".join(map(str, per_rung))
        print(f"{arm:10s} {names[arm][1]:7d} {rungs:>14s} {failed:6d} {points[-1][0]:6d} "
              f"{points[-1][1]:8.3f} {walls.get(names[arm][0], float('nan')):7.0f} "
              f"{trial_s:7.0f}")  # fmt: skip
    n = names["mobo"][1]
    curves.setdefault("mobo", [])
    curves.setdefault("random+sh", [])
    curves[f"random@{n}"] = curves[FULL][:n]
    goal, budget = curves[FULL][-1][1], curves[FULL][-1][0]
    print(f"\nrandom@{n}: HV {curves[f'random@{n}'][-1][1]:.3f} with "
          f"{curves[f'random@{n}'][-1][0]} steps")  # fmt: skip
    print(f"{FULL} ({3 * n} configurations): final HV {goal:.3f} with {budget} steps")
    print(f"steps to first reach {FULL}'s final HV {goal:.3f} (fraction of its {budget} steps):")
    for arm, points in curves.items():
        if not points:
            continue
        hit = first_reach(points, goal)
        print(f"  {arm:10s} " + (f"{hit:6d} ({hit / budget:.3f})" if hit else "not reached "
              f"(final HV {points[-1][1]:.3f} with {points[-1][0]} steps)"))  # fmt: skip
    hit = first_reach(curves["mobo+mf"], goal)
    met = hit is not None and hit <= budget / 3
    print(f"target (mobo+mf reaches it with <= 1/3 of {FULL}'s steps = {budget / 3:.0f}): "
          f"{'MET' if met else 'NOT MET'}")  # fmt: skip
    step = args.checkpoint or max(1, budget // 12)
    marks = list(range(step, budget + step, step))
    order = ["mobo", f"random@{n}", FULL, "mobo+mf", "random+sh"]
    print(
        f"\nHV against cumulative training steps ('-': the arm had finished)\n{'steps':>6s} "
        + " ".join(f"{a:>10s}" for a in order)
    )
    for m in marks:
        cells = [at(curves[a], m) for a in order]
        print(f"{m:6d} " + " ".join(f"{'-' if c is None else f'{c:.3f}':>10s}" for c in cells))
    return met


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--n", type=int, default=12, help="mobo's configurations (N)")
    parser.add_argument("--steps", type=int, default=50, help="full-fidelity training steps")
    parser.add_argument("--rungs", default="6,17,50", help="steps per rung; the last = --steps")
    parser.add_argument("--factor", type=float, default=3.0, help="reduction factor")
    parser.add_argument("--checkpoint", type=int, default=150, help="table row every N steps")
    parser.add_argument("--quick", action="store_true", help="N=3, steps and rungs / 10")
    parser.add_argument("--workdir", type=Path, default=ROOT / "runs" / "fidelity_demo")
    parser.add_argument("--report-only", action="store_true", help="run nothing, report")
    args = parser.parse_args()
    args.rungs = [int(s) for s in args.rungs.split(",")]
    if args.quick:
        args.n, args.steps = 3, max(2, args.steps // 10)
        args.rungs = sorted({max(1, round(s / 10)) for s in args.rungs})
        args.checkpoint = max(1, args.checkpoint // 10)
        args.workdir = args.workdir.with_name(args.workdir.name + "_quick")
    if args.rungs[-1] != args.steps:
        parser.error(f"the last rung ({args.rungs[-1]}) must be --steps ({args.steps})")
    args.workdir = args.workdir.resolve()
    (args.workdir / "base").mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    mf_n = mf_configs(args.n * args.steps, args.rungs, args.factor)
    expected = expected_rung_counts(mf_n, args.factor, len(args.rungs))
    print(f"# N={args.n} at {args.steps} steps (budget {args.n * args.steps} steps); rungs "
          f"{args.rungs}, factor {args.factor:g}: {mf_n} configurations, expected per rung "
          f"{expected} = {expected_steps(mf_n, args.rungs, args.factor)} steps; "
          f"workdir {args.workdir}", flush=True)  # fmt: skip
    met = []
    t0 = time.perf_counter()
    for seed in range(args.seeds):
        if args.report_only:
            names = {
                arm: (path.stem, configs) for arm, (path, configs) in arm_specs(args, seed).items()
            }
        else:
            names = run_arms(args, seed)
        met.append(report(args, seed, names))
    print(f"\ntarget met in {sum(met)} of {len(met)} seeds; {time.perf_counter() - t0:.0f} s wall")


if __name__ == "__main__":
    main()
