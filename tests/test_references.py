"""References (``references:`` in a spec): built on any model, trained once beside the search,
outside ``n_trials``, seen by the sampler when in the space, shown with the front."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autopeft.cli import app
from tests.conftest import SPACE, assert_user_error, kill_driver_mid_trial, tiny_bert_layout

runner = CliRunner()

# in the tiny space (rank 2 on q,v of every layer, a learning rate in its range) / not in it
IN_SPACE = "{name: mine, method: lora, target_modules: qv, rank: 2, learning_rate: 5.0e-3}"
REFERENCES = f"references:\n  - ia3\n  - {IN_SPACE}\n"


def _with_references(study_dir: Path, text: str, n_trials: int = 2) -> Path:
    path = study_dir / "study.yaml"
    spec = path.read_text().replace("n_trials: 3", f"n_trials: {n_trials}")
    path.write_text(spec + text)
    return path


def _resolve(entries: list, layout=None):
    import yaml

    from autopeft.methods.binding import bind_space
    from autopeft.search.references import resolve_references
    from autopeft.space.schema import SearchSpace

    layout = layout or tiny_bert_layout()
    space = SearchSpace.model_validate(yaml.safe_load(SPACE.format(budget=4000)))
    bound = bind_space(space, layout)
    return resolve_references(
        entries,
        spec_path=Path(__file__),
        layout=layout,
        study=bound,
        task_type="SEQ_CLS",
        learning_rate=2e-3,
    )


@pytest.mark.slow
def test_the_catalog_builds_on_bert_and_on_llama_with_the_same_names() -> None:
    """Module roles, not module names: lora-r8-qv lands on BERT's query/value and on Llama's
    q_proj/v_proj; every catalog entry builds on both."""
    import transformers

    from autopeft.models.layout import layout_on_meta
    from autopeft.search.reference_catalog import CATALOG

    llama = layout_on_meta(
        transformers.LlamaConfig(
            vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64, num_key_value_heads=1, pad_token_id=0,
        )
    )  # fmt: skip
    for layout, q, v in ((tiny_bert_layout(), "query", "value"), (llama, "q_proj", "v_proj")):
        refs = {r.name: r for r in _resolve(list(CATALOG), layout)}
        assert set(refs) == set(CATALOG)
        qv = refs["lora-r8-qv"].compiled
        assert qv.method == "lora" and set(qv.module_sizes.values()) == {8}
        assert {name.rsplit(".", 1)[-1] for name in qv.module_sizes} == {q, v}
        assert qv.training["learning_rate"] == 2e-3  # the spec's fidelity.learning_rate
        assert all(CATALOG[n]["source"] for n in refs)


def test_a_reference_the_space_can_express_gets_its_point() -> None:
    refs = {r.name: r for r in _resolve(["ia3", json_entry(IN_SPACE), "lora-r16-all-linear"])}
    point = refs["mine"].point
    assert point is not None and point["target_modules"] == "qv"
    assert point["learning_rate"] == 5e-3 and point["rank.0.q"] == point["rank.1.v"] == 2
    assert refs["ia3"].point is None  # another method
    big = refs["lora-r16-all-linear"]  # rank 16 is no choice here, and it is over budget
    assert big.point is None and big.over_budget and big.compiled.trainable_params > 4000


def json_entry(text: str) -> dict:
    import yaml

    return yaml.safe_load(text)


@pytest.mark.parametrize(
    ("entry", "fragments"),
    [
        ("lora-r9-qv", ["references.0", "unknown reference", "lora-r8-qv", "'lora-r9-qv'"]),
        (
            "{name: g, method: lora, target_modules: [gate], rank: 2}",
            ["references.0", "cannot be built on this model", "gate"],
        ),
        (
            "{name: wide, method: lora, target_modules: qv, rank: 64}",
            ["references.0", "cannot be built on this model", "rank 64"],
        ),
    ],
)
def test_a_bad_reference_is_one_error_line_and_nothing_is_written(
    study_dir: Path, entry: str, fragments: list[str]
) -> None:
    spec = _with_references(study_dir, f"references:\n  - ia3\n  - {entry}\n".replace(
        "references.0", "references.1"))  # fmt: skip
    fragments = [f.replace("references.0", "references.1") for f in fragments]
    for command in (["validate", str(spec)], ["run", str(spec), "-q"]):
        result = runner.invoke(app, command)
        assert_user_error(result, "study.yaml", *fragments)
    assert not (study_dir / "studies.db").exists()


@pytest.mark.slow
def test_references_train_first_outside_n_trials_and_the_sampler_sees_the_in_space_one(
    study_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from autopeft.run.driver import StudyRunner, run_study

    seen: list[list] = []
    propose = StudyRunner._propose

    def spy(self: StudyRunner, n: int) -> list:
        seen.append(self.mirror.history(self.sampler.multi_fidelity))
        return propose(self, n)

    monkeypatch.setattr(StudyRunner, "_propose", spy)
    spec = _with_references(study_dir, REFERENCES, n_trials=2)
    checked = runner.invoke(app, ["validate", str(spec)])
    assert checked.exit_code == 0, checked.output
    assert "reference ia3: ia3 256 params (a comparison point)" in checked.stdout
    assert "reference mine: lora 512 params (in the search space)" in checked.stdout
    records = run_study(spec).records
    assert [r.reference for r in records] == ["ia3", "mine", None, None]
    assert all(r.state == "COMPLETE" for r in records)
    assert sum(r.counts_for_budget for r in records) == 2  # n_trials counts searched trials
    mine = records[1]
    assert mine.reference_in_space and mine.params["target_modules"] == "qv"
    first = seen[0]  # what the sampler had before its first proposal
    assert [o.point for o in first] == [mine.params]  # the in-space reference, not ia3
    assert first[0].values["trainable_params"] == mine.values["trainable_params"]

    again = run_study(spec, trials=3).records  # resumed: one more searched trial, no reference
    assert [r.reference for r in again] == ["ia3", "mine", None, None, None]


@pytest.mark.slow
def test_front_json_and_show_carry_the_references(study_dir: Path) -> None:
    from autopeft.run.driver import run_study

    spec = _with_references(study_dir, REFERENCES + "  - lora-r16-all-linear\n", n_trials=2)
    run_study(spec)
    url = f"sqlite:///{study_dir / 'studies.db'}"
    rows = json.loads(runner.invoke(app, ["front", "tiny", "--storage", url, "-f", "json"]).stdout)
    named = {r["reference"]: r for r in rows if r["reference"]}
    assert set(named) == {"ia3", "mine", "lora-r16-all-linear"}
    assert named["lora-r16-all-linear"]["over_budget"] and not named["ia3"]["over_budget"]
    assert any(r["reference"] is None for r in rows)
    shown = runner.invoke(app, ["show", "tiny", "--storage", url])
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.stdout.split())
    assert "references against the front" in text
    for name in ("ia3 (trial 0)", "mine (trial 1)", "lora-r16-all-linear (trial 2)"):
        assert name in text
    assert "[over budget]" in text


@pytest.mark.slow
def test_a_killed_driver_resumes_without_training_a_reference_twice(study_dir: Path) -> None:
    """SIGKILL while the second reference trains: after the resume every reference has exactly
    one finished run, the first one's result is kept, the searched budget is intact."""
    spec = _with_references(study_dir, REFERENCES + "  - lora-r8-qv\n", n_trials=2)
    # trials of 4 steps can start and finish between two polls of the kill condition
    spec.write_text(spec.read_text().replace("max_steps: 4,", "max_steps: 120,"))
    db = study_dir / "studies.db"
    before, running = kill_driver_mid_trial(
        ["run", str(spec), "-q"], db, timeout=180, ready=_reference_running(3)
    )
    assert all(r.reference for r in running)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [sys.executable, "-m", "autopeft.cli", "run", str(spec), "-q"],
        env=env,
        check=True,
        capture_output=True,
    )
    from autopeft.results.views import load_view

    done = load_view("tiny", f"sqlite:///{db}").records
    finished = [r for r in done if r.reference and not r.interrupted]
    assert sorted(r.reference for r in finished) == ["ia3", "lora-r8-qv", "mine"]
    assert all(r.state == "COMPLETE" for r in finished)
    by_number = {r.number: r for r in done}
    assert all(by_number[n].values == v for n, v in before.items())  # nothing retrained
    assert all(by_number[r.number].interrupted for r in running)
    assert sum(r.counts_for_budget for r in done) == 2


def _reference_running(references: int) -> Callable[[Path], bool]:
    """A kill condition: a trial finished and one of the first ``references`` trials (the
    references, which run first) is running; on a quick machine the references can all be done
    before the default condition (any trial running) is seen."""

    def ready(db: Path) -> bool:
        import sqlite3

        if not db.exists():
            return False
        try:
            with sqlite3.connect(db) as con:
                rows = con.execute("select number, state from trials").fetchall()
        except sqlite3.OperationalError:
            return False
        done = any(state == "COMPLETE" for _, state in rows)
        return done and any(state == "RUNNING" and n < references for n, state in rows)

    return ready


@pytest.mark.slow
def test_confirm_takes_the_references_with_the_front_by_default(study_dir: Path) -> None:
    from autopeft.results.confirmed import confirmed_rows
    from autopeft.results.views import load_view, open_store
    from autopeft.run.confirm import confirm_study
    from autopeft.run.driver import run_study
    from autopeft.storage.confirmations import latest

    spec = _with_references(study_dir, "references: [ia3]\n", n_trials=1)
    url = run_study(spec).url
    outcome = confirm_study("tiny", url, seeds=2, base_dir=study_dir)
    view = load_view("tiny", url)
    wanted = {r.number for r in view.front()} | {0}  # trial 0 is the reference
    assert {c.trial for c in outcome.confirmed} == wanted
    rows = confirmed_rows(view.records, latest(open_store(url), "tiny"), view.objectives)
    ref = next(r for r in rows if r["trial"] == 0)
    assert ref["reference"] == "ia3" and not ref["on_front"]  # never its own win
    assert ref["objectives"]["accuracy"]["std"] >= 0 and ref["seeds"] == 2
    shown = runner.invoke(app, ["front", "tiny", "--storage", url, "--confirmed"])
    assert shown.exit_code == 0 and "ia3" in shown.stdout
