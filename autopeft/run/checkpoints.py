"""Where a multi-fidelity study keeps the checkpoints its promotions continue from.

A trial below the top rung writes its checkpoint (:mod:`autopeft.trial.continuation`) to the
study's checkpoint directory: next to a SQLite database, ``<database>.checkpoints/<study>/``;
for any other database, a directory under the system's temporary directory named by a hash of
the URL. Workers on the driver's machine share it; on a multi-node cluster (Ray across
machines) that directory must be on a filesystem every node mounts at the same path, or the
promotions fall back to training from scratch (each says so in a ``note:`` line).

A checkpoint is deleted once its trial cannot be promoted any more: when the promotion trained
from it has finished (completed or failed for good; a promotion lost with its worker is re-run
from the same checkpoint), and all that are left when the study ends. Under ASHA's rule any
trial below the top rung can still be promoted while its rung fills, so until the study ends the
directory holds one checkpoint per unpromoted lower-rung trial (its trainable parameters and
their optimizer state: about 3 x 4 bytes per trainable parameter).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

from autopeft.trial.continuation import Continuation, checkpoint_path, remove_checkpoint


def checkpoint_dir(url: str, study: str) -> Path:
    """The checkpoint directory of ``study`` stored at database ``url``."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        db = Path(str(parsed.database)).resolve()
        return db.parent / f"{db.name}.checkpoints" / study
    digest = hashlib.sha1(url.encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / "autopeft-checkpoints" / digest / study


class StudyCheckpoints:
    """The checkpoints of one study's rungs (``rungs``: training steps per rung)."""

    def __init__(self, directory: Path, rungs: tuple[int, ...]) -> None:
        self.directory = directory
        self.rungs = rungs

    def continuation(self, number: int, rung: int, promoted_from: int | None) -> Continuation:
        """How trial ``number`` at ``rung`` trains: from its source's checkpoint when it is a
        promotion, writing its own when a rung is above it."""
        top = len(self.rungs) - 1
        return Continuation(
            top_steps=self.rungs[-1],
            decay_from=self.rungs[-2],
            resume=None if promoted_from is None else self.path(promoted_from),
            save=self.path(number) if rung < top else None,
        )

    def path(self, number: int) -> str:
        """Trial ``number``'s checkpoint file."""
        return checkpoint_path(self.directory, number)

    def release(self, number: int) -> None:
        """Delete trial ``number``'s checkpoint (its promotion has finished)."""
        remove_checkpoint(self.path(number))

    def clear(self) -> None:
        """Delete every checkpoint of the study (it has ended)."""
        shutil.rmtree(self.directory, ignore_errors=True)

    def files(self) -> list[Path]:
        """The checkpoint files there are now."""
        return sorted(self.directory.glob("trial-*.pt")) if self.directory.is_dir() else []
