"""`autopeft confirm`: chosen trials re-trained with several seeds, scored on the test split,
stored as mean and std per objective, read back by `front --confirmed` and `export`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autopeft.cli import app
from autopeft.run.driver import run_study
from autopeft.storage.confirmations import latest
from autopeft.storage.store import Store

OBJECTIVES = ("accuracy", "trainable_params", "peak_memory_mb")


def _cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.slow
def test_confirm_top_two_with_two_seeds(study_dir: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{study_dir / 'studies.db'}"
    outcome = run_study(study_dir / "study.yaml", trials=3)
    where = ["--storage", url, "--data-dir", str(study_dir)]
    code, out, err = _cli("confirm", "tiny", "--top", "2", "--seeds", "2", *where)
    assert code == 0, err
    assert "confirmed 2 trial(s)" in out

    rows = latest(Store(url, create=False), "tiny")
    best = sorted(outcome.records, key=lambda r: (-r.values["accuracy"], r.number))[:2]
    assert sorted(rows) == sorted(r.number for r in best)
    for number, c in rows.items():
        assert (c.steps, c.seeds, c.finished, c.split) == (4, 2, 2, "test")
        assert [r["seed"] for r in c.runs] == [0, 1]
        assert set(c.mean) == set(c.std) == set(OBJECTIVES)
        search = next(r for r in outcome.records if r.number == number)
        assert c.mean["trainable_params"] == search.values["trainable_params"]
        assert c.std["trainable_params"] == 0.0 and 0.0 <= c.mean["accuracy"] <= 1.0

    code, out, err = _cli("front", "tiny", "--confirmed", "--format", "json", "--storage", url)
    assert code == 0, err
    front = json.loads(out)
    assert sorted(r["trial"] for r in front) == sorted(rows)
    for row in front:
        assert set(row["objectives"]) == set(OBJECTIVES)
        for stats in row["objectives"].values():
            assert {"mean", "std", "search"} <= set(stats)
    assert any(r["on_front"] for r in front)

    code, out, err = _cli("front", "tiny", "--confirmed", "--format", "csv", "--storage", url)
    header = "trial,reference,steps,seeds,finished,split"
    assert code == 0 and out.splitlines()[0].startswith(header)
    png = tmp_path / "confirmed.png"
    code, _, err = _cli(
        "front", "tiny", "--confirmed", "--format", "plot", "--plot", str(png), "--storage", url
    )
    assert code == 0 and png.stat().st_size > 0, err

    code, out, err = _cli(
        "export", "tiny", "--confirmed", "--pick", "max-accuracy", "-o", str(tmp_path / "x"),
        "--storage", url,
    )  # fmt: skip
    assert code == 0, err
    picked = int(out.split()[2])
    assert picked in rows
    assert rows[picked].mean["accuracy"] == max(c.mean["accuracy"] for c in rows.values())
    assert (tmp_path / "x" / "adapter_config.json").is_file()

    code, out, _ = _cli("show", "tiny", "--storage", url)
    assert code == 0 and "confirmed on the test split: 2 trials" in out

    # the same request again runs nothing; an unknown trial is one error line
    code, out, _ = _cli("confirm", "tiny", "--top", "2", "--seeds", "2", *where)
    assert code == 0 and "confirmed 0 trial(s); 2 already confirmed" in out
    code, _, err = _cli("confirm", "tiny", "--trial", "99", *where)
    assert code == 2 and err.startswith("error: study 'tiny' has no complete trial 99")
    assert len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_confirm_rejects_bad_input_with_one_error_line(study_dir: Path) -> None:
    from autopeft.run.prepare import prepare_study, register_study

    prepared = prepare_study(study_dir / "study.yaml")
    register_study(Store(prepared.url), prepared)  # a study without any trial
    url = ["--storage", prepared.url]
    cases = [
        (["--seeds", "0"], "error: --seeds must be at least 1, but got 0"),
        (["--steps", "0"], "error: --steps must be at least 1, but got 0"),
        ([], "error: study 'tiny' has no complete trials to confirm"),
        (["--front", "--top", "2"], "error: give one of --front, --top K or --trial N"),
    ]
    for extra, message in cases:
        code, _, err = _cli("confirm", "tiny", *extra, *url)
        assert code == 2 and err.startswith(message), err
        assert len(err.strip().splitlines()) == 1
    code, _, err = _cli("front", "tiny", "--confirmed", *url)
    assert code == 2 and "has no confirmed trials" in err
