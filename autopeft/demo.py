"""``make demo`` and ``make demo-llm``: a real search study end to end, then use its choice.

``python -m autopeft.demo`` (``make demo``) runs ``studies/demo.yaml`` (MiniLM-L6 on TREC-6);
``python -m autopeft.demo --llm`` (``make demo-llm``) runs ``studies/smollm2_sft.yaml``
(SmolLM2-135M-Instruct, a Llama-architecture decoder, on TREC-6 as chat completions). Both
install from PyPI, so nothing is downloaded, and resume if stopped. Each:

1. runs the study on two Ray workers;
2. prints the Pareto front with the spec's references (defaults trained in the same study)
   and, for each reference, the front member that matches it or the closest one, and writes
   the plots;
3. exports the knee of the front as ``adapter_config.json``;
4. uses the export in a separate Python process that imports only ``peft`` and
   ``transformers``: the classifier demo reloads it and checks every rank
   (``examples/load_exported.py``); the LLM demo prints the base model's zero-shot exact match
   beside the best trial's on the same validation examples, then trains the exported config in
   a plain training loop (``examples/train_exported.py``) and prints the base model's and the
   adapted model's answers side by side.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from autopeft.storage.records import TrialRecord

ROOT = Path(__file__).resolve().parent.parent
STUDY = ROOT / "studies" / "demo.yaml"
LLM_STUDY = ROOT / "studies" / "smollm2_sft.yaml"
RUNS = Path("runs")
SHOWN_ANSWERS = 4


def main(argv: list[str] | None = None) -> int:
    from autopeft.cli.common import make_console
    from autopeft.cli.front import print_front
    from autopeft.results.export import export_config
    from autopeft.results.views import load_view
    from autopeft.run.driver import run_study
    from autopeft.run.progress import RichReporter

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llm", action="store_true", help="run the decoder-LLM demo")
    llm = parser.parse_args(argv).llm
    study = LLM_STUDY if llm else STUDY
    console = make_console()
    RUNS.mkdir(exist_ok=True)
    console.rule(f"1. search: autopeft run {study.relative_to(ROOT)}")
    reporter = RichReporter()
    try:
        outcome = run_study(study, reporter=reporter)
    finally:
        reporter.close()
    name = outcome.name
    console.rule(f"2. Pareto front: autopeft front {name} --plot runs/{name}_front.png")
    print_front(name, outcome.url, RUNS / f"{name}_front.png")
    _compare_references(console, name, outcome.url)
    console.rule(f"3. export: autopeft export {name} --pick knee --out runs/{name}_knee")
    path, record = export_config(outcome.url, name, RUNS / f"{name}_knee", pick="knee")
    console.print(f"trial {record.number} -> {path}")
    if llm:
        return _use_llm_export(console, study, outcome.url, path.parent, record)
    model = load_view(name, outcome.url).model_path
    return _reload_classifier_export(console, path.parent, record, model)


def _compare_references(console: Console, name: str, url: str) -> None:
    """Did the search beat the defaults the spec lists (``references:``)? On validation;
    ``autopeft confirm`` then compares them on the test split."""
    from autopeft.cli.show import show_references
    from autopeft.results.views import load_view

    view = load_view(name, url)
    if view.references():
        console.rule(f"did it beat the defaults? (autopeft show {name}; confirm for the test)")
        show_references(console, view)


def _reload_classifier_export(
    console: Console, export: Path, record: TrialRecord, model: str
) -> int:
    console.rule("4. reload with plain peft + transformers: examples/load_exported.py")
    script = ROOT / "examples" / "load_exported.py"
    # the export names the Hub ID; here the model is the pip-installed copy the study used
    lines = _run_plain(script, str(export), "--model", model)
    ranks = json.loads(lines[-1])
    if ranks != record.module_sizes:
        console.print(f"[red]reloaded ranks {ranks} != stored {record.module_sizes}[/red]")
        return 1
    console.print(
        f"[green]ok[/green]: peft reloaded {len(ranks)} LoRA modules with exactly the "
        f"stored ranks of trial {record.number}"
    )
    return 0


def _use_llm_export(
    console: Console, study: Path, url: str, export: Path, record: TrialRecord
) -> int:
    from autopeft.results.views import choose_trial, load_view
    from autopeft.run.prepare import prepare_study

    prepared = prepare_study(study, storage=url)
    spec = prepared.files.spec
    view = load_view(prepared.name, url)
    console.rule("4. the base model, zero-shot, on the same validation examples")
    base, n = _zero_shot(prepared)
    best = choose_trial(view, pick="max-accuracy")  # the best value of the study's metric
    console.print(
        f"{spec.metric} on {n} validation examples: base model (no adapter) "
        f"{base[spec.metric]:.3f}; best trial {best.number} ({best.method}, "
        f"{best.values['trainable_params']:,.0f} params) {best.values[spec.metric]:.3f}; "
        f"exported knee, trial {record.number}: {record.values[spec.metric]:.3f}"
    )
    console.rule("5. a training job with plain peft + transformers: examples/train_exported.py")
    train, prompts = _write_rows(prepared, RUNS)
    fid = spec.fidelity
    lines = _run_plain(
        ROOT / "examples" / "train_exported.py",
        str(export),
        "--model",
        view.model_path,
        "--train",
        str(train),
        "--prompts",
        str(prompts),
        "--steps",
        str(fid.max_steps),
        "--lr",
        str(record.metrics.get("learning_rate", fid.learning_rate)),
        "--batch-size",
        str(fid.batch_size),
        "--max-new-tokens",
        str(spec.evaluation_or_default.max_new_tokens),
    )
    sizes = json.loads(lines[0])["module_sizes"]
    if not _sizes_match(sizes, record):
        console.print(f"[red]reloaded sizes {sizes} != trial {record.number}'s[/red]")
        return 1
    detail = (
        "every rank as stored"
        if record.method == "lora"
        else f"{sum(sizes.values()):,} trainable parameters as stored"
    )
    console.print(
        f"[green]ok[/green]: peft rebuilt trial {record.number}'s {record.method} adapter on "
        f"{len(sizes)} modules, {detail}"
    )
    _print_answers(console, [json.loads(line) for line in lines[1:]])
    return 0


def _zero_shot(prepared: Any) -> tuple[dict[str, float], int]:
    """The task's metrics of the bare base model on the study's validation examples."""
    from autopeft.executors.worker import load_context
    from autopeft.run.prepare import worker_setup

    ctx = load_context(worker_setup(prepared, prepared.files.spec.executor))
    n = min(prepared.files.spec.fidelity.eval_examples, len(prepared.splits.validation))
    return ctx.evaluate(ctx.model), n


def _write_rows(prepared: Any, out: Path) -> tuple[Path, Path]:
    """The study's training rows and a few validation rows as JSONL, prompts rendered with the
    chat template (what a training job would read)."""
    from autopeft.tasks.causal_lm import render_prompts
    from autopeft.tasks.loading import load_tokenizer

    spec = prepared.files.spec
    tokenizer = load_tokenizer(prepared.model_path)
    paths = []
    cuts = {"train": spec.fidelity.train_examples, "validation": SHOWN_ANSWERS}
    for part_name, size in cuts.items():
        part = getattr(prepared.splits, part_name)
        part = part.subset(range(min(size, len(part))))
        prompts = render_prompts(tokenizer, part, spec.dataset.chat_template)
        path = out / f"{prepared.name}_{part_name}.jsonl"
        with path.open("w", encoding="utf-8") as handle:
            for ids, completion in zip(prompts, part.completions, strict=True):
                text = tokenizer.decode(ids)
                handle.write(json.dumps({"prompt": text, "completion": completion}) + "\n")
        paths.append(path)
    return paths[0], paths[1]


def _sizes_match(sizes: dict[str, int], record: TrialRecord) -> bool:
    if record.method == "lora":
        return sizes == record.module_sizes
    return sum(sizes.values()) == int(record.metrics["trainable_params"])


def _print_answers(console: Console, rows: list[dict[str, str]]) -> None:
    from rich.table import Table

    table = Table(title="greedy answers on validation questions")
    for column in ("expected", "base model", "adapted model"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["gold"], repr(row["base"]), repr(row["adapted"]))
    console.print(table)


def _run_plain(script: Path, *args: str) -> list[str]:
    """Run an example script in a fresh interpreter; its stdout lines."""
    done = subprocess.run(
        [sys.executable, str(script), *args], check=True, capture_output=True, text=True
    )
    return [line for line in done.stdout.splitlines() if line.strip()]


if __name__ == "__main__":
    sys.exit(main())
