"""``autopeft inspect MODEL`` on tiny saved models, and the one-line refusal of a module preset
that a model lacks (fused or absent) when a study is run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autopeft.cli import app
from autopeft.testing.tiny_models import ARCHITECTURES
from tests.conftest import TOKENIZER_FILES, write_study, write_tiny_csv

pytestmark = pytest.mark.filterwarnings("ignore:.*_token_id:UserWarning")


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory):
    """Tiny Phi-3 and GPT-2 causal LMs saved as model directories."""

    def save(arch: str) -> Path:
        path = tmp_path_factory.mktemp(arch)
        ARCHITECTURES[arch].build().save_pretrained(path)
        return path

    return {arch: save(arch) for arch in ("phi3", "gpt2")}


def inspect(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["inspect", *args])
    return result.exit_code, result.output


def test_inspect_a_fused_decoder(saved: dict[str, Path]) -> None:
    code, out = inspect(str(saved["phi3"]))
    assert code == 0, out
    assert "architecture: phi3 (leaf names: phi3), task causal_lm" in out
    assert "layers: 2 in model.layers, hidden size 32" in out
    # role, leaf, shape, parameters in one layer and in all layers (no biases in Phi-3)
    assert "qkv      self_attn.qkv_proj  32 -> 64  2,048 params (4,096 in all layers)" in out
    assert "gate_up  mlp.gate_up_proj    32 -> 128  4,096 params (8,192 in all layers)" in out
    assert "qv               no: q, v are fused into 'qkv'" in out
    assert "attn             o, qkv" in out
    assert "lora             applies" in out
    assert "sappa            no: sappa needs the separate module types ['k', 'up']" in out


def test_inspect_conv1d_leaves_and_the_methods_that_refuse_them(saved: dict[str, Path]) -> None:
    code, out = inspect(str(saved["gpt2"]))
    assert code == 0, out
    # Conv1D with bias: 32 * 96 + 96
    assert "qkv      attn.c_attn  32 -> 96 Conv1D  3,168 params (6,336 in all layers)" in out
    assert "loha             no: loha cannot adapt this gpt2 model's Conv1D layers" in out
    assert "ia3              applies" in out


def test_inspect_an_encoder_as_a_classifier(tiny_bert_dir: Path) -> None:
    code, out = inspect(str(tiny_bert_dir))
    assert code == 0, out
    assert "architecture: bert (leaf names: bert), task seq_cls" in out
    assert "down     output.dense            64 -> 32  2,080 params" in out
    assert " no: " not in out  # every preset and method applies to BERT


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no/such-model"], "error: model 'no/such-model' is not in the Hugging Face cache"),
        (["minilm-l6", "--task", "ner"], "error: --task: unknown task 'ner'"),
    ],
)
def test_inspect_bad_input_is_one_error_line(
    args: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a Hub-shaped name is looked up in the cache only
    code, out = inspect(*args)
    assert code == 2
    assert out.startswith(message) and out.count("\n") == 1, out


def _fused_classifier(path: Path) -> Path:
    """A tiny Phi-3 sequence classifier with the MiniLM tokenizer (vocabulary 30,522)."""
    import torch
    import transformers

    from autopeft.models.resolve import resolve_model

    config = ARCHITECTURES["phi3"].config()
    config.vocab_size, config.num_labels = 30522, 2
    torch.manual_seed(0)
    transformers.AutoModelForSequenceClassification.from_config(config).save_pretrained(path)
    for name in TOKENIZER_FILES:
        shutil.copy(resolve_model("minilm-l6") / name, path / name)
    return path


@pytest.mark.parametrize(
    ("model", "target", "message"),
    [
        ("phi3", "qv", "fuses q, k, v into one 'qkv' projection, so q, v cannot be adapted apart"),
        ("bert", "gated", "preset matches no module of this model"),
    ],
)
def test_run_refuses_a_preset_the_model_lacks(
    model: str, target: str, message: str, tmp_path: Path, tiny_bert_dir: Path
) -> None:
    path = tiny_bert_dir if model == "bert" else _fused_classifier(tmp_path / "phi3")
    write_tiny_csv(tmp_path / "data.csv")
    (tmp_path / "space.yaml").write_text(
        "version: 1\nname: s\nmethod: lora\nmax_trainable_params: 100000\n"
        "module_presets: {gated: [gate]}\n"
        f"parameters:\n  target_modules: {target}\n  rank: 2\n"
    )
    spec = write_study(tmp_path, model=str(path))
    result = CliRunner().invoke(app, ["run", str(spec), "--quiet"])
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and result.output.count("\n") == 1
    assert message in result.output and f"(got '{target}')" in result.output
    assert not (tmp_path / "studies.db").exists()  # nothing written
