"""Seeded, stratified train/validation/test splits of any dataset kind."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Generic, Protocol, Self, TypeVar

import numpy as np

from autopeft.exceptions import DatasetError

__all__ = ["Splits", "Splittable", "split_dataset"]


class Splittable(Protocol):
    """What :func:`split_dataset` needs of a dataset (``TextDataset``, ``CompletionDataset``)."""

    @property
    def name(self) -> str:
        """The dataset's display name; splits are named ``<name>/<split>``."""
        ...

    def __len__(self) -> int: ...

    def subset(self, indices: Sequence[int], name: str | None = None) -> Self:
        """Returns the examples at ``indices``, in that order, named ``name``."""
        ...

    def strata(self) -> tuple[int, ...]:
        """Returns one stratum id per example (its label id; all zeros for no strata)."""
        ...


D = TypeVar("D", bound=Splittable)


@dataclass(frozen=True)
class Splits(Generic[D]):
    """The three disjoint parts of a dataset, each of the source's kind.

    Parts of a ``TextDataset`` all keep the source's ``label_names``.
    """

    train: D
    validation: D
    test: D


def split_dataset(ds: D, *, validation: float, test: float, seed: int) -> Splits[D]:
    """Splits a dataset into train, validation and test parts, stratified by ``ds.strata()``.

    Each stratum (a ``TextDataset``'s labels; a ``CompletionDataset`` is one stratum) is
    shuffled with ``numpy.random.default_rng(seed)`` (strata in increasing id order) and cut
    by rounding its size times each fraction, halves up; a stratum with at least 3 examples
    gets at least one example in every split, a smaller one goes to train. Each split is
    then shuffled. The same inputs give the same splits on any machine.

    Args:
        ds: The dataset to split.
        validation: The validation fraction, in (0, 0.5].
        test: The test fraction, in (0, 0.5]; ``validation + test`` must be below 1.
        seed: A non-negative integer seed.

    Returns:
        The splits, named ``<name>/train``, ``<name>/validation`` and ``<name>/test``.

    Raises:
        DatasetError: If a fraction or the seed is invalid, or a split would be empty.
    """
    _check_fraction("validation", validation)
    _check_fraction("test", test)
    if validation + test >= 1:
        raise DatasetError(
            f"split fractions validation={validation} + test={test} leave no training data; "
            "expected a sum below 1"
        )
    if not isinstance(seed, Integral) or isinstance(seed, bool) or seed < 0:
        raise DatasetError(f"split seed {seed!r} is invalid; expected a non-negative integer")
    rng = np.random.default_rng(int(seed))
    parts: tuple[list[int], list[int], list[int]] = ([], [], [])
    strata = _members_by_stratum(ds.strata())
    for members in strata:
        shuffled = [members[i] for i in rng.permutation(len(members))]
        n_val, n_test = _stratum_sizes(len(members), validation, test)
        parts[1].extend(shuffled[:n_val])
        parts[2].extend(shuffled[n_val : n_val + n_test])
        parts[0].extend(shuffled[n_val + n_test :])
    names = ("train", "validation", "test")
    for split, part in zip(names, parts, strict=True):
        if not part:
            expected = (
                "at least 3 examples"
                if len(strata) <= 1
                else ("at least one class with 3 or more examples")
            )
            raise DatasetError(
                f"dataset {ds.name!r}: {len(ds)} examples leave the {split} split empty; "
                f"expected {expected}"
            )
    train, val, tst = (
        ds.subset([part[i] for i in rng.permutation(len(part))], f"{ds.name}/{split}")
        for split, part in zip(names, parts, strict=True)
    )
    return Splits(train=train, validation=val, test=tst)


def _check_fraction(name: str, value: float) -> None:
    ok = isinstance(value, Real) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or not 0 < value <= 0.5:
        raise DatasetError(
            f"split fraction {name}={value!r} is out of range; expected a number in (0, 0.5]"
        )


def _members_by_stratum(strata: Sequence[int]) -> list[list[int]]:
    """Returns the example positions of each stratum, strata in increasing id order."""
    members: dict[int, list[int]] = {}
    for index, stratum in enumerate(strata):
        members.setdefault(stratum, []).append(index)
    return [members[stratum] for stratum in sorted(members)]


def _stratum_sizes(size: int, validation: float, test: float) -> tuple[int, int]:
    """Returns one stratum's (validation, test) counts, leaving train at least one example."""
    if size < 3:
        return 0, 0
    n_val = max(1, math.floor(size * validation + 0.5))
    n_test = max(1, math.floor(size * test + 0.5))
    while n_val + n_test > size - 1:
        if n_val >= n_test:
            n_val -= 1
        else:
            n_test -= 1
    return n_val, n_test
