"""Every trial stores its training loss curve: bounded, from real training, continued across
rungs (tests/test_continuation.py), readable for trials stored before curves."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from autopeft.executors.worker import TrialWorker, WorkerSetup
from autopeft.run.prepare import prepare_study
from autopeft.search.samplers import make_sampler
from autopeft.spec import FidelitySpec
from autopeft.trial.curve import CURVE_KEY, MAX_POINTS, LossCurve, stored_curve
from autopeft.trial.runner import TrialRequest

LR = 3e-2  # the tiny BERT fits its 64 examples in ~100 steps at this rate


def _fed(steps: int, limit: int = MAX_POINTS) -> LossCurve:
    curve = LossCurve(limit=limit)
    for step in range(1, steps + 1):
        curve.add(step, float(step))
    return curve


@pytest.mark.parametrize("steps", [1, 7, 49, 50, 51, 100, 101, 999, 5000])
def test_a_curve_has_at_most_its_limit_of_points_and_ends_at_the_last_step(steps: int) -> None:
    points = _fed(steps).points()
    assert 0 < len(points) <= MAX_POINTS
    assert points[-1][0] == steps
    xs = [s for s, _ in points]
    assert xs == sorted(set(xs))
    if steps >= 2 * MAX_POINTS:  # long curves stay dense: at least half the bound
        assert len(points) >= MAX_POINTS // 2


def test_each_point_is_the_mean_of_the_steps_in_its_window() -> None:
    points = _fed(10, limit=4).points()  # widths 1 -> 2 -> 4: windows 1-4, 5-8, 9-10
    assert points == [[4, 2.5], [8, 6.5], [10, 9.5]]


def test_a_continued_curve_is_the_curve_of_one_uninterrupted_run() -> None:
    first = _fed(37, limit=6)
    second = LossCurve(first.state(), limit=6)
    for step in range(38, 101):
        second.add(step, float(step))
    assert second.points() == _fed(100, limit=6).points()


def test_an_odd_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="`limit` must be an even number >= 2, but got 5"):
        LossCurve(limit=5)


@pytest.mark.parametrize(
    "metrics",
    [{}, {CURVE_KEY: None}, {CURVE_KEY: "x"}, {CURVE_KEY: [[1]]}, {CURVE_KEY: [["a", 1.0]]}],
)
def test_trials_without_a_readable_curve_have_an_empty_one(metrics: dict) -> None:
    assert stored_curve(metrics) == []


def test_a_stored_curve_reads_back_as_pairs() -> None:
    assert stored_curve({CURVE_KEY: [[2, 0.5], [4, 0.25]]}) == [(2, 0.5), (4, 0.25)]


def test_a_real_training_stores_a_bounded_decreasing_loss_curve(study_dir: Path) -> None:
    """120 steps on 64 examples at a high learning rate: the tiny BERT fits its data, so the
    loss falls (0.69 -> ~0.15 when written); the curve keeps at most MAX_POINTS points and
    ends at the last step."""
    p = prepare_study(study_dir / "study.yaml")
    fidelity = FidelitySpec(
        train_examples=64, max_steps=120, eval_examples=24, seq_len=16, batch_size=16,
        warmup_ratio=0.0,
    )  # fmt: skip
    setup = WorkerSetup(
        model=p.files.spec.model.path, base_dir=p.files.base_dir, splits=p.splits,
        fidelity=fidelity, seed=0, metric="accuracy", dataset=p.files.spec.dataset,
        device="cpu", threads=1,
    )  # fmt: skip
    point = make_sampler("random", p.bound, p.objectives, 3, {}).propose([], 1)[0]
    compiled = p.bound.compile(point)
    compiled = replace(compiled, training={**compiled.training, "learning_rate": LR})
    result = TrialWorker(setup).run(TrialRequest(0, compiled, seed=7))
    assert result.ok, result.error
    curve = stored_curve(result.metrics)
    assert MAX_POINTS // 2 <= len(curve) <= MAX_POINTS
    assert curve[-1][0] == 120
    head = sum(loss for _, loss in curve[:5]) / 5
    tail = sum(loss for _, loss in curve[-5:]) / 5
    assert tail < 0.5 * head, curve


def test_show_curves_prints_the_fronts_loss_curves_and_old_trials_print_none(
    study_dir: Path, tmp_path: Path
) -> None:
    """``show --curves`` (table and JSON) and ``front --plot``'s curves PNG; then the same study
    with its curves removed, as a study stored before curves were recorded reads."""
    import json
    import sqlite3

    from typer.testing import CliRunner

    from autopeft.cli import app
    from autopeft.results.views import load_view

    def cli(*args: object):
        return CliRunner().invoke(app, [str(a) for a in args])

    assert cli("run", study_dir / "study.yaml", "-q").exit_code == 0
    url = f"sqlite:///{study_dir / 'studies.db'}"
    front = [r.number for r in load_view("tiny", url).front()]
    shown = cli("show", "tiny", "--storage", url, "--curves")
    assert shown.exit_code == 0, shown.output
    lines = [line.strip() for line in shown.output.splitlines()]
    head = lines.index("learning curves (front, training loss per step):")
    curve_lines = lines[head + 1 : head + 1 + len(front)]
    assert [line.split()[0] for line in curve_lines] == [f"#{n}" for n in front]
    assert all(" loss " in line and line.endswith("over 4 steps") for line in curve_lines)
    assert all(set(line.split()[1]) <= set("▁▂▃▄▅▆▇█") for line in curve_lines)
    data = json.loads(cli("show", "tiny", "--storage", url, "-f", "json", "--curves").stdout)
    assert [c["trial"] for c in data["loss_curves"]] == front
    assert all(len(c["loss"]) == 4 for c in data["loss_curves"])
    plain = json.loads(cli("show", "tiny", "--storage", url, "-f", "json").stdout)
    assert "loss_curves" not in plain  # only asked for
    plotted = cli("front", "tiny", "--storage", url, "--plot", tmp_path / "f.png")
    assert plotted.exit_code == 0 and "curves: " in plotted.output
    assert (tmp_path / "f_curves.png").read_bytes()[:4] == b"\x89PNG"

    with sqlite3.connect(study_dir / "studies.db") as con:  # as stored before curves
        rows = con.execute("SELECT number, metrics_json FROM autopeft_trials").fetchall()
        for row_id, text in rows:
            metrics = json.loads(text)
            metrics.pop(CURVE_KEY, None)
            con.execute(
                "UPDATE autopeft_trials SET metrics_json = ? WHERE number = ?",
                (json.dumps(metrics), row_id),
            )
    old = cli("show", "tiny", "--storage", url, "--curves")
    assert old.exit_code == 0 and "learning curves: none stored" in old.output
    replot = cli("front", "tiny", "--storage", url, "--plot", tmp_path / "g.png")
    assert replot.exit_code == 0 and "curves: " not in replot.output
    assert (tmp_path / "g.png").exists() and not (tmp_path / "g_curves.png").exists()


def test_sparklines_and_curve_lines() -> None:
    from autopeft.results.curves import TrialCurves, curve_line, sparkline

    assert sparkline([3.0, 2.0, 1.0]) == "█▅▁"
    assert sparkline([1.0, 1.0]) == "▅▅" and sparkline([]) == ""
    assert len(sparkline([float(i) for i in range(50)], width=24)) == 24
    curves = TrialCurves(3, [(2, 0.7), (4, 0.5), (6, 0.25)], [(2, 0.6), (6, 0.75)])
    assert curve_line(curves, "accuracy") == (
        "#3 █▅▁ loss 0.7 -> 0.25 over 6 steps; accuracy 0.600@2 > 0.750@6"
    )
    assert curve_line(TrialCurves(4, [], [])) == ""  # stored before curves: nothing printed
