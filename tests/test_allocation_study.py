"""Allocation inside studies: profile storage, the ``allocation:`` space block, AdaLoRA."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autopeft.allocation.profiles import Profile
from autopeft.exceptions import SearchSpaceError
from autopeft.run.driver import run_study
from autopeft.storage.profiles import ProfileKey, get_or_compute
from autopeft.storage.store import Store
from tests.conftest import write_study, write_tiny_csv

ALLOC_SPACE = """\
version: 1
name: tiny_alloc
method: lora
max_trainable_params: 4000
parameters:
  target_modules: {type: categorical, choices: [qv, all_linear]}
  learning_rate: 5.0e-3
allocation:
  strategy: [uniform, sensitivity, importance]
  budget: [600, 4000]
  temperature: [0.0, 3.0]
  max_rank: 8
  calibration_batches: 2
"""

KEY = ProfileKey("m", "d", "train", 2, 0, 8, 16)


def _profile(kind: str) -> Profile:
    return Profile(kind, {(0, "q"): 0.25, (0, "v"): 0.75}, {0: 1.0}, 0.5)


def test_profile_is_computed_once_then_read_from_the_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    calls: list[list[str]] = []

    def compute(kinds: list[str]) -> dict[str, Profile]:
        calls.append(kinds)
        return {k: _profile(k) for k in kinds}

    first = get_or_compute(Store(url), KEY, ["sensitivity", "importance"], compute)
    again = get_or_compute(Store(url), KEY, ["sensitivity", "importance"], compute)
    assert calls == [["sensitivity", "importance"]]
    assert {k: p for k, (_, p) in again.items()} == {k: p for k, (_, p) in first.items()}
    other_seed = ProfileKey(**{**KEY.__dict__, "seed": 1})
    get_or_compute(Store(url), other_seed, ["importance"], compute)
    assert calls[-1] == ["importance"]


def test_schema_1_database_is_migrated(tmp_path: Path) -> None:
    import sqlite3

    from autopeft.storage.tables import SCHEMA_VERSION

    url = f"sqlite:///{tmp_path / 'old.db'}"
    Store(url)
    with sqlite3.connect(tmp_path / "old.db") as db:
        db.execute("UPDATE autopeft_schema SET version = 1")
        db.execute("DROP TABLE autopeft_profiles")
        db.execute("DROP INDEX ix_autopeft_trials_marker")  # schema 9's, on the column below
        db.execute("ALTER TABLE autopeft_trials DROP COLUMN hypervolume")
    store = Store(url)
    get_or_compute(store, KEY, ["importance"], lambda ks: {k: _profile(k) for k in ks})
    with sqlite3.connect(tmp_path / "old.db") as db:
        assert db.execute("SELECT version FROM autopeft_schema").fetchall() == [(SCHEMA_VERSION,)]


def _alloc_dir(tmp_path: Path, model: Path, space: str = ALLOC_SPACE, **kw: object) -> Path:
    write_tiny_csv(tmp_path / "data.csv")
    (tmp_path / "space.yaml").write_text(space)
    return write_study(tmp_path, model=str(model), **kw)  # type: ignore[arg-type]


@pytest.mark.slow
def test_allocation_study_runs_end_to_end_and_exports_plain_lora(
    tmp_path: Path, tiny_bert_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:

    from autopeft.results.export import export_config
    from autopeft.run import profiling as alloc_study
    from autopeft.storage.profiles import study_profiles

    spec = _alloc_dir(tmp_path, tiny_bert_dir, n_trials=4)
    outcome = run_study(spec)
    assert [r.state for r in outcome.records] == ["COMPLETE"] * 4
    strategies = {r.params["allocation.strategy"] for r in outcome.records}
    assert len(strategies) >= 2
    for r in outcome.records:
        assert r.values["trainable_params"] <= r.params["allocation.budget"] <= 4000
        assert r.peft_config["peft_type"] == "LORA"
    store = Store(outcome.url)
    assert set(study_profiles(store, "tiny")) == {"sensitivity", "importance"}

    # a second study with the same model, data, split, batches and seed reads the profiles
    def refuse(*args: object) -> None:
        raise AssertionError("profile measured twice")

    monkeypatch.setattr(alloc_study, "measure_profiles", refuse)
    second = run_study(spec, name="tiny2", trials=1)
    assert second.records[0].state == "COMPLETE"
    assert set(study_profiles(store, "tiny2")) == {"sensitivity", "importance"}

    record = max(outcome.records, key=lambda r: len(r.module_sizes))
    path, _ = export_config(outcome.url, "tiny", tmp_path / "export", trial=record.number)
    built = _reloaded_lora_ranks(path.parent, tiny_bert_dir)
    assert built == record.module_sizes


def test_allocation_space_rules(tmp_path: Path, tiny_bert_dir: Path) -> None:
    from autopeft.run.prepare import prepare_study

    with_rank = ALLOC_SPACE.replace("  learning_rate:", "  rank: 4\n  learning_rate:")
    with pytest.raises(SearchSpaceError, match=r"space.yaml:\d+: parameters.rank: ranks come from"):
        prepare_study(_alloc_dir(tmp_path, tiny_bert_dir, space=with_rank))
    too_big = ALLOC_SPACE.replace("budget: [600, 4000]", "budget: [600, 5000]")
    with pytest.raises(SearchSpaceError, match=r"allocation.budget: high must be <= max_trainable"):
        prepare_study(_alloc_dir(tmp_path, tiny_bert_dir, space=too_big))
    bad_unit = ALLOC_SPACE.replace("max_rank: 8", "max_rank: 7\n  rank_unit: 2")
    with pytest.raises(SearchSpaceError, match=r"max_rank=7 must be a multiple of rank_unit=2"):
        prepare_study(_alloc_dir(tmp_path, tiny_bert_dir, space=bad_unit))
    not_lora = ADALORA_SPACE + "allocation: {strategy: uniform, budget: 1000}\n"
    with pytest.raises(SearchSpaceError, match=r"allocation: applies to method 'lora' only"):
        prepare_study(_alloc_dir(tmp_path, tiny_bert_dir, space=not_lora))
    p = prepare_study(_alloc_dir(tmp_path, tiny_bert_dir))
    names = [d.name for d in p.bound.dimensions]
    assert names == [
        "target_modules",
        "allocation.strategy",
        "allocation.budget",
        "allocation.temperature",
    ]
    point = {
        "target_modules": "all_linear",
        "allocation.strategy": "uniform",
        "allocation.budget": 3 * 896,
        "allocation.temperature": 2.0,
    }
    compiled = p.bound.compile(point)
    assert set(compiled.module_sizes.values()) == {3} and compiled.trainable_params == 2688
    assert p.bound.canonical(point)["allocation.temperature"] == 0.0
    with pytest.raises(RuntimeError, match="'importance' profile is not loaded"):
        p.bound.compile({**point, "allocation.strategy": "importance"})
    assert not (tmp_path / "studies.db").exists()  # validation writes nothing


ADALORA_SPACE = """\
version: 1
name: tiny_adalora
method: adalora
max_trainable_params: 20000
parameters:
  target_modules: all_linear
  init_r: 4
  target_r: 2
  tinit_ratio: 0.25
  tfinal_ratio: 0.25
  learning_rate: 5.0e-3
"""


def test_adalora_trial_runs_and_exports_its_learned_ranks_as_lora(
    tmp_path: Path, tiny_bert_dir: Path
) -> None:

    from autopeft.results.export import export_config

    spec = _alloc_dir(tmp_path, tiny_bert_dir, space=ADALORA_SPACE, n_trials=1)
    spec.write_text(spec.read_text().replace("max_steps: 4", "max_steps: 8"))
    outcome = run_study(spec)
    record = outcome.records[0]
    assert record.state == "COMPLETE", record.fail_reason
    # init_r x (d_in + d_out + 1) on 12 matrices: 8 of 32->32, 4 of 32<->64
    assert record.values["trainable_params"] == 4 * (8 * 65 + 4 * 97)
    learned = record.metrics["learned_peft_config"]
    pattern = learned.get("rank_pattern") or {}
    ranks = {n: pattern.get(n, learned["r"]) for n in learned["target_modules"]}
    assert sum(ranks.values()) == 2 * 12  # target_r x matrices: the AdaLoRA budget
    assert all(1 <= r <= 4 for r in ranks.values())
    path, _ = export_config(outcome.url, "tiny", tmp_path / "export", trial=0)
    saved = json.loads(path.read_text())
    assert saved["peft_type"] == "LORA"
    built = _reloaded_lora_ranks(path.parent, tiny_bert_dir)
    assert built == ranks


@pytest.mark.slow
def test_profile_cli_prints_the_table_writes_a_heatmap_and_reuses_the_store(
    tmp_path: Path, tiny_bert_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from autopeft.cli import app
    from autopeft.run import profiling as alloc_study

    spec = _alloc_dir(tmp_path, tiny_bert_dir, n_trials=1)
    png = tmp_path / "heat.png"
    result = CliRunner().invoke(app, ["profile", str(spec), "--out", str(png)])
    assert result.exit_code == 0, result.output
    assert "sensitivity" in result.output and "importance" in result.output
    assert "layer score" in result.output and png.read_bytes()[:4] == b"\x89PNG"

    def refuse(*args: object) -> None:
        raise AssertionError("profile measured twice")

    monkeypatch.setattr(alloc_study, "measure_profiles", refuse)
    run_study(spec)  # reads the profiles the CLI stored
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    png2 = tmp_path / "heat2.png"
    args = ["profile", "tiny", "--storage", url, "--kind", "importance", "-o", str(png2)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "importance" in result.output and "sensitivity" not in result.output
    assert png2.is_file()
    missing = CliRunner().invoke(app, ["profile", "nope", "--storage", url])
    assert missing.exit_code == 2 and "no study named 'nope'" in missing.output


@pytest.mark.parametrize("sampler", ["sobol", "tpe", "nsga2"])
def test_samplers_propose_feasible_allocation_points(
    tmp_path: Path, tiny_bert_dir: Path, sampler: str
) -> None:
    from autopeft.core.objectives import Objective
    from autopeft.run.prepare import prepare_study
    from autopeft.search.samplers import Observation, make_sampler

    p = prepare_study(_alloc_dir(tmp_path, tiny_bert_dir, sampler=sampler))
    cells = [(layer, m) for layer in range(2) for m in p.bound.layout.modules]
    for kind in ("sensitivity", "importance"):
        p.bound.profiles[kind] = Profile(kind, {c: i + 1.0 for i, c in enumerate(cells)}, {}, 0.0)
    objectives = [Objective("accuracy", "maximize"), Objective("trainable_params", "minimize")]
    s = make_sampler(sampler, p.bound, objectives, 0, {})
    history: list[Observation] = []
    for i in range(6):
        point = s.propose(history, 1)[0]
        p.bound.check_point(point)
        assert p.bound.is_feasible(point)
        params = p.bound.count_params(point)
        history.append(
            Observation(point, "COMPLETE", {"accuracy": i / 10, "trainable_params": params})
        )


def test_adalora_strategy_uses_the_learned_ranks_as_a_profile(
    tmp_path: Path, tiny_bert_dir: Path
) -> None:
    space = ALLOC_SPACE.replace("[uniform, sensitivity, importance]", "adalora")
    outcome = run_study(_alloc_dir(tmp_path, tiny_bert_dir, space=space, n_trials=1))
    assert outcome.records[0].state == "COMPLETE", outcome.records[0].fail_reason
    from autopeft.storage.profiles import study_profiles

    ((_key, profile),) = study_profiles(Store(outcome.url), "tiny").values()
    ranks = profile.extra["ranks"]
    assert sum(ranks.values()) == 4 * 12  # init_r 8 pruned to target_r 4 on 12 matrices
    assert profile.scores == {
        (int(k.split(".")[0]), k.split(".")[1]): r / 48 for k, r in ranks.items()
    }


def _reloaded_lora_ranks(export_dir: Path, model_dir: Path) -> dict[str, int]:
    """Module name -> LoRA rank of the export in ``export_dir`` reloaded with plain peft."""
    from peft import LoraConfig, PeftConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    config = PeftConfig.from_pretrained(str(export_dir))
    assert isinstance(config, LoraConfig)
    base = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)
    model = get_peft_model(base, config)
    return {
        n.split("base_model.model.", 1)[-1]: m.lora_A["default"].weight.shape[0]
        for n, m in model.named_modules()
        if hasattr(m, "lora_A") and "default" in m.lora_A
    }
