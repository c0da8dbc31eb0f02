"""GGUF model files: refused when they are not GGUF, converted once into a cached HF directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from autopeft.exceptions import UserInputError
from autopeft.models.gguf_cache import hf_dir_for_gguf
from autopeft.models.resolve import resolve_model


def test_a_file_that_is_not_gguf_is_refused_with_what_it_starts_with(tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 a zip file")
    with pytest.raises(UserInputError, match=r"model.gguf is not a GGUF file .*b'PK\\x03\\x04'"):
        resolve_model("model.gguf", tmp_path)
    with pytest.raises(UserInputError, match=r"not found; expected a \.gguf file"):
        resolve_model("missing.gguf", tmp_path)


def test_a_corrupt_gguf_is_a_user_error_and_leaves_no_cache_entry(tmp_path: Path) -> None:
    corrupt = tmp_path / "broken.gguf"
    corrupt.write_bytes(b"GGUF\x03\x00\x00\x00garbage")
    cache = tmp_path / "cache"
    with pytest.raises(UserInputError, match="could not be read as a GGUF causal LM"):
        hf_dir_for_gguf(corrupt, cache)
    assert not any(cache.iterdir())


@pytest.mark.slow
def test_the_builtin_smollm2_converts_once_and_has_a_gqa_llama_layout() -> None:
    from transformers import AutoConfig

    from autopeft.models.layout import layout_on_meta

    first = resolve_model("smollm2-135m")
    assert resolve_model("smollm2-135m") == first  # the cached directory, not a new conversion
    assert (first / "model.safetensors").is_file() and (first / "tokenizer.json").is_file()
    layout = layout_on_meta(AutoConfig.from_pretrained(first, local_files_only=True), None)
    assert (layout.family, layout.num_layers, layout.hidden_size) == ("llama", 30, 576)
    assert layout.modules == ("q", "k", "v", "o", "gate", "up", "down")
    q, k, v = (layout.site(0, m) for m in ("q", "k", "v"))
    assert (q.out_features, k.out_features, v.out_features) == (576, 192, 192)
