"""Datasets named on the Hugging Face Hub (``dataset: {hub: NAME, config: …, split: …}``).

Read through ``datasets.load_dataset``, so the user's ``datasets`` cache, ``HF_HOME``,
``HF_HUB_OFFLINE`` and ``HF_TOKEN`` apply as they do everywhere else. ``NAME`` may also be a
local directory of data files (``train.jsonl``, ``data/*.parquet``, …) or one written by
``save_to_disk``; relative paths resolve against the spec's directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autopeft.exceptions import DatasetError, UnsupportedError

__all__ = ["HubSource", "hub_table"]


@dataclass(frozen=True)
class HubSource:
    """A dataset on the Hub (or a local dataset directory) and which part of it to read."""

    name: str
    config: str | None = None
    split: str = "train"


def hub_table(source: HubSource, base_dir: Path | None = None) -> Any:
    """The ``datasets.Dataset`` of ``source``'s split.

    Raises:
        DatasetError: the dataset, its config or its split cannot be found or read (offline
            and not cached, unknown name, gated), naming them.
        UnsupportedError: ``datasets`` is not installed.
    """
    try:
        import datasets
    except ImportError as err:
        raise UnsupportedError(
            f"dataset.hub {source.name!r} needs the 'datasets' package; run: pip install datasets"
        ) from err
    name = source.name
    local = Path(name).expanduser()
    if not local.is_absolute() and base_dir is not None and (base_dir / local).exists():
        local = base_dir / local
    what = f"dataset {source.name!r}" + (f" (config {source.config!r})" if source.config else "")
    try:
        if local.is_dir() and any(
            (local / m).is_file() for m in ("dataset_dict.json", "state.json")
        ):
            loaded = datasets.load_from_disk(str(local))
            table = loaded[source.split] if isinstance(loaded, datasets.DatasetDict) else loaded
        else:
            path = str(local) if local.exists() else name
            table = datasets.load_dataset(path, source.config, split=source.split)
    except KeyError:
        raise DatasetError(f"{what} has no split {source.split!r}") from None
    except Exception as exc:  # datasets raises many kinds (not found, offline, bad config)
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatasetError(
            f"{what}, split {source.split!r}, could not be loaded through datasets ({detail}); "
            "expected a dataset on the Hugging Face Hub (in the cache when HF_HUB_OFFLINE is "
            "set) or a local dataset directory"
        ) from None
    if not isinstance(table, datasets.Dataset):
        raise DatasetError(f"{what}: split {source.split!r} is not a single table")
    return table
