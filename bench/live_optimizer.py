"""Samplers on the live demo task: real studies (MiniLM-L6 on TREC-6, real training), HV curves.

    python bench/live_optimizer.py                      # random vs mobo, 20 trials each
    python bench/live_optimizer.py --trials 24 --samplers random,mobo,gp

Each sampler runs ``studies/demo.yaml`` (its model, data, space and fidelity) as its own study in
one temporary SQLite database, in this process, one trial at a time; only the sampler differs
(and the study name). Both curves use one hypervolume frame, built from every complete trial
of every sampler here (objectives scaled to [0, 1], 1 = best, reference at the origin), so
they are comparable. Prints the curves, each sampler's final HV and the first trial at which it
reaches the first sampler's final HV. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autopeft.core.hypervolume import Frame, hypervolume  # noqa: E402
from autopeft.run.driver import run_study  # noqa: E402


def spec_for(sampler: str, workdir: Path, options: dict) -> Path:
    """The demo spec with its sampler replaced and an in-process executor."""
    source = ROOT / "studies" / "demo.yaml"
    spec = yaml.safe_load(source.read_text())
    spec["search_space"] = str((source.parent / spec["search_space"]).resolve())
    spec["sampler"] = {"name": sampler, "options": options}
    spec["executor"] = {"name": "inprocess", "device": "cpu"}
    path = workdir / f"{sampler}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--samplers", default="random,mobo")
    parser.add_argument("--n-initial", type=int, default=6, help="mobo's initial Sobol points")
    args = parser.parse_args()
    names = args.samplers.split(",")
    outcomes = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        url = f"sqlite:///{workdir / 'live.db'}"
        for name in names:
            options = {"n_initial": args.n_initial} if name == "mobo" else {}
            t0 = time.time()
            outcomes[name] = run_study(
                spec_for(name, workdir, options), trials=args.trials, storage=url, name=name
            )
            print(f"# {name}: {args.trials} trials in {time.time() - t0:.0f} s", flush=True)
    objectives = next(iter(outcomes.values())).objectives
    complete = {
        n: [r for r in o.records if r.state == "COMPLETE" and r.values] for n, o in outcomes.items()
    }
    budget = yaml.safe_load((ROOT / "search_spaces" / "lora_layerwise.yaml").read_text())[
        "max_trainable_params"
    ]
    frame = Frame.from_observations(objectives, [r for rs in complete.values() for r in rs], budget)
    curves = {
        n: [hypervolume(frame, [r.values for r in rs[: i + 1]]) for i in range(len(rs))]
        for n, rs in complete.items()
    }
    print("\nhypervolume after each complete trial (one frame for all samplers)")
    print("trial " + " ".join(f"{n:>8}" for n in names))
    for i in range(max(len(c) for c in curves.values())):
        cells = [f"{c[i]:8.4f}" if i < len(c) else " " * 8 for c in curves.values()]
        print(f"{i + 1:5d} " + " ".join(cells))
    target = curves[names[0]][-1]
    print(f"\nfinal HV of {names[0]}: {target:.4f}")
    for name, curve in curves.items():
        reach = next((i + 1 for i, v in enumerate(curve) if v >= target), None)
        print(
            f"{name:8} final {curve[-1]:.4f}; reaches {names[0]}'s final HV at trial "
            f"{reach if reach else 'never'}"
        )


if __name__ == "__main__":
    main()
