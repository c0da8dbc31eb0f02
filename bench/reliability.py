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

The rows: ``worker-sigkill`` and ``driver-sigkill`` (kills, resumes), ``postgres-restart`` (the
local server restarted with ``pg_ctlcluster`` while a trial runs; needs root and a PostgreSQL
``--storage`` on this host), ``postgres-down`` (the study database refuses connections, as
``ALTER DATABASE ... ALLOW_CONNECTIONS false`` makes it, for longer than the driver's
``AUTOPEFT_DB_RETRY_SECONDS=3``: one ``error:`` line, then the next run completes the study;
the role must own the database), ``sqlite-locked`` (``autopeft show`` in a loop and a process
holding a write lock or a read transaction 3 s at a time while the study runs; SQLite only),
``second-driver`` (a second ``autopeft run`` of a live study is refused; a SIGKILLed driver's
lease is taken over by the next run), ``unwritable-paths`` (export and plot paths that cannot be
written) and ``bad-inputs``. A row that does not apply to the storage says "skipped".

Adding a fault: write ``def my_fault(ctx: Context) -> Row`` decorated with ``@fault("name",
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
from autopeft.run.progress import Reporter  # noqa: E402
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

    from autopeft.models.resolve import resolve_model

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
        from autopeft.results.views import load_view

        try:
            return list(load_view(study.name, study.url).records)
        except Exception:  # not created yet, or the database is busy
            return []

    def driver(
        self, study: Study, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        """``autopeft run SPEC -q`` in a subprocess (the CLI a user runs), with ``env`` added to
        this process's environment."""
        env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
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
        said = ""
        if proc is not None and proc.poll() is not None and proc.stderr is not None:
            said = f": {proc.stderr.read().strip()[-300:]!r}"
        raise RuntimeError(f"{study.name}: condition not reached (driver exit {_rc(proc)}){said}")


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
    from autopeft.executors.factory import make_executor
    from autopeft.run.driver import run_study
    from autopeft.run.prepare import prepare_study, worker_setup

    # at least 100 steps: a shorter trial may end before the driver hears of its first step
    study = ctx.study("worker-sigkill", n_trials=4, executor=RAY, steps=max(ctx.steps, 100))
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
    from autopeft.run.driver import run_study

    # at least 100 steps: a shorter trial may complete between the check and the kill
    study = ctx.study("driver-sigkill", n_trials=4, steps=max(ctx.steps, 100))
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


def _stderr_lines(err: str) -> list[str]:
    return [x for x in err.strip().splitlines() if x.strip()]


def _one_error_line(err: str) -> bool:
    lines = _stderr_lines(err)
    return len(lines) == 1 and lines[0].startswith("error:")


def _finish(proc: subprocess.Popen[str], timeout: float = 300.0) -> str:
    """Wait for a driver started by :meth:`Context.driver`; its stderr."""
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        raise RuntimeError(f"the driver did not finish in {timeout:.0f} s: {err[-500:]}") from None
    return err


def _mid_trial(min_complete: int) -> Callable[[list[TrialRecord]], bool]:
    def mid(records: list[TrialRecord]) -> bool:
        running = [r for r in records if r.state == TrialState.RUNNING]
        return len(complete(records)) >= min_complete and bool(running)

    return mid


# -- PostgreSQL --------------------------------------------------------------------------------
def _postgres(ctx: Context) -> str | None:
    """Why a PostgreSQL row cannot run with this ``--storage`` (None: it can)."""
    if not ctx.storage or not ctx.storage.startswith("postgresql"):
        return "skipped: needs --storage postgresql://... (this run: SQLite files)"
    return None


def _pg_admin(url: str) -> tuple[Any, str]:
    """An AUTOCOMMIT engine on the server's ``postgres`` database, and the study database's
    name (as tests/test_db_faults.py does)."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    db = make_url(url)
    return create_engine(db.set(database="postgres"), isolation_level="AUTOCOMMIT"), str(
        db.database
    )


def _pg_terminate(engine: Any, database: str) -> int:
    """Terminate this role's backends on ``database``; how many."""
    from sqlalchemy import text

    query = text(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = :db AND pid <> pg_backend_pid() AND usename = current_user"
    )
    with engine.connect() as c:
        return int(c.execute(query, {"db": database}).scalar() or 0)


def _pg_allow(engine: Any, database: str, allow: bool) -> None:
    from sqlalchemy import text

    with engine.connect() as c:
        c.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(allow).lower()}'))


def _pg_cluster(url: str) -> list[str] | None:
    """``[version, cluster]`` of the local Debian cluster serving ``url``'s port, if any."""
    import shutil

    from sqlalchemy.engine import make_url

    db = make_url(url)
    if db.host not in (None, "", "localhost", "127.0.0.1", "::1") or os.geteuid() != 0:
        return None
    if shutil.which("pg_lsclusters") is None or shutil.which("pg_ctlcluster") is None:
        return None
    out = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        version, cluster, port, *_ = line.split()
        if int(port) == (db.port or 5432):
            return [version, cluster]
    return None


def _pg_ready(url: str, timeout: float = 60.0) -> float:
    """Wait until ``url`` answers a query again; seconds waited."""
    from sqlalchemy import create_engine, text

    started = time.monotonic()
    engine = create_engine(url)
    try:
        while True:
            try:
                with engine.connect() as c:
                    c.execute(text("SELECT 1"))
                return time.monotonic() - started
            except Exception:
                if time.monotonic() - started > timeout:
                    raise
                time.sleep(0.2)
    finally:
        engine.dispose()


@fault("postgres-restart", "restart the PostgreSQL server (pg_ctlcluster) mid-trial")
def postgres_restart(ctx: Context) -> Row:
    row = Row("postgres-restart")
    why = _postgres(ctx)
    cluster = None if why else _pg_cluster(ctx.storage or "")
    if why or cluster is None:
        row.note = why or "skipped: not a local Debian cluster run as root (pg_ctlcluster)"
        return row
    study = ctx.study("postgres-restart", n_trials=3)
    proc = ctx.driver(study)
    try:
        records = ctx.wait_for(study, _mid_trial(1), proc)
        before = {r.number: r.values for r in complete(records)}
        started = time.monotonic()
        subprocess.run(["pg_ctlcluster", *cluster, "restart"], check=True, capture_output=True)
        row.injected += 1
        down = time.monotonic() - started
        down += _pg_ready(ctx.storage or "")
    finally:
        err = _finish(proc)
    outcome = ctx.records(study)
    audit(row, outcome, study.budget, before=before)
    row.tracebacks = _tracebacks(err)
    fails = sum(r.state == TrialState.FAIL for r in outcome)
    row.note = (
        f"pg_ctlcluster {' '.join(cluster)} restart while trial "
        f"{[r.number for r in records if r.state == TrialState.RUNNING]} ran (server back "
        f"after {down:.1f} s); driver exit {proc.returncode}, {fails} failed trial(s)"
    )
    if proc.returncode != 0:
        row.note += f"; stderr: {err.strip()[-300:]!r}"
    return row


@fault(
    "postgres-down",
    "the study database refuses connections past the retry window, then comes back",
)
def postgres_down(ctx: Context) -> Row:
    row = Row("postgres-down")
    why = _postgres(ctx)
    if why:
        row.note = why
        return row
    engine, database = _pg_admin(ctx.storage or "")
    study = ctx.study("postgres-down", n_trials=3)
    window = 3
    proc = ctx.driver(study, env={"AUTOPEFT_DB_RETRY_SECONDS": str(window)})
    try:
        records = ctx.wait_for(study, _mid_trial(1), proc)
        before = {r.number: r.values for r in complete(records)}
        try:
            _pg_allow(engine, database, False)
            _pg_terminate(engine, database)
            row.injected += 1
            err = _finish(proc, timeout=120)
        finally:
            _pg_allow(engine, database, True)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        engine.dispose()
    first = proc.returncode
    clean = first not in (0, None) and _one_error_line(err) and not _tracebacks(err)
    row.tracebacks = _tracebacks(err)
    rerun = ctx.driver(study)
    err2 = _finish(rerun)
    row.tracebacks += _tracebacks(err2)
    records = ctx.records(study)
    audit(row, records, study.budget, before=before)
    interrupted = [r.number for r in records if r.interrupted]
    row.note = (
        f"down for longer than AUTOPEFT_DB_RETRY_SECONDS={window}: exit {first}, "
        f"{'one line ' + repr(_cut(err)) if clean else 'NOT one error line: ' + repr(err[-300:])}"
        f"; the next run exit {rerun.returncode}, interrupted trial(s) {interrupted} re-run"
    )
    if rerun.returncode != 0:
        row.note += f"; stderr: {err2.strip()[-300:]!r}"
    return row


# -- SQLite ------------------------------------------------------------------------------------
_LOCKER = """\
import sqlite3, sys, time
db, hold, stop = sys.argv[1], float(sys.argv[2]), sys.argv[3]
import os
n = 0
while not os.path.exists(stop):
    con = sqlite3.connect(db, isolation_level=None, timeout=60)
    if n % 2 == 0:
        con.execute("BEGIN IMMEDIATE")  # a writer's lock: the driver cannot write
    else:
        con.execute("BEGIN")
        con.execute("SELECT count(*) FROM trials").fetchall()  # a reader's shared lock
    n += 1
    print(n, flush=True)
    time.sleep(hold)
    con.execute("COMMIT")
    con.close()
    time.sleep(0.5)
"""


@fault("sqlite-locked", "`autopeft show` in a loop and a process holding locks, while it runs")
def sqlite_locked(ctx: Context) -> Row:
    row = Row("sqlite-locked")
    if ctx.storage:
        row.note = "skipped: SQLite only (this run: --storage)"
        return row
    study = ctx.study("sqlite-locked", n_trials=3)
    db = study.url.removeprefix("sqlite:///")
    stop = ctx.root / f"{study.name}.stop"
    # a short busy timeout: a lock becomes "database is locked" at once, and is retried
    proc = ctx.driver(study, env={"AUTOPEFT_SQLITE_BUSY_SECONDS": "0.5"})
    show_runs, show_codes, show_tb, show_err = 0, Counter[int](), 0, ""
    locker = None
    try:
        ctx.wait_for(study, lambda rs: any(r.state == TrialState.RUNNING for r in rs), proc)
        locker = subprocess.Popen(
            [sys.executable, "-c", _LOCKER, db, "3", str(stop)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        while proc.poll() is None:
            show = subprocess.run(
                [sys.executable, "-m", "autopeft.cli", "show", study.name, "--storage", study.url],
                capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
            )  # fmt: skip
            show_runs += 1
            show_codes[show.returncode] += 1
            show_tb += _tracebacks(show.stderr + show.stdout)
            if show.returncode:
                show_err = show.stderr.strip()[-300:]
    finally:
        stop.touch()
        err = _finish(proc)
        holds = 0
        if locker is not None:
            out, lock_err = locker.communicate(timeout=30)
            holds = len(out.split())
            row.tracebacks += _tracebacks(lock_err)
    records = ctx.records(study)
    audit(row, records, study.budget)
    row.injected = holds + show_runs
    row.tracebacks += _tracebacks(err) + show_tb
    fails = sum(r.state == TrialState.FAIL for r in records)
    row.lost += fails  # a lock must never fail a trial
    row.note = (
        f"{holds} lock(s) held 3 s (BEGIN IMMEDIATE / read transaction, in turn) and "
        f"{show_runs} `autopeft show` runs (exit codes "
        f"{', '.join(f'{k}: {n}' for k, n in sorted(show_codes.items()))}) during the study; "
        f"driver busy timeout 0.5 s, exit {proc.returncode}, {fails} failed trial(s)"
    )
    if show_err:
        row.note += f"; a failed show said {show_err!r}"
    return row


# -- one driver per study ------------------------------------------------------------------------
@fault("second-driver", "a second `autopeft run` of a live study; then a dead driver's lease")
def second_driver(ctx: Context) -> Row:
    row = Row("second-driver")
    # 1. a live study: the second run is refused, the first goes on to its exact budget
    # (the first is paused with SIGSTOP meanwhile, so a short study cannot end before the second
    # has started up: its heartbeat stays fresh for STALE_AFTER_SECONDS, 120 s)
    study = ctx.study("second-driver", n_trials=3)
    first = ctx.driver(study)
    try:
        ctx.wait_for(study, _mid_trial(0), first)
        first.send_signal(signal.SIGSTOP)
        try:
            second = subprocess.run(
                [sys.executable, "-m", "autopeft.cli", "run", str(study.spec), "-q"],
                capture_output=True, text=True, cwd=ctx.root,
                env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=100,
            )  # fmt: skip
        finally:
            first.send_signal(signal.SIGCONT)
        row.injected += 1
    finally:
        err = _finish(first)
    refused = (
        second.returncode == 2
        and _one_error_line(second.stderr)
        and "is being run by" in second.stderr
    )
    row.tracebacks += _tracebacks(err + second.stderr)
    audit(row, ctx.records(study), study.budget)
    lines = _stderr_lines(second.stderr)
    if not refused:
        row.duplicated += 1  # a second driver that was not refused ran the study twice
    # 2. a stale lease: SIGKILL the driver mid-trial, the next run takes the lease over at once
    stale = ctx.study("stale-lease", n_trials=3)
    killed = ctx.driver(stale)
    before, _, kill_err = kill_mid_trial(ctx, stale, killed, min_complete=1)
    row.injected += 1
    started = time.monotonic()
    again = ctx.driver(stale)
    again_err = _finish(again)
    row.tracebacks += _tracebacks(kill_err + again_err)
    stale_row = audit(Row("stale"), ctx.records(stale), stale.budget, before=before)
    row.lost += stale_row.lost
    row.duplicated += stale_row.duplicated
    row.budget = (row.budget or 0) + stale.budget
    row.complete = (row.complete or 0) + (stale_row.complete or 0)
    took_over = "taking over its lease" in again_err
    if refused:
        said = f"refused with {lines[0][:90] + '...'!r}"
    else:
        said = f"NOT refused: {second.stderr.strip()[-300:]!r}"
    took = f"took it over ({_note_of(again_err)!r})" if took_over else "gave no takeover note"
    row.note = (
        f"second run: exit {second.returncode}, {said}; first driver exit {first.returncode}. "
        f"Dead driver's lease: the next run {took}, exit {again.returncode} after "
        f"{time.monotonic() - started:.0f} s. Budget and complete: both studies"
    )
    return row


def _cut(err: str, n: int = 110) -> str:
    text = err.strip()
    return text if len(text) <= n else text[:n] + "..."


def _note_of(err: str) -> str:
    notes = [x for x in _stderr_lines(err) if "taking over its lease" in x]
    return notes[0].split(", ", 1)[-1] if notes else ""


# -- disk --------------------------------------------------------------------------------------
@fault("unwritable-paths", "export and plot to paths that cannot be written")
def unwritable_paths(ctx: Context) -> Row:
    from typer.testing import CliRunner

    from autopeft.cli import app
    from autopeft.run.driver import run_study

    row = Row("unwritable-paths")
    study = ctx.study("unwritable", n_trials=1, steps=5)
    run_study(study.spec)
    d = ctx.root / "unwritable"
    d.mkdir()
    regular = _write(d / "a-file", "not a directory\n")
    (d / "taken").mkdir()
    (d / "taken" / "adapter_config.json").mkdir()  # the file to write is a directory
    pick = ["--trial", "0"]
    cases = {
        "export under a regular file": ["export", study.name, *pick, "--out", str(regular / "sub")],
        "export onto a regular file": ["export", study.name, *pick, "--out", str(regular)],
        "export whose file is a directory": [
            "export",
            study.name,
            *pick,
            "--out",
            str(d / "taken"),
        ],
        "plot under a regular file": ["front", study.name, "--plot", str(regular / "x.png")],
    }
    bad = []
    for label, args in cases.items():
        files = sorted(p for p in d.rglob("*"))
        out = CliRunner().invoke(app, [*args, "--storage", study.url])
        row.injected += 1
        escaped = out.exception is not None and not isinstance(out.exception, SystemExit)
        if escaped or _tracebacks(out.output + out.stderr):
            row.tracebacks += 1
            detail = "".join(traceback.format_exception(out.exception)) if escaped else out.stderr
            print(f"  [unwritable-paths] {label}: TRACEBACK\n{detail}", file=sys.stderr)
        written = sorted(p for p in d.rglob("*")) != files or regular.read_text() != (
            "not a directory\n"
        )
        if out.exit_code != 2 or not _one_error_line(out.stderr) or written:
            bad.append(f"{label} (exit {out.exit_code}{', wrote' if written else ''})")
        if not ctx.quiet:
            print(f"  [unwritable-paths] {label}: {out.stderr.strip()}", file=sys.stderr)
    row.note = (
        "each one `error:` line, exit 2, nothing written"
        if not bad
        else "not one `error:` line with exit 2 and nothing written: " + "; ".join(bad)
    )
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
