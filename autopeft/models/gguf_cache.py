"""GGUF model files as cached Hugging Face directories.

``transformers`` reads a GGUF file (``from_pretrained(dir, gguf_file=name)``, through the
``gguf`` package) by de-quantizing every tensor, which takes tens of seconds for a 135 M model.
autopeft does that **once per file**: :func:`hf_dir_for_gguf` writes the de-quantized model
(fp32 safetensors) and its tokenizer into a cache directory keyed by the file's path, size and
modification time, and every later load (each worker, each study) reads that directory. Writes go
to a temporary directory renamed into place, so concurrent workers never see half a model.

The cache lives in ``$AUTOPEFT_CACHE/gguf`` (default ``~/.cache/autopeft/gguf``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from autopeft.exceptions import UserInputError

GGUF_MAGIC = b"GGUF"
_DONE = ".autopeft-complete"


def cache_root() -> Path:
    """Where converted models live: ``$AUTOPEFT_CACHE/gguf`` or ``~/.cache/autopeft/gguf``."""
    base = os.environ.get("AUTOPEFT_CACHE") or Path.home() / ".cache" / "autopeft"
    return Path(base) / "gguf"


def check_gguf(path: Path) -> None:
    """Raise :class:`UserInputError` unless ``path`` is a readable file starting with the GGUF
    magic bytes."""
    if not path.is_file():
        raise UserInputError(f"model file {path} not found; expected a .gguf file")
    try:
        with path.open("rb") as handle:
            head = handle.read(4)
    except OSError as exc:
        raise UserInputError(f"model file {path} cannot be read ({exc.strerror})") from None
    if head != GGUF_MAGIC:
        raise UserInputError(
            f"model file {path} is not a GGUF file (it starts with {head!r}, expected "
            f"{GGUF_MAGIC!r}); expected a GGUF model or a Hugging Face model directory"
        )


def hf_dir_for_gguf(path: Path, root: Path | None = None) -> Path:
    """The cached HF directory of the GGUF file ``path``, converting it first if needed."""
    path = path.resolve()
    check_gguf(path)
    stat = path.stat()
    key = hashlib.sha1(f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    root = root or cache_root()
    target = root / f"{path.stem}-{key}"
    if (target / _DONE).is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{target.name}.{os.getpid()}.{time.monotonic_ns()}"
    print(f"autopeft: converting {path.name} to a cached model in {target} (once)", file=sys.stderr)
    try:
        _convert(path, tmp)
        (tmp / _DONE).write_text(str(path), encoding="utf-8")
        try:
            tmp.rename(target)
        except OSError:  # another process finished first
            if not (target / _DONE).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert(path: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(
            path.parent, gguf_file=path.name, dtype=torch.float32
        )
    except ImportError as exc:
        raise UserInputError(
            f"reading {path.name} needs the 'gguf' package ({exc}); run: pip install gguf"
        ) from None
    except Exception as exc:  # a corrupt file fails anywhere in the reader (struct, numpy, ...)
        raise UserInputError(
            f"model file {path} could not be read as a GGUF causal LM ({exc}); expected a GGUF "
            "file of an architecture transformers supports (llama, mistral, qwen2, ...)"
        ) from None
    # the weights are plain fp32 tensors now; only the loader's marker says "gguf", and it makes
    # save_pretrained refuse
    loaded: Any = model
    loaded.hf_quantizer = None
    if hasattr(loaded.config, "quantization_config"):
        del loaded.config.quantization_config
    tokenizer.save_pretrained(out)
    model.save_pretrained(out)
