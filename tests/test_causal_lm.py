"""The causal_lm task family on a tiny random Llama: encoding, loss masking, metrics, studies."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from autopeft.data import load_completions
from autopeft.exceptions import DatasetError
from autopeft.results.views import load_view
from autopeft.run.driver import run_study
from autopeft.spec import DatasetSpec, EvaluationSpec, FidelitySpec
from autopeft.tasks.answers import exact_match, normalize
from autopeft.tasks.causal_lm import IGNORE, CausalLanguageModeling, encode_rows, training_tensors
from autopeft.tasks.loading import load_tokenizer
from tests.conftest import SPACE, assert_user_error, kill_driver_mid_trial

TASK = CausalLanguageModeling()
ANSWERS = {"good": "yes", "great": "yes", "fine": "yes", "bad": "no", "awful": "no", "poor": "no"}

CAUSAL_STUDY = """\
version: 1
name: tiny
task: causal_lm
model: {model}
dataset: {{source: data.jsonl}}
metric: {metric}
search_space: space.yaml
n_trials: {n_trials}
fidelity: {{train_examples: 48, max_steps: {steps}, eval_examples: 12, seq_len: 24, batch_size: 8}}
evaluation: {{max_new_tokens: 3, batch_size: 6}}
seed: 0
storage: sqlite:///{db}
sampler: random
executor: {executor}
"""


def write_jsonl(path: Path, n: int = 80) -> Path:
    """Prompt/completion rows: is the word positive? yes/no."""
    words = list(ANSWERS)
    with path.open("w") as handle:
        for i in range(n):
            word = words[i % len(words)]
            row = {"prompt": f"is {word} movie {i % 9} positive ?", "completion": ANSWERS[word]}
            handle.write(json.dumps(row) + "\n")
    return path


def causal_study(
    directory: Path,
    model: Path,
    *,
    metric: str = "exact_match",
    n_trials: int = 3,
    steps: int = 4,
    executor: str = "{threads: 1, device: cpu}",
) -> Path:
    write_jsonl(directory / "data.jsonl")
    (directory / "space.yaml").write_text(SPACE.format(budget=6000))
    path = directory / "study.yaml"
    path.write_text(
        CAUSAL_STUDY.format(
            model=model,
            metric=metric,
            n_trials=n_trials,
            steps=steps,
            executor=executor,
            db=directory / "studies.db",
        )
    )
    return path


# -- encoding -------------------------------------------------------------------------------
def test_prompt_tokens_never_contribute_to_the_loss(tiny_causal_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    data = load_completions(str(write_jsonl(tmp_path / "d.jsonl", 8)))
    tokenizer = load_tokenizer(tiny_causal_dir)
    rows = encode_rows(tokenizer, data, 24, chat=False)
    batch = training_tensors(rows, 24, tokenizer.pad_token_id)
    for i, (prompt, completion) in enumerate(zip(rows.prompts, rows.completions, strict=True)):
        labels = batch["labels"][i]
        assert (labels[: len(prompt)] == IGNORE).all()
        assert labels[len(prompt) : len(prompt) + len(completion)].tolist() == completion
        assert (labels[len(prompt) + len(completion) :] == IGNORE).all()
        assert completion[-1] == tokenizer.eos_token_id
    model = AutoModelForCausalLM.from_pretrained(tiny_causal_dir).eval()
    with torch.no_grad():
        loss = model(**batch).loss
        # the model's loss must equal the mean next-token NLL over completion tokens only
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    target = batch["labels"][:, 1:]
    nll = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="none"
    ).reshape(target.shape)
    on_completion = target != IGNORE
    assert torch.allclose(loss, nll[on_completion].mean(), atol=1e-5)
    assert not torch.allclose(loss, nll[batch["attention_mask"][:, 1:].bool()].mean(), atol=1e-3)


def test_long_rows_lose_their_prompt_start_and_a_completion_that_cannot_fit_is_located(
    tiny_causal_dir: Path, tmp_path: Path
) -> None:
    path = tmp_path / "long.jsonl"
    rows = [
        {"prompt": " ".join(f"w{i}" for i in range(40)) + " end", "completion": "yes"},
        {"prompt": "short", "completion": " ".join(["word"] * 30)},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    data = load_completions(str(path))
    tokenizer = load_tokenizer(tiny_causal_dir)
    kept = encode_rows(tokenizer, data.subset([0]), 12, chat=False)
    full = tokenizer(rows[0]["prompt"])["input_ids"]
    assert len(kept.prompts[0]) + len(kept.completions[0]) == 12
    assert kept.prompts[0] == full[-len(kept.prompts[0]) :]  # the end of the prompt is kept
    with pytest.raises(DatasetError, match=r"long.jsonl: line 2: the completion is 31 tokens"):
        encode_rows(tokenizer, data, 12, chat=False)


def test_chat_rows_use_the_chat_template(tiny_causal_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "chat.jsonl"
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "capital of france"},
        {"role": "assistant", "content": "paris"},
    ]
    path.write_text(json.dumps({"messages": messages}) + "\n")
    tokenizer = load_tokenizer(tiny_causal_dir)
    rows = encode_rows(tokenizer, load_completions(str(path)), 32, chat=False)
    text = tokenizer.decode(rows.prompts[0])
    assert text == "system : be brief user : capital of france assistant :"
    assert tokenizer.decode(rows.completions[0]) == "paris [SEP]"


# -- exact match ----------------------------------------------------------------------------
def test_the_normaliser_strips_folds_and_extracts_the_last_match() -> None:
    import re

    number = re.compile(r"-?\d+(?:\.\d+)?")
    assert normalize("  Paris.  ") == "paris"
    assert normalize('"New   York!"') == "new york"
    assert normalize("3 + 4 = 7, so the answer is 7.", number) == "7"
    assert normalize("the answer is 12 not 7", number) == "7"
    assert normalize("no digits here", number) == ""
    assert normalize("#### 42", number, gold=True) == "42"
    assert normalize("forty-two", number, gold=True) == "forty-two"
    group = re.compile(r"answer: (\w+)")
    assert normalize("answer: Yes, answer: No", group) == "no"
    assert exact_match(["Paris.", "berlin", "x"], ["paris", "Berlin", "y"]) == pytest.approx(2 / 3)
    assert exact_match(["it is 7"], ["7"], r"\d+") == 1.0
    assert exact_match([], []) == 0.0
    with pytest.raises(ValueError, match="2 predictions for 1 answers"):
        exact_match(["a", "b"], ["a"])


def test_evaluate_reports_loss_perplexity_and_exact_match(
    tiny_causal_dir: Path, tmp_path: Path
) -> None:
    import contextlib

    from autopeft.tasks.base import LoadOptions

    data = load_completions(str(write_jsonl(tmp_path / "d.jsonl", 12)))
    model, tokenizer = TASK.load_model(tiny_causal_dir, data, LoadOptions(0, torch.device("cpu")))
    fidelity = FidelitySpec(seq_len=24)
    evaluation = EvaluationSpec(max_new_tokens=2, batch_size=5)
    dataset = DatasetSpec(source="d.jsonl")
    encoded = TASK.encode_eval(tokenizer, data, fidelity, dataset, evaluation, "exact_match")
    metrics = TASK.evaluate(model, encoded, torch.device("cpu"), contextlib.nullcontext)
    assert set(metrics) == {"eval_loss", "perplexity", "exact_match"}
    assert metrics["eval_loss"] > 0 and math.isclose(
        metrics["perplexity"], math.exp(metrics["eval_loss"]), rel_tol=1e-9
    )
    assert metrics["exact_match"] == 0.0  # a random model answers nothing right
    no_generation = TASK.encode_eval(tokenizer, data, fidelity, dataset, evaluation, "eval_loss")
    assert "exact_match" not in TASK.evaluate(
        model, no_generation, torch.device("cpu"), contextlib.nullcontext
    )


# -- studies ----------------------------------------------------------------------------------
def test_a_causal_lm_study_runs_with_every_metric_recorded(
    tiny_causal_dir: Path, tmp_path: Path
) -> None:
    outcome = run_study(causal_study(tmp_path, tiny_causal_dir))
    assert [r.state for r in outcome.records] == ["COMPLETE"] * 3
    for r in outcome.records:
        assert set(r.values) == {"exact_match", "trainable_params", "peak_memory_mb"}
        assert 0.0 <= r.values["exact_match"] <= 1.0
        assert r.metrics["eval_loss"] > 0 and r.metrics["head_params"] == 0
        assert r.peft_config["task_type"] == "CAUSAL_LM"


def test_eval_loss_is_minimised_when_it_is_the_metric(
    tiny_causal_dir: Path, tmp_path: Path
) -> None:
    outcome = run_study(causal_study(tmp_path, tiny_causal_dir, metric="eval_loss", n_trials=2))
    view = load_view("tiny", outcome.url)
    assert (view.objectives[0].name, view.objectives[0].direction) == ("eval_loss", "minimize")
    assert all("exact_match" not in r.metrics for r in outcome.records)  # no generation


@pytest.mark.slow
def test_a_killed_causal_lm_driver_resumes(tiny_causal_dir: Path, tmp_path: Path) -> None:
    spec = causal_study(tmp_path, tiny_causal_dir, n_trials=4, steps=60)
    before, running = kill_driver_mid_trial(
        ["run", str(spec), "-q"], tmp_path / "studies.db", timeout=180
    )
    done = run_study(spec)
    complete = [r for r in done.records if r.state == "COMPLETE"]
    assert len(complete) == 4
    assert all(done.records[n].values == v for n, v in before.items())
    interrupted = done.records[running[0].number]
    assert interrupted.state == "FAIL" and interrupted.interrupted


@pytest.mark.ray
@pytest.mark.slow
def test_a_causal_lm_study_on_ray(tiny_causal_dir: Path, tmp_path: Path) -> None:
    spec = causal_study(
        tmp_path, tiny_causal_dir, n_trials=4, executor="{name: ray, workers: 2, cpus_per_trial: 1}"
    )
    outcome = run_study(spec)
    complete = [r for r in outcome.records if r.state == "COMPLETE"]
    assert len(complete) == 4
    workers = {r.metrics["worker"] for r in complete}
    assert len(workers) == 2 and all("exact_match" in r.values for r in complete)


# -- bad input: one `error:` line, exit 2, nothing written --------------------------------------
def _refused(spec: Path, *fragments: str) -> None:
    from typer.testing import CliRunner

    from autopeft.cli import app

    assert_user_error(CliRunner().invoke(app, ["run", str(spec), "-q"]), *fragments)
    assert not (spec.parent / "studies.db").exists()  # nothing was written


def test_bad_causal_lm_input_is_refused_before_anything_is_written(
    tiny_causal_dir: Path, tmp_path: Path
) -> None:
    spec = causal_study(tmp_path, tiny_causal_dir)
    good = spec.read_text()

    (tmp_path / "qa.jsonl").write_text(json.dumps({"prompt": "2+2?", "answer": "4"}) + "\n")
    spec.write_text(good.replace("source: data.jsonl", "source: qa.jsonl"))
    _refused(spec, "qa.jsonl: line 1", "no 'completion' column", "answer")

    (tmp_path / "fake.gguf").write_text("not a model")
    spec.write_text(good.replace(f"model: {tiny_causal_dir}", "model: fake.gguf"))
    _refused(spec, "fake.gguf is not a GGUF file", "b'not '")

    if not torch.cuda.is_available():
        spec.write_text(
            good.replace(f"model: {tiny_causal_dir}", f"model: {{path: {tiny_causal_dir}, "
                         "quantization: nf4}")
        )  # fmt: skip
        _refused(spec, "model.quantization 'nf4'", "needs a CUDA device")
        spec.write_text(good.replace(f"model: {tiny_causal_dir}", f"model: {{path: "
                                     f"{tiny_causal_dir}, precision: fp16}}"))  # fmt: skip
        _refused(spec, "precision 'fp16' needs a CUDA device")

    spec.write_text(good.replace("max_new_tokens: 3", "max_new_tokens: 0"))
    _refused(spec, "study.yaml:", "evaluation.max_new_tokens", "(got 0)")

    long = {"prompt": "q", "completion": " ".join(["word"] * 40)}
    rows = [json.dumps(long)] * 12
    (tmp_path / "long.jsonl").write_text("\n".join(rows) + "\n")
    spec.write_text(good.replace("source: data.jsonl", "source: long.jsonl"))
    _refused(spec, "long.jsonl: line", "the completion is 41 tokens", "seq_len=24")

    spec.write_text(good.replace("metric: exact_match", "metric: accuracy"))
    _refused(spec, "unknown metric 'accuracy' for task 'causal_lm'", "exact_match")


@pytest.mark.slow
def test_gradient_checkpointing_and_bf16_change_how_trials_run_not_what_they_learn(
    tiny_causal_dir: Path, tmp_path: Path
) -> None:
    runs = {}
    for label, space_line, model in (
        ("plain", "", f"{tiny_causal_dir}"),
        ("checkpointed", "  gradient_checkpointing: true\n", f"{tiny_causal_dir}"),
        ("bf16", "", f"{{path: {tiny_causal_dir}, precision: bf16}}"),
    ):
        directory = tmp_path / label
        directory.mkdir()
        spec = causal_study(directory, tiny_causal_dir, n_trials=2, metric="eval_loss")
        spec.write_text(spec.read_text().replace(f"model: {tiny_causal_dir}", f"model: {model}"))
        space = directory / "space.yaml"
        space.write_text(space.read_text() + space_line)
        runs[label] = run_study(spec).records
    for plain, checkpointed, bf16 in zip(*runs.values(), strict=True):
        assert plain.params == checkpointed.params == bf16.params  # same seeded proposals
        assert checkpointed.metrics["gradient_checkpointing"] is True
        assert plain.metrics["gradient_checkpointing"] is False
        assert checkpointed.metrics["final_train_loss"] == pytest.approx(
            plain.metrics["final_train_loss"], rel=1e-5
        )
        plain_loss = plain.values["eval_loss"]
        assert checkpointed.values["eval_loss"] == pytest.approx(plain_loss, rel=1e-5)
        assert bf16.metrics["precision"] == "bf16"
        assert bf16.values["eval_loss"] == pytest.approx(plain.values["eval_loss"], rel=0.05)
        assert bf16.values["eval_loss"] != plain.values["eval_loss"]  # it really ran in bf16
