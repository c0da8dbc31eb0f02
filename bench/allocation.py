"""Allocation strategies vs uniform ranks on the demo task, at equal trainable parameters.

    OMP_NUM_THREADS=1 python bench/allocation.py     # 3 budgets x 3 strategies x 3 seeds
    python bench/allocation.py --budgets 20000,150000 --seeds 0,1     # smaller

The demo task (MiniLM-L6 on TREC-6, ``studies/demo_allocated.yaml``: 50 steps, batch 16, seq 24,
validation accuracy on 400 held-out examples). For each budget every strategy allocates LoRA
ranks over all linear cells (temperature fixed, ``--temperature``) and trains with the same
learning rate; seeds vary the LoRA initialisation and the batch order (the classification
head is initialised under the spec's seed, as in a study). The profiles are measured once
(timed) and stored in ``--storage``; a second run reads them back. Prints the actual
trainable parameters per (budget, strategy), accuracy mean +- std over seeds, and the
profile cost in seconds. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autopeft.run.prepare import prepare_study  # noqa: E402
from autopeft.run.profiling import ensure_profiles, study_context  # noqa: E402
from autopeft.storage.records import placement_summary  # noqa: E402
from autopeft.storage.store import Store  # noqa: E402
from autopeft.trial.runner import TrialRequest, run_trial  # noqa: E402

STRATEGIES = ("uniform", "sensitivity", "importance")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=str(ROOT / "studies" / "demo_allocated.yaml"))
    parser.add_argument("--budgets", default="20000,50000,150000")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--learning-rate", type=float, default=5e-3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--storage", default=f"sqlite:///{ROOT / 'bench_allocation.db'}")
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench_allocation.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    budgets = [int(b) for b in args.budgets.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    strategies = args.strategies.split(",")

    prepared = prepare_study(args.spec, storage=args.storage)
    t0 = time.perf_counter()
    kinds = [s for s in strategies if s != "uniform"]
    found = ensure_profiles(prepared, Store(prepared.url), kinds=kinds)
    lookup = time.perf_counter() - t0
    for kind, (_, profile) in found.items():
        print(
            f"profile {kind}: measured in {profile.seconds:.1f} s "
            f"(this run's lookup or measurement {lookup:.1f} s)"
        )
    ctx = study_context(prepared)
    rows = []
    number = 0
    for budget in budgets:
        for strategy in strategies:
            point = {
                "learning_rate": args.learning_rate,
                "allocation.strategy": strategy,
                "allocation.budget": budget,
                "allocation.temperature": args.temperature,
            }
            point = {d.name: point[d.name] for d in prepared.bound.dimensions}
            compiled = prepared.bound.compile(point)
            accs, secs = [], []
            for seed in seeds:
                result = run_trial(ctx, TrialRequest(number, compiled, seed))
                number += 1
                if not result.ok:
                    print(f"  FAILED {budget} {strategy} seed {seed}: {result.error}")
                    continue
                accs.append(result.metrics["accuracy"])
                secs.append(result.metrics["train_seconds"])
                print(
                    f"  budget {budget:>7,} {strategy:<11} seed {seed}: "
                    f"acc {accs[-1]:.4f} ({secs[-1]:.1f} s)",
                    flush=True,
                )
            rows.append(
                {
                    "budget": budget,
                    "strategy": strategy,
                    "params": compiled.trainable_params,
                    "placement": placement_summary(compiled.placement),
                    "ranks": compiled.placement,
                    "accuracy": accs,
                    "mean": statistics.fmean(accs) if accs else None,
                    "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                    "train_seconds": statistics.fmean(secs) if secs else None,
                }
            )
    _print(rows, found, args.temperature, seeds)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps(
            {
                "rows": rows,
                "profile_seconds": {k: p.seconds for k, (_, p) in found.items()},
                "temperature": args.temperature,
                "learning_rate": args.learning_rate,
                "seeds": seeds,
            },
            indent=2,
        )
    )
    print(f"results: {args.out}")


def _print(rows: list[dict], found: dict, temperature: float, seeds: list[int]) -> None:
    print(f"\ntemperature {temperature}, seeds {seeds}; accuracy = mean +- std over seeds")
    print(
        f"{'budget':>8} {'strategy':<12} {'params':>8} {'accuracy':>16}  "
        "ranks (layer:q k v o up down)"
    )
    for r in rows:
        acc = "-" if r["mean"] is None else f"{r['mean']:.4f} +- {r['std']:.4f}"
        ranks = " | ".join(
            f"{layer}:" + " ".join(str(cells.get(m, 0)) for m in ("q", "k", "v", "o", "up", "down"))
            for layer, cells in sorted(r["ranks"].items())
        )
        print(f"{r['budget']:>8,} {r['strategy']:<12} {r['params']:>8,} {acc:>16}  {ranks}")
    for kind, (_, p) in found.items():
        print(f"profile cost {kind}: {p.seconds:.1f} s (measured together with the other kinds)")


if __name__ == "__main__":
    main()
