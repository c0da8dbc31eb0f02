"""Hugging Face Hub model IDs, resolved through the user's Hub cache.

``model: Qwen/Qwen2.5-0.5B-Instruct`` (optionally with ``revision:``) names a model on the Hub.
:func:`hub_snapshot` returns its snapshot directory in the Hub cache, downloading it first when
allowed, exactly as ``transformers`` would: ``HF_HOME`` / ``HF_HUB_CACHE`` say where the cache
is, ``HF_HUB_OFFLINE=1`` (or ``TRANSFORMERS_OFFLINE=1``) forbids the network, ``HF_TOKEN``
authenticates. The environment is read at call time (``huggingface_hub`` reads it once, at
import), so each Ray worker resolves the ID against its own node's cache: a cluster needs no
shared path.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from autopeft.exceptions import UserInputError

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")
_CACHE_DIR = re.compile(r"^models--(.+)$")
# files a PEFT study never reads; skipping them keeps downloads to the model itself
IGNORED = ["*.gguf", "*.onnx", "onnx/*", "*.h5", "*.msgpack", "*.ot", "*.tflite", "openvino/*"]


def looks_like_hub_id(name: str) -> bool:
    """True when ``name`` has the form of a Hub repository ID (``org/name`` or ``name``)."""
    return bool(_HUB_ID.match(name)) and ".." not in name and not name.endswith(".gguf")


def hub_cache_dir() -> Path:
    """The Hub cache directory: ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
    ``~/.cache/huggingface/hub``."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface"
    return Path(home).expanduser() / "hub"


def offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` is set to a true value."""
    flags = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"))
    return any((v or "").strip().upper() in {"1", "ON", "YES", "TRUE"} for v in flags)


def hub_snapshot(repo_id: str, revision: str | None = None) -> Path:
    """The local snapshot directory of the Hub model ``repo_id`` at ``revision``.

    Raises:
        UserInputError: the model is not in the cache and may not (offline) or cannot be
            downloaded (unknown repository, gated without a token, no network), naming the
            ID and the cache directory.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    cache = hub_cache_dir()
    at = f" at revision {revision!r}" if revision else ""
    local = offline()
    try:
        path = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=cache,
            local_files_only=local,
            ignore_patterns=IGNORED,
        )
    except (GatedRepoError, RepositoryNotFoundError) as exc:
        kind = "is gated" if isinstance(exc, GatedRepoError) else "was not found"
        raise UserInputError(
            f"model {repo_id!r} {kind} on the Hugging Face Hub; check the ID, and set HF_TOKEN "
            "to a token that may read it"
        ) from None
    except RevisionNotFoundError:
        raise UserInputError(
            f"model {repo_id!r} has no revision {revision!r} on the Hugging Face Hub; expected "
            "a branch, tag or commit hash"
        ) from None
    except LocalEntryNotFoundError:
        reason = (
            "HF_HUB_OFFLINE is set, so it cannot be downloaded"
            if local
            else "it could not be downloaded (no connection to the Hub)"
        )
        raise UserInputError(
            f"model {repo_id!r}{at} is not in the Hugging Face cache {cache} and {reason}; "
            f"download it first (hf download {repo_id}) or point HF_HOME at a cache holding it"
        ) from None
    except (OSError, ValueError) as exc:
        raise UserInputError(
            f"model {repo_id!r}{at} could not be fetched into the Hugging Face cache {cache} "
            f"({exc})"
        ) from None
    snapshot = Path(path)
    if not (snapshot / "config.json").is_file():
        raise UserInputError(
            f"model {repo_id!r}{at} in the Hugging Face cache {cache} has no config.json; "
            "expected a transformers model repository"
        )
    return snapshot


def hub_id_of(path: str | Path) -> str | None:
    """The Hub ID of a snapshot directory in a Hub cache
    (``…/models--ORG--NAME/snapshots/REV`` → ``ORG/NAME``), else None."""
    parts = Path(path).parts
    if len(parts) < 3 or parts[-2] != "snapshots":
        return None
    match = _CACHE_DIR.match(parts[-3])
    return match.group(1).replace("--", "/") if match else None
