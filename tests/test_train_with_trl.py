"""``examples/train_with_trl.py`` trains an export for real: TRL's ``SFTTrainer`` on a tiny
causal LM (``transformers.Trainer`` on a tiny classifier) builds exactly the exported adapter
and the training loss falls."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from autopeft.core.objectives import Objective
from autopeft.results.formats import render
from autopeft.results.views import StudyView
from autopeft.storage.records import TrialRecord

SCRIPT = Path(__file__).parents[1] / "examples" / "train_with_trl.py"
ALLOWED = {"torch", "transformers", "peft", "trl", "datasets"}


def test_the_script_imports_only_the_training_stack() -> None:
    roots = set()
    for node in ast.walk(ast.parse(SCRIPT.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module.split(".")[0])
    # autopeft only inside `contextlib.suppress(ImportError)`: it registers its own peft types
    assert roots - set(sys.stdlib_module_names) - {"__future__", "autopeft"} == ALLOWED
    packaged = Path(__file__).parents[1] / "autopeft/results/formats/train_with_trl.py"
    assert SCRIPT.read_bytes() == packaged.read_bytes()  # the example is what export writes


def _view(task: str, peft_config: dict[str, Any], model_dir: Path, metric: str) -> StudyView:
    spec = {
        "task": task,
        "model": {"path": str(model_dir), "precision": "fp32", "quantization": None},
        "dataset": {
            "source": "rows.jsonl", "text_column": "text", "label_column": "label",
            "prompt_column": "prompt", "completion_column": "completion",
            "messages_column": "messages", "chat_template": False,
        },
        "fidelity": {"max_steps": 20, "batch_size": 4, "seq_len": 24, "learning_rate": 3e-2},
        "metric": metric,
        "seed": 0,
    }  # fmt: skip
    record = TrialRecord(
        number=0, state="COMPLETE", values={metric: 0.5}, method="lora",  # type: ignore[arg-type]
        metrics={"steps": 20.0, "learning_rate": 3e-2, "head_params": 66.0},
        peft_config=peft_config,
    )  # fmt: skip
    return StudyView(
        name="s", url="sqlite://", spec=spec, model_path=str(model_dir), budget=10**6,
        objectives=[Objective(metric, "maximize")], records=[record], hidden_size=32,
    )  # fmt: skip


def _rows(task: str) -> list[dict[str, Any]]:
    if task == "seq_cls":
        words = ("bad", "good")
        return [{"text": f"a {words[i % 2]} film", "label": str(i % 2)} for i in range(40)]
    if task == "chat":  # what `export --with-data` writes for a chat study
        system = {"role": "system", "content": "Answer in one word."}
        return [
            {
                "prompt": [system, {"role": "user", "content": f"capital {i % 4}?"}],
                "completion": "paris",
            }
            for i in range(40)
        ]
    return [{"prompt": f"capital of country {i % 4} is", "completion": "paris"} for i in range(40)]


@pytest.mark.slow
@pytest.mark.parametrize("task", ["causal_lm", "chat", "seq_cls"])
def test_trl_script_builds_the_exported_adapter_and_the_loss_falls(
    task: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from peft import LoraConfig

    model_dir = request.getfixturevalue("tiny_bert_dir" if task == "seq_cls" else "tiny_causal_dir")
    if task in ("causal_lm", "chat"):  # chat rows are scored by greedy exact match
        stem, names = "model.layers.{}.self_attn.", ("q_proj", "v_proj")
        kind, metric = "CAUSAL_LM", "eval_loss" if task == "causal_lm" else "exact_match"
    else:
        stem, names = "bert.encoder.layer.{}.attention.self.", ("query", "value")
        kind, metric = "SEQ_CLS", "accuracy"
    targets = [stem.format(i) + name for i in range(2) for name in names]
    sizes = dict(zip(targets, (2, 4, 8, 4), strict=True))
    config = LoraConfig(
        task_type=kind, r=4, lora_alpha=8, target_modules=targets,
        rank_pattern={t: s for t, s in sizes.items() if s != 4},
        alpha_pattern={t: 2 * s for t, s in sizes.items() if s != 4},
    )  # fmt: skip
    peft_config = json.loads(json.dumps(config.to_dict(), default=sorted))
    export = tmp_path / "export"
    (export / "data").mkdir(parents=True)
    view = _view("seq_cls" if task == "seq_cls" else "causal_lm", peft_config, model_dir, metric)
    if task == "chat":
        view.spec["dataset"]["chat_template"] = True
        view.spec["evaluation"] = {"max_new_tokens": 3, "answer_pattern": None}
    for name, data in render(view, view.records[0], "trl").files.items():
        (export / name).write_bytes(data)
    rows = "".join(json.dumps(r) + "\n" for r in _rows(task))
    (export / "data" / "train.jsonl").write_text(rows)
    (export / "data" / "validation.jsonl").write_text(rows[: len(rows) // 4])
    out = subprocess.run(
        [sys.executable, str(export / "train.py"), "--model", str(model_dir)],
        capture_output=True, text=True, timeout=600,
        env={"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["module_sizes"] == sizes
    assert report["metric"] == metric and report["stored"] == 0.5
    assert 0.0 <= report["value"] <= 1.0 if metric == "exact_match" else report["value"] > 0
    losses = report["losses"]  # logged every 2 steps
    assert len(losses) == 10 and sum(losses[-3:]) < sum(losses[:3]), losses

    # examples/load_exported.py reads the task (and a classifier's label count) from
    # training.json and rebuilds the same ranks
    loader = Path(__file__).parents[1] / "examples" / "load_exported.py"
    loaded = subprocess.run(
        [sys.executable, str(loader), str(export), "--model", str(model_dir)],
        capture_output=True, text=True, timeout=600,
        env={"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert json.loads(loaded.stdout.strip().splitlines()[-1]) == sizes
