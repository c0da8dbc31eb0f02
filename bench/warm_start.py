"""Does a study warm-started from another task reach the cold study's hypervolume sooner?

For each seed and each ordered pair of built-in tasks (the demo's TREC-6 question types and
Rotten Tomatoes sentiment, both on MiniLM-L6 with the demo's layer-wise LoRA space), it runs

* a **cold** study on each task (``mobo``, its Sobol design, then qLogNEHVI), and
* a **warm** study on the target task, ``warm_start: [the source task's cold study]``: its
  initial design is the source study's front (mapped by dimension name), then the same mobo,

all real training (the demo's fidelity, shortened by ``--steps``), in process, one thread each.
For every (target, seed) it frames the hypervolume by the union of the cold and warm studies'
trials on that target (so the two curves are comparable) and reports both curves and the
first trial at which the warm study reaches the cold study's final (``--trials``) hypervolume;
then per target the mean curves over the seeds in one frame (every study on that target) and
the trial at which the mean warm curve reaches the mean cold one's final hypervolume.

    python bench/warm_start.py --seeds 2 --trials 12 --jobs 2     # ~30-40 min on 2 CPU cores

The two tasks' studies of one seed run with different sampler seeds (``SEED_OFFSET``), so a
warm study never starts from its own baseline's Sobol points. Studies live in one SQLite file
per seed under ``--dir`` (default ``runs/warm_start``); a rerun resumes them. Not a test.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TASKS = {"trec6": "trec6", "rotten": "rotten_tomatoes"}
#: Each task's studies of "seed s" run with seed ``s + offset``: the two cold studies must not
#: share a Sobol design, or a warm study would replay its own cold baseline's points.
SEED_OFFSET = {"trec6": 0, "rotten": 500}


SPACE = ROOT / "search_spaces" / "lora_layerwise.yaml"


def _spec(
    out: Path, task: str, seed: int, trials: int, steps: int, warm: str | None, space: Path
) -> Path:
    import yaml

    spec = yaml.safe_load((ROOT / "studies" / "demo.yaml").read_text())
    name = f"{'warm' if warm else 'cold'}_{task}_s{seed}"
    spec.update(
        name=name,
        dataset=TASKS[task],
        n_trials=trials,
        seed=seed + SEED_OFFSET[task],
        search_space=str(space),  # absolute: part of the study's fingerprint
        executor={"name": "inprocess"},
    )
    spec["fidelity"] = {**spec["fidelity"], "max_steps": steps}
    if task == "rotten":  # movie reviews are longer than questions
        spec["fidelity"]["seq_len"] = 48
    if warm:
        spec["warm_start"] = [warm]
    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _run_seed(args: tuple[Path, int, int, int, Path]) -> list[tuple[str, float]]:
    """The four studies of one seed, in one SQLite file: both cold ones, then both warm."""
    out, seed, trials, steps, space = args
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from autopeft.run.driver import run_study

    url = _url(out, seed)
    specs = [_spec(out, t, seed, trials, steps, None, space) for t in TASKS]
    specs += [
        _spec(out, t, seed, trials, steps, f"cold_{src}_s{seed}", space)
        for t in TASKS
        for src in TASKS
        if src != t
    ]
    walls = []
    for path in specs:
        t0 = time.perf_counter()
        run_study(path, storage=url, trials=trials)
        walls.append((path.stem, time.perf_counter() - t0))
        print(f"# {path.stem}: {walls[-1][1]:.0f} s", flush=True)
    return walls


def _url(out: Path, seed: int) -> str:
    return f"sqlite:///{out / f'studies_s{seed}.db'}"


def _trials(out: Path, target: str, seed: int) -> tuple[list, list[dict], list[dict]]:
    """The objectives and the complete trials' values of the cold and the warm study."""
    from autopeft.results.views import load_view

    url = _url(out, seed)
    views = [load_view(f"{kind}_{target}_s{seed}", url) for kind in ("cold", "warm")]
    cold, warm = (
        [r.values for r in v.records if r.state == "COMPLETE" and r.values] for v in views
    )
    return views[0].objectives, cold, warm


def _curves(objectives: list, frame_values: list[dict], *runs: list[dict]) -> list[list[float]]:
    """Each run's hypervolume after each trial, in the frame of ``frame_values``."""
    from types import SimpleNamespace

    from autopeft.core.hypervolume import Frame, hypervolume

    frame = Frame.from_observations(objectives, [SimpleNamespace(values=v) for v in frame_values])
    return [[hypervolume(frame, values[: i + 1]) for i in range(len(values))] for values in runs]


def reached(curve: list[float], goal: float) -> int | None:
    return next((i + 1 for i, v in enumerate(curve) if v >= goal - 1e-12), None)


def _line(label: str, curve: list[float]) -> str:
    return f"{label:32s} " + " ".join(f"{v:.3f}" for v in curve)


def report(out: Path, seeds: list[int]) -> None:
    """Per (target, seed) curves in that pair's frame, then per target the mean curves over
    seeds in one frame: the union of every study on that target."""
    print("hypervolume after each trial (frame: the cold and warm trials of that target and seed)")
    for target in TASKS:
        src = next(t for t in TASKS if t != target)
        hits = []
        runs = {s: _trials(out, target, s) for s in seeds}
        for s, (objectives, cold, warm) in runs.items():
            c, w = _curves(objectives, cold + warm, cold, warm)
            hit = reached(w, c[-1])
            hits.append(hit)
            print(_line(f"{target} seed {s} cold", c))
            print(_line(f"{target} seed {s} warm from {src}", w))
            print(f"  cold {len(c)}-trial HV {c[-1]:.3f}; warm reaches it at trial "
                  f"{hit if hit else f'- (not within {len(w)})'}")  # fmt: skip
        print(f"{target}: warm reaches the cold final HV at trials {hits}")
        objectives = runs[seeds[0]][0]
        union = [v for _, cold, warm in runs.values() for v in cold + warm]
        pairs = [_curves(objectives, union, cold, warm) for _, cold, warm in runs.values()]
        # a study with a failed trial has a shorter curve: the mean stops at the shortest
        columns = [zip(*(p[k] for p in pairs), strict=False) for k in (0, 1)]
        mean = [[sum(col) / len(col) for col in c] for c in columns]
        hit = reached(mean[1], mean[0][-1])
        print(f"{target}: mean over seeds {seeds}, one frame (every study on {target})")
        print(_line("  cold", mean[0]))
        print(_line(f"  warm from {src}", mean[1]))
        print(f"  the mean warm curve reaches the mean cold {len(mean[0])}-trial HV "
              f"{mean[0][-1]:.3f} at trial {hit or '-'}\n")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--steps", type=int, default=50, help="training steps per trial")
    parser.add_argument("--jobs", type=int, default=2, help="studies in parallel")
    parser.add_argument("--dir", type=Path, default=ROOT / "runs" / "warm_start")
    parser.add_argument(
        "--space",
        type=Path,
        default=SPACE,
        help="the search space file (its path is part of "
        "the studies' fingerprint: pass the one an earlier run used to resume its studies)",
    )
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    seeds = range(args.seeds)
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
        jobs = [(args.dir, s, args.trials, args.steps, args.space) for s in seeds]
        list(pool.map(_run_seed, jobs))
    print(f"{4 * len(seeds)} studies in {time.perf_counter() - t0:.0f} s wall\n")
    report(args.dir, list(seeds))


if __name__ == "__main__":
    main()
