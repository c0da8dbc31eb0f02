"""A trial's training loss curve: at most :data:`MAX_POINTS` points, whatever its steps.

Each point is ``[step, loss]``: the mean training loss over a window of consecutive steps and
the (1-based) step that ends it. Windows start one step wide; whenever :data:`MAX_POINTS`
windows are full, neighbours merge pairwise and the width doubles, so a curve of any length
stays bounded and evenly spaced without knowing its length in advance. The last point is the
window still filling (it ends at the last step trained).

A multi-fidelity promotion continues its source's curve (:meth:`LossCurve.state` travels in
the checkpoint, :mod:`autopeft.trial.continuation`): steps count from the start of the
configuration's training, and a continued curve is the one an uninterrupted run would draw.
Stored in a trial's metrics under :data:`CURVE_KEY`; trials stored before it have none.
"""

from __future__ import annotations

from typing import Any

MAX_POINTS = 50
"""Points per curve at most (an even number: windows merge pairwise)."""

CURVE_KEY = "loss_curve"
"""The metrics key of the curve: ``[[step, loss], ...]``, steps increasing."""


class LossCurve:
    """Running window means of the training loss (see the module docstring).

    Args:
        state: :meth:`state` of the curve to continue (a promotion's source); None or empty:
            a new curve.
        limit: Points at most; an even number of at least 2.
    """

    def __init__(self, state: dict[str, Any] | None = None, limit: int = MAX_POINTS) -> None:
        if limit < 2 or limit % 2:
            raise ValueError(f"`limit` must be an even number >= 2, but got {limit}")
        state = state or {}
        self._limit = limit
        self._width = int(state.get("width", 1))
        self._closed: list[list[float]] = [list(b) for b in state.get("closed", [])]
        self._open: list[float] = list(state.get("open", [0, 0.0, 0]))

    def add(self, step: int, loss: float) -> None:
        """Record the loss of training step ``step`` (1-based: steps done so far)."""
        self._open = [step, self._open[1] + loss, self._open[2] + 1]
        if self._open[2] < self._width:
            return
        self._closed.append(self._open)
        self._open = [step, 0.0, 0]
        if len(self._closed) >= self._limit:
            self._merge()

    def _merge(self) -> None:
        pairs = zip(self._closed[0::2], self._closed[1::2], strict=False)
        merged = [[b[0], a[1] + b[1], a[2] + b[2]] for a, b in pairs]
        if len(self._closed) % 2:  # an odd one out keeps filling as the open window
            self._open = self._closed[-1]
        self._closed = merged
        self._width *= 2

    def points(self) -> list[list[float]]:
        """``[[step, mean loss], ...]``, at most ``limit`` points, losses to 5 significant
        digits."""
        windows = self._closed + ([self._open] if self._open[2] else [])
        return [[int(end), float(f"{total / count:.5g}")] for end, total, count in windows]

    def state(self) -> dict[str, Any]:
        """Plain lists and numbers from which ``LossCurve(state)`` continues this curve."""
        return {"width": self._width, "closed": [list(b) for b in self._closed], "open": self._open}


def stored_curve(metrics: dict[str, Any]) -> list[tuple[int, float]]:
    """The loss curve in a trial's stored ``metrics`` as ``(step, loss)`` pairs; empty when
    the trial has none (stored before curves, failed, skipped) or it is malformed."""
    raw = metrics.get(CURVE_KEY)
    if not isinstance(raw, list):
        return []
    out: list[tuple[int, float]] = []
    for point in raw:
        if not (isinstance(point, (list, tuple)) and len(point) == 2):
            return []
        try:
            out.append((int(point[0]), float(point[1])))
        except (TypeError, ValueError):
            return []
    return out
