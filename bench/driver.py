"""Driver cost per trial as a study grows: the real ``StudyRunner`` loop, a real SQLite store,
the ``random`` sampler and a no-op executor (results come back at once), so what is measured
is the driver's own bookkeeping: proposing, compiling, writing and reading the database,
hypervolumes, progress.

    OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1 python bench/driver.py           # 100/1,000/10,000
    python bench/driver.py --marks 100,1000 --window 50 --profile             # plus a profile

One growing study runs to the last mark. The driver's CPU time per trial (``process_time``)
is the mean over the ``--window`` trials that end at each mark; the table shows it and its
ratio to the first mark. ``--status`` adds a reporter that wants the live status line (what
``autopeft run`` without ``-q`` computes after every trial). ``--profile`` then runs one more
window under cProfile and prints where its time goes. ``--rungs 2,4`` makes the study
multi-fidelity (successive halving, reduction factor 3): the marks then count configurations,
and each one's cost includes its promotions' (about half a trial more each).

The study: a tiny BERT layout (2 layers, hidden size 32; only its config exists) and the
tests' layer-wise LoRA space (per-layer, per-module ranks); accuracy grows with the adapter's
parameters plus noise, memory barely follows them. It lives in a temporary directory, on
``/dev/shm`` where there is one (SQLite's fsyncs cost wall time, not the driver's CPU; on disk
10,000 trials take ~45 min instead of ~12), or in ``--dir`` (a study there is resumed: with
``--marks`` above its size, that measures the cost at that size without growing it first).

Not a test: nothing here asserts. Figures on a shared machine are noisy: compare ratios.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import time
import zlib
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autopeft.executors.base import Executor  # noqa: E402
from autopeft.run.driver import StudyRunner  # noqa: E402
from autopeft.run.prepare import prepare_study, register_study  # noqa: E402
from autopeft.run.progress import Reporter, StudyStatus  # noqa: E402
from autopeft.storage.store import Store  # noqa: E402
from autopeft.trial.runner import TrialRequest, TrialResult  # noqa: E402

SPACE = """\
version: 1
name: bench_lora
method: lora
max_trainable_params: 4000
parameters:
  target_modules: {type: categorical, choices: [qv, attn, all_linear]}
  rank: {type: int, choices: [0, 1, 2, 4], per: [layer, module]}
  alpha_ratio: 2.0
  dropout: 0.0
  learning_rate: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}
"""

STUDY = """\
version: 1
name: bench
model: {model}
dataset: {{source: data.csv}}
search_space: space.yaml
n_trials: 10
fidelity: {{train_examples: 64, max_steps: 4, eval_examples: 24, seq_len: 16, batch_size: 8}}
seed: 0
storage: sqlite:///{db}
sampler: random
executor: {{threads: 1, device: cpu}}
"""


class NoOpExecutor(Executor):
    """Returns every submitted trial at once, with plausible, deterministic measurements."""

    def __init__(self, capacity: int = 1) -> None:
        self.capacity = capacity
        self._queue: deque[TrialRequest] = deque()

    def submit(self, request: TrialRequest) -> None:
        self._queue.append(request)

    def poll(self, timeout: float | None = None) -> list[TrialResult]:
        results = [self._result(r) for r in self._queue]
        self._queue.clear()
        return results

    def running(self) -> list[int]:
        return [r.number for r in self._queue]

    def _result(self, request: TrialRequest) -> TrialResult:
        c = request.compiled
        if self.on_step is not None:
            self.on_step(request.number, 4, 4)
        key = repr(sorted(c.module_sizes.items())) + repr(sorted(c.training.items()))
        noise = [zlib.crc32(f"{i}{key}".encode()) / 2**32 for i in range(3)]
        params = c.trainable_params  # accuracy grows with it; memory barely follows it
        accuracy = 0.55 + 0.3 * params / (params + 300) + 0.08 * noise[0]
        peak = 2**20 * (40 + params / 500 + 0.5 * noise[1])
        return TrialResult(
            request.number,
            True,
            {
                "accuracy": accuracy,
                "f1": accuracy - 0.01,
                "trainable_params": params,
                "head_params": 66,
                "peak_memory_bytes": int(peak),
                "peak_memory_mb": peak / 2**20,
                "memory_method": "none",
                "final_train_loss": 1.0 - accuracy,
                "setup_seconds": 0.01,
                "train_seconds": 0.1 + noise[2],
                "eval_seconds": 0.02,
                "device": "cpu",
            },
        )


class Clock(Reporter):
    """Records the driver's CPU time each time a trial finishes; profiles one window."""

    def __init__(self, status: bool, profile_from: int | None) -> None:
        self.wants_status = status
        self.cpu: dict[int, float] = {}
        self.profile_from = profile_from
        self.profiler: cProfile.Profile | None = None

    def study_started(self, name: str, done: int, total: int) -> None:
        self.cpu[done] = time.process_time()

    def trial_finished(self, number: int, line: str, done: int) -> None:
        self.cpu[done] = time.process_time()
        if self.profile_from is not None and done == self.profile_from:
            self.profiler = cProfile.Profile()
            self.profiler.enable()

    def status(self, status: StudyStatus) -> None:
        self.last_status = status.line()


def make_study(tmp: Path, rungs: str = "") -> Path:
    import transformers

    spec = tmp / "study.yaml"
    if spec.exists():  # --dir of an earlier run: resume its study
        return spec
    model = tmp / "tiny-bert"
    config = transformers.BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=2,
    )
    config.save_pretrained(model)
    rows = ["text,label"] + [f"sample {i},{'pos' if i % 2 else 'neg'}" for i in range(120)]
    (tmp / "data.csv").write_text("\n".join(rows) + "\n")
    (tmp / "space.yaml").write_text(SPACE)
    text = STUDY.format(model=model, db=tmp / "bench.db")
    if rungs:
        text = text.replace("max_steps: 4,", f"rungs: [{rungs}],")
    spec.write_text(text)
    return spec


def run(spec: Path, target: int, clock: Clock, capacity: int) -> tuple[float, int]:
    """Run the study to ``target`` trials; returns the wall time and the final Pareto front's
    size (what a new hypervolume costs grows with it)."""
    from autopeft.results.picks import pareto_front

    prepared = prepare_study(spec)
    store = Store(prepared.url)
    register_study(store, prepared)
    runner = StudyRunner(prepared, store, clock, NoOpExecutor(capacity))
    t0 = time.perf_counter()
    outcome = runner.run(target)
    wall = time.perf_counter() - t0
    return wall, len(pareto_front(outcome.records, outcome.objectives))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--marks", default="100,1000,10000", help="trial counts to measure at")
    ap.add_argument("--window", type=int, default=50, help="trials per measurement window")
    ap.add_argument("--capacity", type=int, default=1, help="trials the executor runs at once")
    ap.add_argument("--status", action="store_true", help="compute the live status line too")
    ap.add_argument("--profile", action="store_true", help="profile one more window")
    ap.add_argument("--top", type=int, default=25, help="lines of the profile to print")
    ap.add_argument("--sort", default="tottime", help="profile order (tottime, cumulative)")
    ap.add_argument("--dir", type=Path, help="keep the study here (resumed if it exists)")
    ap.add_argument("--rungs", default="", help="multi-fidelity rungs, e.g. 2,4 (steps)")
    args = ap.parse_args()
    marks = sorted(int(m) for m in args.marks.split(","))
    last = marks[-1]
    clock = Clock(args.status, last if args.profile else None)
    shm = Path("/dev/shm")  # commits' fsyncs cost wall time, not the driver's CPU: skip them
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else None) as tmp:
        directory = args.dir or Path(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        spec = make_study(directory, args.rungs)
        cpu0 = time.process_time()
        target = last + (args.window if args.profile else 0)
        wall, front = run(spec, target, clock, args.capacity)
        total_cpu = time.process_time() - cpu0
    print(
        f"{target:,} trials ({min(clock.cpu)} before this run; {args.window if args.profile else 0}"
        f" profiled): wall {wall:.1f} s, CPU {total_cpu:.1f} s, window {args.window}, capacity "
        f"{args.capacity}, status {'on' if args.status else 'off'}, final Pareto front {front}"
        + (f", rungs {args.rungs}" if args.rungs else "")
    )
    print(f"{'trials':>8} {'CPU ms/trial':>13} {'ratio':>7}")
    first = None
    for mark in marks:
        lo = max(mark - args.window, min(clock.cpu))
        per = (clock.cpu[mark] - clock.cpu[lo]) / (mark - lo) * 1000
        first = first or per
        print(f"{mark:>8,} {per:>13.2f} {per / first:>7.2f}")
    if clock.profiler is not None:
        clock.profiler.disable()
        out = io.StringIO()
        stats = pstats.Stats(clock.profiler, stream=out).sort_stats(args.sort)
        stats.print_stats(args.top)
        print(f"\nprofile of trials {last + 1}-{last + args.window}, by {args.sort}:")
        print(out.getvalue())


if __name__ == "__main__":
    main()
