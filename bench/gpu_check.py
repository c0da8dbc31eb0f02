"""GPU check: the SmolLM2 study on CUDA (two workers sharing one GPU, bf16) plus one QLoRA trial,
with the same study's CPU figures beside them.

    python bench/gpu_check.py                 # on a CUDA machine: GPU runs, then the CPU runs
    python bench/gpu_check.py --device cpu    # what CPU allows: the CPU runs, GPU rows skipped

Runs ``studies/smollm2_sft.yaml`` (SmolLM2-135M-Instruct on TREC-6 chat completions) as:

* ``gpu-bf16``: ``--gpu-trials`` trials on 2 Ray workers with no GPU setting at all
  (``gpus_per_trial: auto``: the plan, printed, puts both on one GPU when two of the space's
  largest configuration fit), ``model.precision: bf16``;
* ``gpu-qlora``: one LoRA trial in process on an NF4-quantized base (bitsandbytes);
* ``cpu-fp32``: ``--cpu-trials`` trials of the same study on 2 Ray workers on CPU, one thread each
  (on a GPU machine: the GPUs hidden from the workers, with a ``note:`` line).

Prints, per run and method: trials, peak memory (CUDA ``max_memory_allocated`` on GPU, the live
tensor tracker on CPU), the median error of the memory prediction, median train seconds, exact
match, trials per hour of wall time and the device the trials recorded; then checks that GPU
runs' trials ran on ``cuda:N ...`` and CPU runs' on ``cpu`` (exit 1 if not).
Everything is written under ``--out`` (default ``runs/gpu_check``); nothing is downloaded. Sized
to finish in under 10 minutes on one H100/H200 with the default trial counts.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STUDY = ROOT / "studies" / "smollm2_sft.yaml"
LORA_SPACE = """\
version: 1
name: qlora_check
method: lora
max_trainable_params: 2000000
parameters:
  target_modules: all_linear
  rank: 8
  alpha_ratio: 2.0
  dropout: 0.0
  learning_rate: 2.0e-3
"""


def spec_text(name: str, out: Path, n_trials: int, model: str, executor: str, space: Path) -> str:
    """The SmolLM2 study with its name, storage, model block, executor and space replaced."""
    text = STUDY.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^name: .*$", f"name: {name}", text)
    text = re.sub(r"(?m)^n_trials: .*$", f"n_trials: {n_trials}", text)
    text = re.sub(r"(?m)^model: .*$", f"model: {model}", text)
    text = re.sub(r"(?m)^executor: .*$", f"executor: {executor}", text)
    text = re.sub(r"(?m)^search_space: .*$", f"search_space: {space}", text)
    return text + f"storage: sqlite:///{out / 'gpu_check.db'}\n"


def run(label: str, text: str, out: Path) -> list[tuple[str, dict]]:
    """Run one study spec; rows (label, figures) per method."""
    from autopeft.run.driver import run_study

    path = out / f"{label}.yaml"
    path.write_text(text, encoding="utf-8")
    t0 = time.perf_counter()
    outcome = run_study(path)
    wall = time.perf_counter() - t0
    done = [r for r in outcome.records if r.state == "COMPLETE"]
    failed = [r for r in outcome.records if r.state == "FAIL"]
    for r in failed:
        print(f"  {label}: trial {r.number} failed: {r.fail_reason}")
    rows = []
    median = statistics.median
    for method in sorted({r.method for r in done}):
        mine = [r for r in done if r.method == method]
        rows.append(
            (
                f"{label} {method}",
                {
                    "trials": len(mine),
                    "peak MiB (max)": max(r.values["peak_memory_mb"] for r in mine),
                    "peak MiB (median)": median(r.values["peak_memory_mb"] for r in mine),
                    "train s (median)": median(r.metrics["train_seconds"] for r in mine),
                    "exact match (max)": max(r.values["exact_match"] for r in mine),
                    "trials/hour": 3600 * len(done) / wall,
                    "memory": mine[0].metrics.get("memory_method", "?"),
                    "mem error % (median)": _memory_error(mine),
                    "device": ", ".join(sorted({str(r.metrics.get("device")) for r in mine})),
                },
            )
        )
    return rows


def _memory_error(records: list) -> float:
    """Median |predicted - measured| / measured peak memory, in percent (nan if none)."""
    errors = [
        abs(r.metrics["predicted_peak_memory_mb"] - r.metrics["peak_memory_mb"])
        / r.metrics["peak_memory_mb"]
        for r in records
        if "predicted_peak_memory_mb" in r.metrics and r.metrics.get("peak_memory_mb")
    ]
    return 100 * statistics.median(errors) if errors else float("nan")


def check_devices(rows: list[tuple[str, dict]]) -> bool:
    """GPU runs' trials recorded a ``cuda:N NAME`` device, CPU runs' ``cpu``."""
    ok = True
    for label, figures in rows:
        devices = figures["device"].split(", ")
        want_gpu = label.startswith("gpu")
        good = all(d.startswith("cuda:") if want_gpu else d == "cpu" for d in devices)
        print(f"{'ok  ' if good else 'FAIL'} {label}: trials ran on {figures['device']}")
        ok = ok and good
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["auto", "cpu"], default="auto")
    parser.add_argument("--gpu-trials", type=int, default=12)
    parser.add_argument("--cpu-trials", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "gpu_check")
    args = parser.parse_args()

    import torch

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.db").unlink(missing_ok=True)
    space = ROOT / "search_spaces" / "smollm2_peft.yaml"
    lora = args.out / "qlora_space.yaml"
    lora.write_text(LORA_SPACE, encoding="utf-8")
    cuda = args.device == "auto" and torch.cuda.is_available()
    rows: list[tuple[str, dict]] = []
    if cuda:
        print(f"CUDA: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
        shared = "{name: ray, workers: 2, cpus_per_trial: 2}"  # gpus_per_trial: auto
        bf16 = "{path: smollm2-135m, precision: bf16}"
        text = spec_text("gpu_bf16", args.out, args.gpu_trials, bf16, shared, space)
        rows += run("gpu-bf16", text, args.out)
        qlora_model = "{path: smollm2-135m, precision: bf16, quantization: nf4}"
        inprocess = "{name: inprocess, device: cuda}"
        try:
            rows += run("gpu-qlora", spec_text("gpu_qlora", args.out, 1, qlora_model, inprocess,
                                                lora), args.out)  # fmt: skip
        except Exception as exc:  # report and go on to the CPU figures
            print(f"gpu-qlora: not run: {exc}")
    else:
        print("no CUDA device: the GPU runs (bf16 on 2 workers sharing a GPU, QLoRA) are skipped")
    cpu = "{name: ray, workers: 2, cpus_per_trial: 1, device: cpu}"
    text = spec_text("cpu_fp32", args.out, args.cpu_trials, "smollm2-135m", cpu, space)
    rows += run("cpu-fp32", text, args.out)
    print_table(rows)
    return 0 if check_devices(rows) else 1


def print_table(rows: list[tuple[str, dict]]) -> None:
    if not rows:
        print("no complete trials")
        return
    columns = list(rows[0][1])
    print(f"{'run / method':<26}" + "".join(f"{c:>20}" for c in columns))
    for label, figures in rows:
        cells = "".join(
            f"{v:>20.3f}" if k.startswith("exact") else f"{v:>20.1f}" if isinstance(v, float)
            else f"{v[:40]:>42}" if k == "device"
            else f"{v!s:>20}"
            for k, v in figures.items()
        )  # fmt: skip
        print(f"{label:<26}{cells}")


if __name__ == "__main__":
    sys.exit(main())
