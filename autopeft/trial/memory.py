"""Exact peak memory of a training step, per trial, inside a long-lived process.

On CUDA the caching allocator already keeps an exact peak (``torch.cuda.max_memory_allocated``).
On CPU there is no such counter: ``tracemalloc`` sees none of torch's allocations and the process
high-water mark (RSS / VmHWM) never goes down in a long-lived worker. :class:`LiveTensorTracker`
is a ``TorchDispatchMode`` that counts the bytes of every tensor storage an op creates while it is
active, subtracts them when the storage is freed (a weakref callback on the storage's Python
object, which torch keeps alive exactly as long as the storage), and keeps the maximum. It matches
``torch.profiler``'s memory timeline to the byte or within a few bytes (torch 2.13: full
fine-tuning of a 2-layer BERT exact; LoRA off by 32 B in 15.8 MB), plus the untouched tensors
in ``seed``, which the profiler cannot see.

Caveats: dispatch modes are thread-local, so only ops of the thread that entered the mode are seen
(CPU autograd backward runs in that thread, so gradients are counted; DataLoader workers are not).
Scratch memory a kernel uses without making a tensor (oneDNN workspaces, allocator slack) is not
counted. Tensors alive before entering (params, buffers, optimizer state, an input batch built
outside) are only counted if passed as ``seed``.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Iterable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

__all__ = ["LiveTensorTracker", "MemoryCapExceeded", "PeakMemoryMeter", "model_state_tensors"]


class MemoryCapExceeded(MemoryError):
    """The measured live memory passed the configured cap (an out-of-memory on purpose)."""

    def __init__(self, peak: int, cap: int) -> None:
        super().__init__(
            f"memory cap exceeded: {peak / 2**20:.1f} MiB live > cap {cap / 2**20:.1f} MiB"
        )
        self.peak, self.cap = peak, cap


def _storage_of(t: Any) -> torch.UntypedStorage | None:
    """The untyped storage of a plain strided tensor; None for anything without a real one."""
    if not isinstance(t, torch.Tensor) or t.layout != torch.strided or t.is_nested:
        return None  # sparse, quantized-sparse, nested: no single storage to count
    if t.device.type == "meta" or torch._C._dispatch_keys(t).has(torch._C.DispatchKey.Python):
        return None  # __torch_dispatch__ subclasses (fake, DTensor, ...): their inner tensors count
    try:
        return t.untyped_storage()
    except (RuntimeError, NotImplementedError, TypeError):
        return None


class LiveTensorTracker(TorchDispatchMode):
    """Counts live tensor-storage bytes created under the mode; keeps the peak.

    Each op output is counted once per storage (views and in-place results share their base's
    storage); the bytes are subtracted when the storage is freed, even after the mode is exited.
    The mode is thread-local, like every dispatch mode. Overhead is a few dict operations per op
    output: a train step of a 6-layer, hidden-384 BERT (batch 16x64, 2 CPU cores) ran 1.2-1.3x
    slower under it. The first dispatch mode of a process pays a one-time ~2 s import inside torch.

    Attributes:
        live_bytes: Bytes of tracked storages alive now (seed included).
        peak_bytes: Maximum of ``live_bytes`` since construction.
    """

    def __init__(self, seed: Iterable[torch.Tensor] = (), cap_bytes: int | None = None) -> None:
        """Starts the count from the tensors already alive.

        Args:
            seed: Tensors alive before the mode is entered (params, buffers, grads, optimizer
                state, inputs); deduplicated by storage. Non-tensors and storage-less tensors
                are skipped.
            cap_bytes: When live bytes pass it, the op that allocated raises
                :class:`MemoryCapExceeded` (a CPU stand-in for CUDA's out-of-memory).
        """
        super().__init__()
        self.cap_bytes = cap_bytes
        self.live_bytes = 0
        self.peak_bytes = 0
        self._sizes: dict[int, int] = {}
        self._refs: dict[int, weakref.ref[torch.UntypedStorage]] = {}
        for t in seed:
            self._track(t)

    def _track(self, t: Any) -> None:
        storage = _storage_of(t)
        if storage is None:
            return
        key, nbytes = id(storage), storage.nbytes()
        old = self._sizes.get(key)
        if old is None:
            self._refs[key] = weakref.ref(storage, functools.partial(self._on_collected, key))
            old = 0
        if nbytes != old:  # new storage, or one resized in place (resize_, out= ops)
            self._sizes[key] = nbytes
            self.live_bytes += nbytes - old
            self.peak_bytes = max(self.peak_bytes, self.live_bytes)
            if self.cap_bytes is not None and self.live_bytes > self.cap_bytes:
                raise MemoryCapExceeded(self.live_bytes, self.cap_bytes)

    def _on_collected(self, key: int, _ref: object) -> None:
        self._release(key)

    def _release(self, key: int) -> None:
        self._refs.pop(key, None)
        self.live_bytes -= self._sizes.pop(key, 0)

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict | None = None
    ) -> Any:
        """Runs the op, then counts the storages of its tensor outputs."""
        out = func(*args, **(kwargs or {}))
        for leaf in tree_flatten(out)[0]:
            self._track(leaf)
        return out


class PeakMemoryMeter:
    """Context manager measuring peak memory of the code run inside it, on any device.

    On a CUDA device: torch.cuda peak allocated (reset at enter); it covers everything allocated
    on that device, so ``seed`` is ignored there. Otherwise: :class:`LiveTensorTracker` seeded
    with ``seed``. Both include what was alive at enter, so the two numbers compare.

    Attributes:
        peak_bytes: Peak bytes; valid after exit, readable during (best effort).
        method: ``"cuda_max_allocated"`` or ``"live_tensor_tracker"``.
    """

    def __init__(
        self,
        device: torch.device | str,
        seed: Iterable[torch.Tensor] = (),
        cap_bytes: int | None = None,
    ) -> None:
        """Chooses the method for ``device``.

        Args:
            device: Device the measured code runs on.
            seed: Tensors alive before entering (see :func:`model_state_tensors`); CPU only.
            cap_bytes: Peak allowed; on CPU the tracker raises :class:`MemoryCapExceeded` at
                the op that passes it, on CUDA :meth:`check` raises it after a step.
        """
        self.device = torch.device(device)
        self.cap_bytes = cap_bytes
        self.method = "cuda_max_allocated" if self.device.type == "cuda" else "live_tensor_tracker"
        self._seed = list(seed) if self.method == "live_tensor_tracker" else []
        self._tracker: LiveTensorTracker | None = None
        self._peak: int | None = 0  # None while a CUDA measurement is running

    @property
    def peak_bytes(self) -> int:
        """Peak bytes seen so far (final once the context has exited)."""
        if self._tracker is not None:  # its peak only moves while the mode is active
            return self._tracker.peak_bytes
        if self._peak is None:
            return int(torch.cuda.max_memory_allocated(self.device))
        return self._peak

    def __enter__(self) -> PeakMemoryMeter:
        if self.method == "cuda_max_allocated":  # allocator stats are host-side: no sync needed
            torch.cuda.reset_peak_memory_stats(self.device)
            self._peak = None
        else:
            self._tracker = LiveTensorTracker(self._seed, self.cap_bytes)
            self._seed = []  # the tracker holds weakrefs only; don't keep the seed alive
            self._tracker.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._tracker is not None:
            self._tracker.__exit__(*exc)
        else:
            self._peak = int(torch.cuda.max_memory_allocated(self.device))

    def check(self) -> None:
        """Raise :class:`MemoryCapExceeded` when the peak so far is over the cap."""
        if self.cap_bytes is not None and self.peak_bytes > self.cap_bytes:
            raise MemoryCapExceeded(self.peak_bytes, self.cap_bytes)


def model_state_tensors(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None
) -> list[torch.Tensor]:
    """Params, buffers and optimizer state tensors: the seed for a tracker.

    Existing ``.grad`` tensors are included too (they stay alive unless zeroed to None).

    Args:
        model: The model about to be trained.
        optimizer: Its optimizer, if any; its state tensors exist after the first step.

    Returns:
        The tensors, possibly sharing storages (the tracker deduplicates).
    """
    tensors: list[torch.Tensor] = []
    for p in model.parameters():
        tensors.append(p)
        if p.grad is not None:
            tensors.append(p.grad)
    tensors.extend(model.buffers())
    if optimizer is not None:
        leaves = tree_flatten(list(optimizer.state.values()))[0]
        tensors.extend(x for x in leaves if isinstance(x, torch.Tensor))
    return tensors
