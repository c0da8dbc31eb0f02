"""``make demo``: a real search study end to end, then export and reload the chosen config.

1. runs ``studies/demo.yaml`` (MiniLM-L6 on TREC-6, installed from PyPI; resumes if stopped);
2. prints the Pareto front and writes the plots;
3. exports the knee of the front as ``adapter_config.json``;
4. reloads it in a separate Python process that imports only ``peft`` and ``transformers``
   (``examples/load_exported.py``) and checks every module's rank against the stored trial.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STUDY = ROOT / "studies" / "demo.yaml"
RUNS = Path("runs")


def main() -> int:
    from rich.console import Console

    from autopeft.cli import _print_front
    from autopeft.driver import run_study
    from autopeft.export import export_config
    from autopeft.progress import RichReporter

    console = Console()
    RUNS.mkdir(exist_ok=True)
    console.rule("1. search: autopeft run studies/demo.yaml")
    reporter = RichReporter()
    try:
        outcome = run_study(STUDY, reporter=reporter)
    finally:
        reporter.close()
    console.rule("2. Pareto front: autopeft front demo --plot runs/demo_front.png")
    _print_front(outcome.name, outcome.url, RUNS / "demo_front.png")
    console.rule("3. export: autopeft export demo --pick knee --out runs/demo_knee")
    path, record = export_config(outcome.url, outcome.name, RUNS / "demo_knee", pick="knee")
    console.print(f"trial {record.number} -> {path}")
    console.rule("4. reload with plain peft + transformers: examples/load_exported.py")
    loaded = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "load_exported.py"),
            str(path.parent),
            "--num-labels",
            "6",
        ],  # TREC-6; LoRA ranks do not depend on the head
        check=True,
        capture_output=True,
        text=True,
    )
    ranks = json.loads(loaded.stdout.strip().splitlines()[-1])
    if ranks != record.module_sizes:
        console.print(f"[red]reloaded ranks {ranks} != stored {record.module_sizes}[/red]")
        return 1
    console.print(
        f"[green]ok[/green]: peft reloaded {len(ranks)} LoRA modules with exactly the "
        f"stored ranks of trial {record.number}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
