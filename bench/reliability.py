"""Inject faults into short real studies and count what was lost, doubled or shown as a traceback.

    OMP_NUM_THREADS=1 python bench/reliability.py                  # every fault, SQLite files
    python bench/reliability.py --only worker-sigkill,bad-inputs   # some of them
    python bench/reliability.py --storage postgresql+psycopg2://ap:ap@127.0.0.1:5432/apdb
    python bench/reliability.py --list

The study: a 2-layer random BERT classifier (hidden size 32, saved with the MiniLM tokenizer,
as in the tests), a learnable two-class CSV, the tests' layer-wise LoRA space, the ``random``
sampler and ``--steps`` training steps per trial (long enough that a trial is caught running).
Every fault runs its own study (its own SQLite file, or its own study name in ``--storage``).

Per fault the table shows:

* **injected**: faults injected (kills, bad inputs, ...);
* **budget / complete**: the study's trial budget and its COMPLETE trials at the end;
* **lost**: a result that was produced but is not stored as it was (a trial COMPLETE before
  the fault and missing or changed after it, a successful result the executor returned that is
  not COMPLETE in the database, an interrupted point never completed), plus the shortfall when
  the study ends with fewer complete trials than its budget;
* **duplicated**: complete trials beyond the budget, plus extra completions of one point
  (the same params run to completion twice, e.g. after a resume);
* **tracebacks**: outputs with a Python traceback (a bad input must give one ``error:`` line);
* **note**: exit codes and details.

The exit status is 1 if anything was lost or duplicated or a traceback was seen.

Adding a fault (for example PostgreSQL restarted mid-study, SQLite locked by a reader, a second
driver started): write ``def my_fault(ctx: Context) -> Row`` decorated with ``@fault("name",
"what it does")``. ``ctx.study(name, ...)`` writes a spec and returns a :class:`Study` (its
``url`` honours ``--storage``); ``ctx.driver(study)`` starts ``autopeft run`` in a subprocess,
``ctx.wait_for(study, predicate)`` polls its records, ``kill_mid_trial`` SIGKILLs a driver
once a trial is done and another runs, and :func:`audit` fills ``lost``/``duplicated`` from the
final records. Rows print in registration order.
"""

from __future__ import annotations

import argparse
import csv
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autopeft.core.states import TrialState  # noqa: E402
from autopeft.progress import Reporter  # noqa: E402
from autopeft.storage.records import TrialRecord  # noqa: E402

# -- the study -----------------------------------------------------------------------------------
SPACE = """\
version: 1
name: rel_lora
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
name: {name}
model: {model}
dataset: {{source: {data}}}
search_space: {space}
n_trials: {n_trials}
fidelity: {{train_examples: 64, max_steps: {steps}, eval_examples: 24, seq_len: 16, batch_size: 8}}
seed: 0
storage: {url}
sampler: random
executor: {executor}
"""

INPROCESS = "{threads: 1, device: cpu}"
RAY = "{name: ray, workers: 2, cpus_per_trial: 1, device: cpu}"
WORDS = {"pos": ["good", "great", "fine", "lovely", "superb"], "neg": ["bad", "awful", "poor"]}


def save_tiny_bert(path: Path) -> Path:
    """A 2-layer random BERT classifier with the MiniLM tokenizer (tests/conftest.py)."""
    import shutil

    import torch
    import transformers

    from autopeft.assets import resolve_model

    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, num_labels=2,
    )  # fmt: skip
    transformers.BertForSequenceClassification(config).save_pretrained(path)
    source = resolve_model("minilm-l6")
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(source / name, path / name)
    return path


def write_csv(path: Path, n: int = 120, labels: tuple[str, ...] = ("neg", "pos")) -> Path:
    """A learnable text dataset: sentiment words decide the label."""
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(n):
            label = labels[i % len(labels)]
            words = WORDS.get(label, WORDS["pos"])
            w.writerow([f"a {words[i % len(words)]} movie {i % 7}", label])
    return path


# -- framework -----------------------------------------------------------------------------------
@dataclass
class Row:
    """One line of the table."""

    fault: str
    injected: int = 0
    budget: int | None = None
    complete: int | None = None
    lost: int = 0
    duplicated: int = 0
    tracebacks: int = 0
    note: str = ""
    seconds: float = 0.0


@dataclass
class Study:
    name: str
    spec: Path
    url: str
    budget: int


@dataclass
class Context:
    """What a fault function gets: a scratch directory, the tiny model, the storage choice."""

    root: Path
    model: Path
    steps: int
    storage: str | None  # --storage: one database for every study; None: a SQLite file each
    quiet: bool = False
    _space: Path | None = field(default=None, init=False)
    _data: Path | None = field(default=None, init=False)

    def url(self, name: str) -> str:
        return self.storage or f"sqlite:///{self.root / (name + '.db')}"

    def study(
        self, fault: str, n_trials: int = 3, executor: str = INPROCESS, steps: int | None = None
    ) -> Study:
        """A fresh study for ``fault`` (a unique name, so a shared --storage is fine)."""
        if self._space is None:
            self._space = self.root / "space.yaml"
            self._space.write_text(SPACE)
            self._data = write_csv(self.root / "data.csv")
        name = f"rel-{fault}-{uuid.uuid4().hex[:6]}"
        spec = self.root / f"{name}.yaml"
        url = self.url(name)
        spec.write_text(
            STUDY.format(
                name=name, model=self.model, data=self._data, space=self._space,
                n_trials=n_trials, steps=steps or self.steps, url=url, executor=executor,
            )
        )  # fmt: skip
        return Study(name, spec, url, n_trials)

    def records(self, study: Study) -> list[TrialRecord]:
        from autopeft.results import load_view

        try:
            return list(load_view(study.name, study.url).records)
        except Exception:  # not created yet, or the database is busy
            return []

    def driver(self, study: Study, *args: str) -> subprocess.Popen[str]:
        """``autopeft run SPEC -q`` in a subprocess (the CLI a user runs)."""
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        return subprocess.Popen(
            [sys.executable, "-m", "autopeft.cli", "run", str(study.spec), "-q", *args],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=self.root,
        )  # fmt: skip

    def wait_for(
        self,
        study: Study,
        predicate: Callable[[list[TrialRecord]], bool],
        proc: subprocess.Popen[str] | None = None,
        timeout: float = 240.0,
    ) -> list[TrialRecord]:
        """Poll the study's records until ``predicate`` holds (or ``proc`` exits, or time)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            records = self.records(study)
            if records and predicate(records):
                return records
            if proc is not None and proc.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"{study.name}: condition not reached (driver exit {_rc(proc)})")


FaultFn = Callable[[Context], Row]
FAULTS: dict[str, tuple[FaultFn, str]] = {}


def fault(name: str, doc: str) -> Callable[[FaultFn], FaultFn]:
    """Register a fault: a function that runs a study, injects the fault and returns its row."""

    def register(fn: FaultFn) -> FaultFn:
        FAULTS[name] = (fn, doc)
        return fn

    return register


def complete(records: list[TrialRecord]) -> list[TrialRecord]:
    return [r for r in records if r.state == TrialState.COMPLETE]


def audit(
    row: Row,
    records: list[TrialRecord],
    budget: int,
    before: dict[int, dict[str, float]] | None = None,
    produced: set[int] | None = None,
) -> Row:
    """Fill ``lost``, ``duplicated``, ``budget`` and ``complete`` from a study's final records.

    Args:
        before: Values of trials COMPLETE before the fault (each must be stored unchanged).
        produced: Numbers of trials whose successful result an executor returned.
    """
    done = complete(records)
    by_number = {r.number: r for r in records}
    lost = max(0, budget - len(done))
    for number, values in (before or {}).items():
        r = by_number.get(number)
        lost += r is None or r.state != TrialState.COMPLETE or r.values != values
    done_numbers = {r.number for r in done}
    lost += len((produced or set()) - done_numbers)
    points = Counter(_key(r.params) for r in done)
    for r in records:  # an interrupted point must be completed by a re-run
        if r.interrupted and points[_key(r.params)] == 0:
            lost += 1
    duplicated = max(0, len(done) - budget) + sum(n - 1 for n in points.values() if n > 1)
    row.budget, row.complete = budget, len(done)
    row.lost += lost
    row.duplicated += duplicated
    return row


def _key(params: dict[str, Any]) -> str:
    return repr(sorted(params.items()))


def _rc(proc: subprocess.Popen[str] | None) -> str:
    return "-" if proc is None or proc.returncode is None else str(proc.returncode)


def _tracebacks(text: str) -> int:
    return text.count("Traceback (most recent call last)")


def kill_mid_trial(
    ctx: Context, study: Study, proc: subprocess.Popen[str], min_complete: int
) -> tuple[dict[int, dict[str, float]], list[TrialRecord], str]:
    """SIGKILL ``proc`` once ``min_complete`` trials are COMPLETE and another one is RUNNING.

    Returns the COMPLETE trials' values by number, the RUNNING records and the driver's stderr.
    """

    def mid(records: list[TrialRecord]) -> bool:
        running = [r for r in records if r.state == TrialState.RUNNING]
        return len(complete(records)) >= min_complete and bool(running)

    try:
        ctx.wait_for(study, mid, proc)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate()
    if proc.returncode != -signal.SIGKILL:
        raise RuntimeError(f"the driver ended before it was killed ({proc.returncode}): {err}")
    records = ctx.records(study)
    before = {r.number: r.values for r in complete(records)}
    return before, [r for r in records if r.state == TrialState.RUNNING], err


# -- faults ---------------------------------------------------------------------------------------
class _KillWorkers(Reporter):
    """SIGKILLs the Ray worker running each trial in ``numbers`` at its first reported step."""

    def __init__(self, numbers: set[int]) -> None:
        self.numbers, self.executor, self.killed = numbers, None, []

    def step(self, number: int, step: int, total: int) -> None:
        if number in self.numbers and 0 < step < total and self.executor is not None:
            pid = self.executor.worker_pid(number)
            if pid is not None:
                self.numbers.discard(number)
                os.kill(pid, signal.SIGKILL)
                self.killed.append((number, pid))


@fault("worker-sigkill", "SIGKILL the Ray worker of trials 1 and 2 mid-training (2 workers)")
def worker_sigkill(ctx: Context) -> Row:
    from autopeft.driver import run_study
    from autopeft.executors.factory import make_executor
    from autopeft.prepare import prepare_study, worker_setup

    study = ctx.study("worker-sigkill", n_trials=4, executor=RAY)
    p = prepare_study(study.spec)
    reporter = _KillWorkers({1, 2})
    spec = p.files.spec.executor
    executor = make_executor(worker_setup(p, spec), spec, None, reporter.message)
    reporter.executor = executor
    produced: set[int] = set()
    poll = executor.poll

    def counting_poll(timeout: float | None = None) -> list[Any]:
        results = poll(timeout)
        produced.update(r.number for r in results if r.ok)
        return results

    executor.poll = counting_poll  # type: ignore[method-assign]
    outcome = run_study(study.spec, reporter=reporter, executor=executor)
    row = Row("worker-sigkill", injected=len(reporter.killed))
    audit(row, outcome.records, study.budget, produced=produced)
    died = [r for r in outcome.records if r.interrupted and "worker died" in (r.fail_reason or "")]
    row.note = f"{len(died)} trial(s) recorded as lost to a dead worker, points re-run"
    return row


@fault("driver-sigkill", "SIGKILL `autopeft run` mid-trial twice, resume after each")
def driver_sigkill(ctx: Context) -> Row:
    from autopeft.driver import run_study

    study = ctx.study("driver-sigkill", n_trials=4)
    row = Row("driver-sigkill")
    before: dict[int, dict[str, float]] = {}
    codes, stderr = [], ""
    for kill in range(2):
        proc = ctx.driver(study)
        values, running, err = kill_mid_trial(ctx, study, proc, min_complete=kill + 1)
        before.update(values)
        row.injected += 1
        codes.append(proc.returncode)
        stderr += err
        if not running:
            raise RuntimeError("the driver was not killed in the middle of a trial")
    outcome = run_study(study.spec)  # the resume: same spec, same storage
    audit(row, outcome.records, study.budget, before=before)
    row.tracebacks = _tracebacks(stderr)
    interrupted = sum(r.interrupted for r in outcome.records)
    row.note = f"driver exits {codes}; {interrupted} interrupted trial(s) re-run on resume"
    return row


@dataclass
class BadInput:
    name: str
    args: Callable[[Context, Path], list[str]]  # the CLI arguments, given a scratch directory


def _spec_line(ctx: Context, d: Path, key: str, value: str) -> Path:
    """A valid spec whose top-level ``key:`` line is replaced by ``key: value``."""
    lines = ctx.study("input").spec.read_text().splitlines()
    at = [i for i, x in enumerate(lines) if x.startswith(f"{key}:")]
    assert at, key
    lines[at[0]] = f"{key}: {value}"
    path = d / "study.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _with_space(ctx: Context, d: Path, old: str, new: str) -> Path:
    """A valid spec whose search space has ``old`` replaced by ``new``."""
    assert old in SPACE, old
    return _spec_line(
        ctx, d, "search_space", str(_write(d / "space.yaml", SPACE.replace(old, new)))
    )


def _with_data(ctx: Context, d: Path, name: str, text: str) -> Path:
    return _spec_line(ctx, d, "dataset", f"{{source: {_write(d / name, text)}}}")


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _labelled(rows: list[tuple[str, str]]) -> str:
    return "text,label\n" + "".join(f"{t},{label}\n" for t, label in rows)


def _validate(path: Path) -> list[str]:
    return ["validate", str(path)]


def _run(ctx: Context, *args: str) -> list[str]:
    return ["run", str(ctx.study("input").spec), "-q", *args]


ONE_CLASS = _labelled([(f"a good movie {i}", "pos") for i in range(60)])
EMPTY_TEXTS = _labelled([("", "pos" if i % 2 else "neg") for i in range(60)])

BAD_INPUTS = [
    BadInput("broken YAML", lambda c, d: _validate(_write(d / "s.yaml", "name: [unclosed\n"))),
    BadInput("YAML not a mapping", lambda c, d: _validate(_write(d / "s.yaml", "- a\n- b\n"))),
    BadInput("missing spec file", lambda c, d: _validate(d / "nope.yaml")),
    BadInput("unknown spec field", lambda c, d: _validate(_spec_line(c, d, "seed", "0\nsede: 1"))),
    BadInput(
        "unknown space field",
        lambda c, d: _validate(_with_space(c, d, "dropout: 0.0", "dropout: 0.0\n  dropot: 1")),
    ),
    BadInput("unknown model", lambda c, d: _validate(_spec_line(c, d, "model", "no-such-model"))),
    BadInput("unknown sampler", lambda c, d: _validate(_spec_line(c, d, "sampler", "annealing"))),
    BadInput("negative n_trials", lambda c, d: _validate(_spec_line(c, d, "n_trials", "-1"))),
    BadInput(
        "path-like study name", lambda c, d: _validate(_spec_line(c, d, "name", "../../etc/x"))
    ),
    BadInput(
        "missing dataset",
        lambda c, d: _validate(_spec_line(c, d, "dataset", "{source: /nonexistent/x.csv}")),
    ),
    BadInput("one-class dataset", lambda c, d: _validate(_with_data(c, d, "one.csv", ONE_CLASS))),
    BadInput("empty texts", lambda c, d: _validate(_with_data(c, d, "e.csv", EMPTY_TEXTS))),
    BadInput(
        "CSV without a label column",
        lambda c, d: _validate(_with_data(c, d, "n.csv", "text\na\nb\n")),
    ),
    BadInput("broken JSONL", lambda c, d: _validate(_with_data(c, d, "b.jsonl", '{"text": 1\n'))),
    BadInput(
        "rank above a module's width",
        lambda c, d: _validate(_with_space(c, d, "choices: [0, 1, 2, 4]", "choices: [0, 64]")),
    ),
    BadInput(
        "budget below the smallest configuration",
        lambda c, d: _validate(
            _with_space(c, d, "max_trainable_params: 4000", "max_trainable_params: 1")
        ),
    ),
    BadInput("directory as SQLite URL", lambda c, d: _run(c, "--storage", f"sqlite:///{d}")),
    BadInput(
        "no database for a read command",
        lambda c, d: ["front", "x", "--storage", f"sqlite:///{d / 'none.db'}"],
    ),
    BadInput("--trials 0", lambda c, d: _run(c, "--trials", "0")),
    BadInput("--workers without Ray", lambda c, d: _run(c, "--workers", "2")),
    BadInput(
        "malformed --address", lambda c, d: _run(c, "--executor", "ray", "--address", "no-port")
    ),
    BadInput(
        "unreachable --address",
        lambda c, d: _run(c, "--executor", "ray", "--address", "127.0.0.1:1"),
    ),
    BadInput("missing --ray-token-file", lambda c, d: _run(c, "--ray-token-file", str(d / "t"))),
    BadInput("unknown --pick", lambda c, d: ["export", "x", "--pick", "best", "--out", str(d)]),
]


@fault("bad-inputs", "malformed files, names, datasets, URLs and flags through the CLI")
def bad_inputs(ctx: Context) -> Row:
    """Each input through the CLI in this process: a clean result is exit 2 and one ``error:``
    line; an exception escaping the CLI is a traceback a user would see."""
    from typer.testing import CliRunner

    from autopeft.cli import app

    row = Row("bad-inputs")
    codes: Counter[int] = Counter()
    not_one_line = []
    for i, case in enumerate(BAD_INPUTS):
        d = ctx.root / f"input-{i}"
        d.mkdir()
        out = CliRunner().invoke(app, case.args(ctx, d))
        row.injected += 1
        codes[out.exit_code] += 1
        err = out.stderr.strip()
        escaped = out.exception is not None and not isinstance(out.exception, SystemExit)
        if escaped or _tracebacks(out.output + out.stderr):
            row.tracebacks += 1
            detail = "".join(traceback.format_exception(out.exception)) if escaped else err
            print(f"  [bad-inputs] {case.name}: TRACEBACK\n{detail}", file=sys.stderr)
        elif out.exit_code != 2 or not err.startswith("error:") or "\n" in err:
            not_one_line.append(case.name)
            if not ctx.quiet:
                print(f"  [bad-inputs] {case.name}: exit {out.exit_code}: {err!r}", file=sys.stderr)
        elif not ctx.quiet:
            print(f"  [bad-inputs] {case.name}: {err}", file=sys.stderr)
    row.note = "exit codes " + ", ".join(f"{k}: {n}" for k, n in sorted(codes.items()))
    if not_one_line:
        row.note += f"; not one `error:` line: {', '.join(not_one_line)}"
    return row


# -- main -----------------------------------------------------------------------------------------
def render(rows: list[Row]) -> str:
    head = ("fault", "injected", "budget", "complete", "lost", "duplicated", "tracebacks", "s")
    lines = [
        (r.fault, r.injected, _dash(r.budget), _dash(r.complete), r.lost, r.duplicated,
         r.tracebacks, f"{r.seconds:.0f}")
        for r in rows
    ]  # fmt: skip
    total = ("total", sum(r.injected for r in rows), "", "", sum(r.lost for r in rows),
             sum(r.duplicated for r in rows), sum(r.tracebacks for r in rows),
             f"{sum(r.seconds for r in rows):.0f}")  # fmt: skip
    table = [head, *lines, total]
    widths = [max(len(str(x[i])) for x in table) for i in range(len(head))]

    def fmt(cells: tuple[Any, ...]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [fmt(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [fmt(x) for x in (*lines, total)]
    out += ["", *[f"- {r.fault}: {r.note}" for r in rows if r.note]]
    return "\n".join(out)


def _dash(x: int | None) -> str:
    return "-" if x is None else str(x)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", help="comma-separated faults (default: all; see --list)")
    ap.add_argument("--list", action="store_true", help="list the faults and exit")
    ap.add_argument("--storage", help="one database URL for every study (default: SQLite files)")
    ap.add_argument("--steps", type=int, default=150, help="training steps per trial")
    ap.add_argument("--dir", type=Path, help="scratch directory (default: a temporary one)")
    ap.add_argument("-q", "--quiet", action="store_true", help="only the table")
    args = ap.parse_args(argv)
    if args.list:
        for name, (_, doc) in FAULTS.items():
            print(f"{name:18} {doc}")
        return 0
    names = args.only.split(",") if args.only else list(FAULTS)
    unknown = [n for n in names if n not in FAULTS]
    if unknown:
        ap.error(f"unknown fault(s) {', '.join(unknown)}; known: {', '.join(FAULTS)}")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch
    import transformers

    torch.set_num_threads(1)
    transformers.utils.logging.disable_progress_bar()
    with tempfile.TemporaryDirectory(prefix="reliability-") as tmp:
        root = args.dir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        ctx = Context(
            root, save_tiny_bert(root / "tiny-bert"), args.steps, args.storage, args.quiet
        )
        rows = []
        for name in names:
            started = time.monotonic()
            fn, _ = FAULTS[name]
            try:
                row = fn(ctx)
            except Exception as exc:  # a harness failure is a row too, and counts as a traceback
                traceback.print_exc()
                row = Row(name, tracebacks=1, note=f"the fault harness failed: {exc!r}"[:300])
            row.seconds = time.monotonic() - started
            rows.append(row)
            if not args.quiet:
                print(f"  [{name}] done in {row.seconds:.0f} s", file=sys.stderr)
    print(render(rows))
    bad = sum(r.lost + r.duplicated + r.tracebacks for r in rows)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
