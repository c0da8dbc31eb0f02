"""Fine-tuning data: built-in datasets, file loaders and seeded splits.

Labelled text classification (:class:`TextDataset`, :func:`load_dataset`) and causal-LM
prompt/completion data (:class:`CompletionDataset`, :func:`load_completions`); both split
with :func:`split_dataset`.
"""

from __future__ import annotations

from autopeft.data.builtin import BUILTIN_COMPLETIONS, BUILTIN_DATASETS
from autopeft.data.completions import CompletionDataset, Message, Prompt, load_completions
from autopeft.data.hub import HubSource
from autopeft.data.loaders import TextDataset, load_dataset
from autopeft.data.split import Splits, Splittable, split_dataset

__all__ = [
    "BUILTIN_COMPLETIONS",
    "BUILTIN_DATASETS",
    "CompletionDataset",
    "HubSource",
    "Message",
    "Prompt",
    "Splits",
    "Splittable",
    "TextDataset",
    "load_completions",
    "load_dataset",
    "split_dataset",
]
