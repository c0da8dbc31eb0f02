"""Does the search's front hold on the held-out test split? The demo study, confirmed.

Runs the demo study (``studies/demo.yaml``: MiniLM-L6 on TREC-6, real training, in process),
then ``autopeft confirm`` on its front with ``--seeds`` seeds at the search's fidelity, scored
on the **test** split, which the search never saw. Prints, per front member, the search's
validation accuracy and rank beside the test-split mean ± std and rank, whether the member is
still on the front of the confirmed means, and a summary: members whose accuracy rank is
unchanged, Spearman's rank correlation, members still non-dominated.

    python bench/confirm_demo.py --seeds 3            # ~15-25 min on 2 shared CPU cores

The study and its confirmations live in ``--dir`` (default ``runs/confirm_demo``); a rerun
resumes the study and reuses stored confirmations. Not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _spec(out: Path, trials: int, seed: int) -> Path:
    import yaml

    spec = yaml.safe_load((ROOT / "studies" / "demo.yaml").read_text())
    spec.update(
        name=f"demo_s{seed}",
        n_trials=trials,
        seed=seed,
        search_space=str(ROOT / "search_spaces" / "lora_layerwise.yaml"),
        storage=f"sqlite:///{out / 'confirm_demo.db'}",
        executor={"name": "inprocess", "threads": 1},
    )
    path = out / f"demo_s{seed}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _ranks(values: list[float]) -> list[int]:
    """1 = best (largest); ties share the better rank."""
    return [1 + sum(v > x for v in values) for x in values]


def _spearman(a: list[int], b: list[int]) -> float:
    n = len(a)
    if n < 2:
        return float("nan")
    d2 = sum((x - y) ** 2 for x, y in zip(a, b, strict=True))
    return 1 - 6 * d2 / (n * (n * n - 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="confirmation seeds per trial")
    parser.add_argument("--trials", type=int, default=12, help="search trials")
    parser.add_argument("--seed", type=int, default=0, help="the search's seed")
    parser.add_argument("--dir", type=Path, default=ROOT / "runs" / "confirm_demo")
    args = parser.parse_args()

    from autopeft.results.confirmed import confirmed_rows
    from autopeft.results.views import load_view
    from autopeft.run.confirm import confirm_study
    from autopeft.run.driver import run_study
    from autopeft.storage.confirmations import latest
    from autopeft.storage.store import Store

    args.dir.mkdir(parents=True, exist_ok=True)
    spec = _spec(args.dir, args.trials, args.seed)
    url = f"sqlite:///{args.dir / 'confirm_demo.db'}"
    t0 = time.perf_counter()
    run_study(spec)
    t1 = time.perf_counter()
    name = f"demo_s{args.seed}"
    confirm_study(name, url, front=True, seeds=args.seeds, base_dir=ROOT / "studies")
    t2 = time.perf_counter()

    view = load_view(name, url)
    confirmations = latest(Store(url, create=False), name)
    rows = confirmed_rows(view.records, confirmations, view.objectives)
    rows.sort(key=lambda r: r["trial"])
    search = [r["objectives"]["accuracy"]["search"] for r in rows]
    test = [r["objectives"]["accuracy"]["mean"] for r in rows]
    rs, rt = _ranks(search), _ranks(test)
    print(f"# demo study {name}: {args.trials} trials, seed {args.seed}; front confirmed with")
    print(f"# {args.seeds} seeds on the test split ({len(view.records)} trials stored)")
    print(f"# search {t1 - t0:.0f} s, confirmation {t2 - t1:.0f} s (wall, shared machine)")
    header = "trial  params   search acc (rank)  test acc mean ± std (rank)  confirmed front"
    print(header)
    for row, a, b in zip(rows, rs, rt, strict=True):
        acc = row["objectives"]["accuracy"]
        params = row["objectives"]["trainable_params"]["mean"]
        print(
            f"{row['trial']:>5}  {params:>7,.0f}   {acc['search']:.4f} ({a})"
            f"{'':>9}{acc['mean']:.4f} ± {acc['std']:.4f} ({b}){'':>13}"
            f"{'yes' if row['on_front'] else 'no'}"
        )
    kept = sum(a == b for a, b in zip(rs, rt, strict=True))
    on_front = sum(bool(r["on_front"]) for r in rows)
    print(
        f"front members: {len(rows)}; accuracy rank kept: {kept} of {len(rows)}; "
        f"Spearman {_spearman(rs, rt):.2f}; still non-dominated on test means: "
        f"{on_front} of {len(rows)}"
    )
    gap = [s - t for s, t in zip(search, test, strict=True)]
    per = ", ".join(f"{g:+.4f}" for g in gap)
    print(f"search minus test accuracy: mean {sum(gap) / len(gap):+.4f}; per member {per}")


if __name__ == "__main__":
    main()
