"""Tests of autopeft.results: Pareto fronts, picks, rows, CSV, rich tables and PNG plots."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import replace
from pathlib import Path

import pytest

from autopeft.core.objectives import Objective
from autopeft.exceptions import StudyError, UserInputError
from autopeft.results import (
    PICKS,
    front_rows,
    pareto_front,
    pareto_indices,
    pick_trial,
    plot_front,
    plot_history,
    render_table,
    write_csv,
)
from autopeft.storage.records import TrialRecord

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ACC = Objective("accuracy", "maximize")
PARAMS = Objective("trainable_params", "minimize")
MEM = Objective("peak_memory_mb", "minimize")
OBJECTIVES = (ACC, PARAMS, MEM)


def _trial(number: int, acc: float, params: float, mem: float | None = None) -> TrialRecord:
    values = {"accuracy": acc, "trainable_params": params}
    if mem is not None:
        values["peak_memory_mb"] = mem
    return TrialRecord(
        number=number,
        state="COMPLETE",
        values=values,
        params={"rank": 8, "targets": ["q", "v"]},
        method="lora",
        placement={0: {"q": 4, "v": 8}, 2: {"v": 2}},
        metrics={"head_params": 1538.0},
    )


def _study() -> list[TrialRecord]:
    """A hand-made study whose 3-D front is trials 0, 1, 2, 3 and 5."""
    return [
        _trial(0, 0.90, 1000, 500),
        _trial(1, 0.90, 800, 600),  # ties trial 0 on accuracy with fewer params
        _trial(2, 0.85, 200, 300),
        _trial(3, 0.70, 100, 310),
        _trial(4, 0.70, 100, 320),  # dominated by trial 3 (more memory)
        _trial(5, 0.60, 100, 200),  # ties trial 3 on params with lower accuracy
        TrialRecord(number=6, state="FAIL", fail_reason="out of memory"),
        TrialRecord(number=7, state="RUNNING"),
        TrialRecord(number=8, state="COMPLETE", values={"accuracy": 0.99}),  # values missing
    ]


def _is_png(path: Path) -> None:
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == PNG_MAGIC
    height, width = imread(path).shape[:2]
    assert height > 100
    assert width > 100


# --- pareto_indices ---------------------------------------------------------------------


def test_pareto_indices_2d_known_front() -> None:
    values = [
        (0.90, 100),
        (0.80, 50),
        (0.85, 120),  # dominated by row 0
        (0.90, 100),  # duplicate of row 0: only the first is kept
        (0.70, 10),
        (0.95, 1000),
    ]
    # Best accuracy first: 5 (0.95), 0 (0.90), 1 (0.80), 4 (0.70).
    assert pareto_indices(values, ["maximize", "minimize"]) == [5, 0, 1, 4]


def test_pareto_indices_3d_known_front() -> None:
    values = [
        (0.9, 100, 500),  # dominated by row 1 (less memory)
        (0.9, 100, 400),
        (0.8, 50, 600),
        (0.7, 80, 300),  # dominated by row 2 in 2-D, kept in 3-D for its memory
        (0.8, 50, 600),  # duplicate of row 2
        (0.6, 90, 350),  # dominated by row 3
    ]
    assert pareto_indices(values, ["maximize", "minimize", "minimize"]) == [1, 2, 3]
    # In 2-D rows 0 and 1 become duplicates (row 0 kept) and row 2 dominates row 3.
    two_d = [row[:2] for row in values]
    assert pareto_indices(two_d, ["maximize", "minimize"]) == [0, 2]


def test_pareto_indices_respects_directions() -> None:
    values = [(0.90, 100), (0.80, 50), (0.70, 10), (0.95, 1000)]
    assert pareto_indices(values, ["maximize", "minimize"]) == [3, 0, 1, 2]
    # Both maximized: row 3 has the most of both and dominates every other row.
    assert pareto_indices(values, ["maximize", "maximize"]) == [3]
    # Both minimized: row 2 has the least of both.
    assert pareto_indices(values, ["minimize", "minimize"]) == [2]


def test_pareto_indices_edge_cases() -> None:
    assert pareto_indices([], ["maximize"]) == []
    assert pareto_indices([(1.0, math.nan), (0.5, 2.0)], ["maximize", "minimize"]) == [1]
    with pytest.raises(UserInputError, match="direction 'up'"):
        pareto_indices([(1.0,)], ["up"])
    with pytest.raises(UserInputError, match="row 0 has 1 values; expected 2"):
        pareto_indices([(1.0,)], ["maximize", "minimize"])


# --- pareto_front and pick_trial --------------------------------------------------------


def test_pareto_front_skips_incomplete_and_orders_best_first() -> None:
    front = pareto_front(_study(), OBJECTIVES)
    # Trials 0 and 1 tie at 0.90; trial 1 comes first for its fewer params.
    assert [r.number for r in front] == [1, 0, 2, 3, 5]


def test_pick_max_accuracy_breaks_ties_by_params() -> None:
    # 0.90 is the best accuracy (trial 8's 0.99 lacks memory); trials 0 and 1 tie on it,
    # trial 1 has fewer params (800 < 1000).
    assert pick_trial(_study(), OBJECTIVES, "max-accuracy").number == 1


def test_pick_min_params_breaks_ties_by_accuracy() -> None:
    # Trials 3, 4 and 5 have 100 params; trial 4 is dominated; trial 3 (0.70) beats 5 (0.60).
    assert pick_trial(_study(), OBJECTIVES, "min-params").number == 3


def test_pick_knee_follows_the_documented_rule() -> None:
    # Front: trials 0, 1, 2, 3, 5. Scores (1 = best on the front):
    #   accuracy over [0.60, 0.90]:  t0 1, t1 1, t2 0.833, t3 0.333, t5 0
    #   params over [100, 1000]:     t0 0, t1 0.222, t2 0.889, t3 1, t5 1
    #   memory over [200, 600]:      t0 0.25, t1 0, t2 0.75, t3 0.725, t5 1
    # Squared distances to (1, 1, 1): t0 1.563, t1 1.605, t2 0.103, t3 0.520, t5 1.0.
    assert pick_trial(_study(), OBJECTIVES, "knee").number == 2


def test_pick_knee_tie_goes_to_lower_number_and_constant_column_scores_one() -> None:
    # Both points are at distance 1 from the ideal point; memory is constant (scores 1).
    records = [_trial(5, 1.0, 100, 64), _trial(3, 0.0, 0, 64)]
    assert pick_trial(records, OBJECTIVES, "knee").number == 3


def test_pick_with_two_objectives() -> None:
    records = [_trial(0, 0.8, 10), _trial(1, 0.9, 1000), _trial(2, 0.7, 500)]
    assert pick_trial(records, (ACC, PARAMS), "max-accuracy").number == 1
    assert pick_trial(records, (ACC, PARAMS), "min-params").number == 0


def test_pick_without_complete_trial_raises_study_error() -> None:
    records = [TrialRecord(number=0, state="FAIL"), TrialRecord(number=1, state="RUNNING")]
    for how in PICKS:
        with pytest.raises(StudyError, match="none of the 2 trials is complete"):
            pick_trial(records, OBJECTIVES, how)


def test_pick_unknown_raises_user_input_error() -> None:
    with pytest.raises(
        UserInputError, match=r"unknown pick 'best'.*max-accuracy, min-params, knee"
    ):
        pick_trial(_study(), OBJECTIVES, "best")


def test_pick_min_params_needs_params_objective() -> None:
    with pytest.raises(UserInputError, match="'min-params' needs a 'trainable_params'"):
        pick_trial(_study(), (ACC, MEM), "min-params")


# --- rows, CSV and table ----------------------------------------------------------------


def test_front_rows_keys_and_values() -> None:
    rows = front_rows(pareto_front(_study(), OBJECTIVES), OBJECTIVES)
    assert list(rows[0]) == [
        "trial",
        "reference",
        "accuracy",
        "trainable_params",
        "peak_memory_mb",
        "method",
        "head_params",
        "device",
        "placement",
        "param.rank",
        "param.targets",
    ]
    assert rows[0]["trial"] == 1
    assert rows[0]["reference"] is None  # a searched trial
    assert rows[0]["head_params"] == 1538.0
    assert rows[0]["placement"] == "L0:q4,v8 L2:v2"
    assert front_rows([TrialRecord(number=9, state="FAIL")], OBJECTIVES)[0]["accuracy"] is None


def test_write_csv_is_parseable_with_union_header() -> None:
    rows = [*front_rows(_study()[:2], OBJECTIVES), {"trial": 9, "extra": "x"}]
    stream = io.StringIO()
    write_csv(rows, stream)
    stream.seek(0)
    reader = csv.DictReader(stream)
    parsed = list(reader)
    assert reader.fieldnames is not None
    assert reader.fieldnames[:3] == ["trial", "reference", "accuracy"]
    assert reader.fieldnames[-1] == "extra"
    assert len(parsed) == 3
    assert parsed[1]["trainable_params"] == "800"
    assert parsed[0]["param.targets"] == '["q", "v"]'
    assert parsed[2]["accuracy"] == ""


def test_render_table_formats_objectives() -> None:
    from rich.console import Console

    console = Console(record=True, width=160)
    console.print(render_table(_study()[:2], OBJECTIVES, title="Front"))
    text = console.export_text()
    assert "Front" in text
    assert "0.9000" in text
    assert "1,000" in text
    assert "500.0" in text
    assert "L0:q4,v8 L2:v2" in text


# --- plots ------------------------------------------------------------------------------


def test_plot_front_writes_png(tmp_path: Path) -> None:
    path = plot_front(_study(), OBJECTIVES, tmp_path / "new" / "front.png", title="demo")
    assert path == tmp_path / "new" / "front.png"
    _is_png(path)


def test_plot_front_with_a_missing_objective(tmp_path: Path) -> None:
    _is_png(plot_front(_study(), (ACC, PARAMS), tmp_path / "front2d.png"))


def test_plot_front_errors(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="at least two objectives"):
        plot_front(_study(), (ACC,), tmp_path / "x.png")
    with pytest.raises(StudyError, match="nothing to plot"):
        plot_front([TrialRecord(number=0, state="FAIL")], OBJECTIVES, tmp_path / "x.png")


def test_a_plot_path_that_cannot_be_written_is_a_user_error(tmp_path: Path) -> None:
    """Regression (bench/reliability.py): a path under a regular file gave a traceback."""
    regular = tmp_path / "a-file"
    regular.write_text("x")
    with pytest.raises(UserInputError, match=r"plot .*a-file.* exists and is not a directory"):
        plot_front(_study(), OBJECTIVES, regular / "front.png")
    (tmp_path / "dir.png").mkdir()  # savefig itself fails: no partial file is left
    with pytest.raises(UserInputError, match="cannot write plot"):
        plot_history(_study(), OBJECTIVES, tmp_path / "dir.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "dir.png"]
    assert regular.read_text() == "x" and not any((tmp_path / "dir.png").iterdir())


def test_plot_history_writes_png(tmp_path: Path) -> None:
    _is_png(plot_history(_study(), OBJECTIVES, tmp_path / "history.png"))
    hypervolume = [0.1, 0.2, 0.5, 0.55, 0.55, 0.6]  # one per complete trial
    _is_png(plot_history(_study(), OBJECTIVES, tmp_path / "hv.png", hypervolume=hypervolume))
    with pytest.raises(UserInputError, match="hypervolume has 2 values"):
        plot_history(_study(), OBJECTIVES, tmp_path / "bad.png", hypervolume=[0.1, 0.2])


def test_picks_follow_a_minimised_metric() -> None:
    """With ``eval_loss`` as the metric, max-accuracy is the lowest loss and min-params breaks
    ties by the lower loss."""
    loss = Objective("eval_loss", "minimize")
    records = []
    for number, (value, params) in enumerate([(0.9, 100), (0.5, 400), (0.7, 100), (0.3, 900)]):
        record = _trial(number, 0.0, params)
        records.append(replace(record, values={"eval_loss": value, "trainable_params": params}))
    objectives = (loss, PARAMS)
    assert pick_trial(records, objectives, "max-accuracy").number == 3
    assert pick_trial(records, objectives, "min-params").number == 2
    assert pick_trial(records, objectives, "knee").number == 1


def test_placement_summary_merges_runs_of_identical_layers() -> None:
    from autopeft.storage.records import placement_summary

    all_linear = dict.fromkeys(("q", "k", "v", "o", "gate", "up", "down"), 8)
    two = dict.fromkeys(all_linear, 2)
    placement = {0: all_linear, 1: all_linear, 2: two, 4: all_linear, 5: all_linear, 9: {}}
    assert placement_summary(placement) == "q,k,v,o,gate,up,down: L0-1=8 L2=2 L4-5=8"
    mixed = {0: {"q": 2, "v": 4}, 1: {"q": 2, "v": 4}, 3: {"k": 1, "v": 1}}
    assert placement_summary(mixed) == "L0-1:q2,v4 L3:k1,v1"
    assert placement_summary({3: {"v": 2}, 5: {"v": 2}}) == "v: L3=2 L5=2"
    assert placement_summary({0: {"q": 4, "v": 8}, 2: {"v": 2}}) == "L0:q4,v8 L2:v2"
    assert placement_summary({}) == "-"
