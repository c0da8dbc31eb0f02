"""Labelled text-classification data: built-in datasets, file loaders and seeded splits."""

from __future__ import annotations

from autopeft.data.builtin import BUILTIN_DATASETS
from autopeft.data.loaders import TextDataset, load_dataset
from autopeft.data.split import Splits, split_dataset

__all__ = ["BUILTIN_DATASETS", "Splits", "TextDataset", "load_dataset", "split_dataset"]
