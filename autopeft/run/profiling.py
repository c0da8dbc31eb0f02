"""Measure (once) and load the allocation profiles a study's ``allocation:`` block needs, and
read back the stored ones a structured sampler's profile family uses (never measured for it).

Profiles are stored in the database under a :class:`~autopeft.storage.profiles.ProfileKey`, so
every study with the same model, data, split and calibration batches reads them back instead of
measuring again. The measurements themselves are :mod:`autopeft.allocation.profiles` (gradient
sensitivity and importance) and an AdaLoRA probe trial (:mod:`autopeft.allocation.
adalora_profile`), run here on the study's model and training split.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from autopeft.allocation.profiles import GRADIENT_KINDS, calibration_batches, gradient_profiles
from autopeft.exceptions import StudyError, UnsupportedError
from autopeft.run.prepare import prepare_study, worker_setup
from autopeft.storage.profiles import (
    ProfileKey,
    get_or_compute,
    link_study,
    load_profile,
    study_profiles,
)
from autopeft.storage.store import Store
from autopeft.storage.urls import resolve_storage

if TYPE_CHECKING:
    from autopeft.allocation.profiles import Profile
    from autopeft.models.layout import ModelLayout
    from autopeft.run.prepare import PreparedStudy
    from autopeft.run.progress import Reporter
    from autopeft.trial.context import TrialContext


def profile_key(prepared: PreparedStudy) -> ProfileKey:
    """The key of the study's calibration batches (see :class:`ProfileKey`)."""
    spec = prepared.files.spec
    allocation = prepared.files.space.allocation
    n_batches = allocation.calibration_batches if allocation is not None else 4
    d = spec.dataset
    local = prepared.files.base_dir / d.source
    source = str(local.resolve()) if d.source and local.exists() else d.source
    if d.hub is not None:
        source = f"hub:{d.hub}[config={d.config},split={d.split}]"
    layers = spec.model.num_hidden_layers
    split = spec.split
    columns = f"text={d.text_column},label={d.label_column}"
    columns += f",pair={d.text_pair_column}" if d.text_pair_column else ""
    if spec.task != "seq_cls":
        columns = (
            f"task={spec.task},prompt={d.prompt_column},completion={d.completion_column},"
            f"messages={d.messages_column},chat_template={d.chat_template}"
        ) + (f",format={d.format}" if d.format != "auto" else "")
    return ProfileKey(
        model=str(Path(prepared.model_path).resolve()) + (f"[layers={layers}]" if layers else ""),
        dataset=f"{source}[{columns}]",
        split=f"train[validation={split.validation},test={split.test},seed={split.seed},"
        f"examples={spec.fidelity.train_examples}]",
        n_batches=n_batches,
        seed=spec.seed,
        batch_size=spec.fidelity.batch_size,
        seq_len=spec.fidelity.seq_len,
    )


def ensure_profiles(
    prepared: PreparedStudy,
    store: Store,
    reporter: Reporter | None = None,
    kinds: list[str] | None = None,
) -> dict[str, tuple[int, Profile]]:
    """Read the profiles of ``kinds`` (default: those the space's strategies need) from
    ``store``, measuring and storing missing ones first; attach them to ``prepared.bound``.

    Returns:
        kind -> (profile row id, profile).
    """
    allocation = prepared.files.space.allocation
    if kinds is None:
        kinds = allocation.profile_kinds() if allocation is not None else []
    if not kinds:
        return {}
    key = profile_key(prepared)

    def compute(missing: list[str]) -> dict[str, Profile]:
        if reporter is not None:
            reporter.message(
                f"measuring {', '.join(missing)} profile(s) on {key.n_batches} batches"
            )
        return measure_profiles(prepared, key, missing)

    found = get_or_compute(store, key, kinds, compute)
    prepared.bound.profiles.update({kind: p for kind, (_, p) in found.items()})
    return found


def design_profiles(prepared: PreparedStudy, store: Store, new: bool) -> dict[str, Profile]:
    """The stored profiles a structured sampler follows (the profile family of
    :mod:`autopeft.search.samplers.structured`); nothing is measured.

    A new study takes every kind stored under its :func:`profile_key` (by ``autopeft profile``
    or an allocation study on the same model and data) and links them to itself; an existing
    study keeps the ones linked to it, so a resumed study proposes what it would have without
    the interruption even if profiles were stored since.

    Returns:
        kind -> profile; empty when none are stored (the family is then empty).
    """
    if not new:
        return {kind: p for kind, (_, p) in study_profiles(store, prepared.name).items()}
    key = profile_key(prepared)
    found = {}
    for kind in (*GRADIENT_KINDS, "adalora"):
        hit = load_profile(store, kind, key)
        if hit is not None:
            found[kind] = hit
    attach_to_study(store, prepared.name, found)
    return {kind: p for kind, (_, p) in found.items()}


def attach_to_study(store: Store, study: str, found: dict[str, tuple[int, Profile]]) -> None:
    """Link a created study to its profiles (for ``autopeft profile STUDY``)."""
    link_study(store, study, [pid for pid, _ in found.values()])


def study_context(prepared: PreparedStudy) -> TrialContext:
    """The model and tokenized splits of a prepared study, loaded in this process."""
    from autopeft.executors.worker import load_context

    return load_context(worker_setup(prepared, prepared.files.spec.executor))


def measure_profiles(
    prepared: PreparedStudy, key: ProfileKey, kinds: list[str]
) -> dict[str, Profile]:
    """Load the model and training split once and measure ``kinds`` on the calibration
    batches of ``key``."""

    unsupported = [k for k in kinds if k not in GRADIENT_KINDS and k != "adalora"]
    if unsupported:
        raise UnsupportedError(f"no profile kind {unsupported[0]!r}")
    ctx = study_context(prepared)
    out: dict[str, Profile] = {}
    gradient = tuple(k for k in kinds if k in GRADIENT_KINDS)
    if gradient:
        ctx.model.to(ctx.device)
        batches = calibration_batches(ctx.train, key.n_batches, key.batch_size, key.seed)
        out.update(
            gradient_profiles(ctx.model, prepared.bound.layout, batches, gradient, ctx.device)
        )
    if "adalora" in kinds:
        out["adalora"] = adalora_profile(ctx, prepared.bound.layout, key.seed, prepared.task_type)
    return out


def adalora_profile(
    ctx: TrialContext, layout: ModelLayout, seed: int, task_type: str = "SEQ_CLS"
) -> Profile:
    """Train the AdaLoRA probe for the study's fidelity and score each cell by the rank it kept
    (see :mod:`autopeft.run.adalora_profile`)."""
    from autopeft.run.adalora_profile import adalora_probe, profile_from_learned
    from autopeft.trial.runner import TrialRequest, run_trial

    t0 = time.perf_counter()
    compiled, init_r = adalora_probe(layout, task_type)
    result = run_trial(ctx, TrialRequest(0, compiled, seed))
    learned = result.metrics.get("learned_peft_config") if result.ok else None
    if not learned:
        raise RuntimeError(f"the AdaLoRA profile run learned no ranks: {result.error}")
    return profile_from_learned(learned, layout, init_r, time.perf_counter() - t0)


def profiles_for(
    study_or_spec: str | Path, storage: str | None = None, kinds: list[str] | None = None
) -> tuple[str, dict[str, Profile]]:
    """The profiles of a study spec file (measured once and stored, or read back) or of a
    stored study name; returns (label, kind -> profile).

    Raises:
        StudyError: a study name with no profiles, or not in the database.
    """

    path = Path(study_or_spec)
    if path.is_file():
        prepared = prepare_study(path, storage=storage)
        allocation = prepared.files.space.allocation
        wanted = kinds or (allocation.profile_kinds() if allocation else None)
        found = ensure_profiles(
            prepared, Store(prepared.url), kinds=wanted or ["sensitivity", "importance"]
        )
        return prepared.name, {kind: p for kind, (_, p) in found.items()}
    store = Store(resolve_storage(storage), create=False)
    store.study_row(str(study_or_spec))  # a clear error for an unknown name
    linked = {kind: p for kind, (_, p) in study_profiles(store, str(study_or_spec)).items()}
    if kinds:
        linked = {k: p for k, p in linked.items() if k in kinds}
    if not linked:
        raise StudyError(
            f"study {str(study_or_spec)!r} has no allocation profiles"
            + (f" of kind {', '.join(kinds)}" if kinds else "")
            + "; pass its spec file to measure them"
        )
    return str(study_or_spec), linked
