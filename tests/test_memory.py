"""Tests for autopeft.trial.memory: exact CPU peak memory via a live-tensor dispatch mode."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch

from autopeft.trial.memory import LiveTensorTracker, PeakMemoryMeter, model_state_tensors

N = 1_000_000


def _nbytes(tensors: list[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def test_storage_python_object_lives_as_long_as_the_storage() -> None:
    """The invariant the tracker relies on (checked on the installed torch)."""
    x = torch.empty(1000)
    storage = x.untyped_storage()
    assert x.view(10, 100).untyped_storage() is storage
    assert x[::2].untyped_storage() is storage
    freed: list[bool] = []
    ref = weakref.ref(storage, lambda _r: freed.append(True))
    del storage
    gc.collect()
    assert not freed and ref() is not None  # tensor alive -> Python storage object preserved
    y = x[5:]
    del x
    assert not freed  # a view still holds the storage
    del y
    assert freed == [True]


def test_allocation_is_counted_and_released() -> None:
    seed = [torch.zeros(1000)]
    tracker = LiveTensorTracker(seed)
    assert tracker.live_bytes == tracker.peak_bytes == 4000
    with tracker:
        x = torch.empty(N, dtype=torch.float32)
        assert tracker.live_bytes == 4000 + 4 * N
        del x
    assert tracker.peak_bytes >= 4 * N
    assert tracker.peak_bytes == 4000 + 4 * N
    assert tracker.live_bytes == 4000


def test_views_and_inplace_results_count_once() -> None:
    with LiveTensorTracker() as tracker:
        x = torch.empty(N)
        y = x.view(1000, 1000)
        z = x[::2]
        w = y.t().add_(1.0)
        assert tracker.live_bytes == 4 * N
    assert tracker.peak_bytes == 4 * N
    del x, y, z, w
    assert tracker.live_bytes == 0  # released even after the mode exited


def test_storage_resized_in_place_is_recounted() -> None:
    out = torch.empty(0)
    with LiveTensorTracker([out]) as tracker:
        torch.add(torch.ones(1000), 1.0, out=out)  # out= resizes `out` from 0 to 4000 bytes
    assert tracker.live_bytes == 4000 and tracker.peak_bytes == 8000


def test_tensors_without_real_storage_are_skipped() -> None:
    dense = torch.randn(4, 4)
    with LiveTensorTracker([torch.empty(10, device="meta"), dense.to_sparse()]) as tracker:
        torch.empty(100, device="meta")
        sparse = dense.to_sparse()
        sparse.to_dense()
        torch.nested.nested_tensor([torch.randn(2), torch.randn(3)], layout=torch.jagged)
    assert tracker.live_bytes == 0
    assert tracker.peak_bytes > 0


def test_gradients_are_counted_during_backward() -> None:
    layer = torch.nn.Linear(1000, 1000)
    params = _nbytes(list(layer.parameters()))
    x = torch.randn(4, 1000)
    with LiveTensorTracker(model_state_tensors(layer)) as tracker:
        layer(x).sum().backward()
    assert tracker.peak_bytes >= 2 * params  # weight + bias and their grads
    assert tracker.live_bytes == 2 * params  # the graph and output are freed; grads remain


def test_training_step_counts_params_grads_and_adam_state() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    params = list(model.parameters())
    p_bytes = _nbytes(params)  # (256*256 + 256 + 256*10 + 10) * 4 = 273,448
    assert p_bytes == 273_448
    x, y = torch.randn(32, 256), torch.randint(0, 10, (32,))
    with LiveTensorTracker(model_state_tensors(model, optimizer)) as tracker:
        torch.nn.functional.cross_entropy(model(x), y).backward()
        assert tracker.peak_bytes >= 2 * p_bytes  # params + grads
        assert tracker.live_bytes == 2 * p_bytes
        optimizer.step()
    adam_state = [t for st in optimizer.state.values() for t in (st["exp_avg"], st["exp_avg_sq"])]
    assert _nbytes(adam_state) == 2 * p_bytes
    assert tracker.peak_bytes >= 4 * p_bytes  # params + grads + exp_avg + exp_avg_sq
    step_bytes = _nbytes([st["step"] for st in optimizer.state.values()])
    assert tracker.live_bytes == 4 * p_bytes + step_bytes

    # The next step, seeded with the now existing optimizer state, starts from that level.
    optimizer.zero_grad(set_to_none=True)
    seed = model_state_tensors(model, optimizer)
    assert LiveTensorTracker(seed).live_bytes == 3 * p_bytes + step_bytes


def _bert_step_peak(lora: bool) -> int:
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64,
    )  # fmt: skip
    model = transformers.BertForSequenceClassification(config)
    if lora:
        lora_config = peft.LoraConfig(r=2, target_modules=["query", "value"], task_type="SEQ_CLS")
        model = peft.get_peft_model(model, lora_config)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-3)
    input_ids = torch.randint(0, 100, (8, 16))
    labels = torch.randint(0, 2, (8,))
    with PeakMemoryMeter("cpu", seed=model_state_tensors(model, optimizer)) as meter:
        model(input_ids=input_ids, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return meter.peak_bytes


def test_lora_peak_is_below_full_finetuning_peak() -> None:
    lora_peak, full_peak = _bert_step_peak(lora=True), _bert_step_peak(lora=False)
    assert 0 < lora_peak < full_peak


def _work() -> torch.Tensor:
    a = torch.randn(300, 300)
    b = (a @ a).relu()
    c = torch.cat([a, b]).sum(0)
    del a, b
    return c


def test_meter_on_cpu_matches_tracker() -> None:
    seed = [torch.zeros(5000)]
    with PeakMemoryMeter(torch.device("cpu"), seed=seed) as meter:
        assert meter.method == "live_tensor_tracker"
        _work()
        assert meter.peak_bytes > 0  # readable while running
    with LiveTensorTracker(seed) as tracker:
        _work()
    assert meter.peak_bytes == tracker.peak_bytes
    assert meter.peak_bytes >= 20_000 + 3 * 300 * 300 * 4  # seed + a, a@a (or its relu), cat


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_meter_on_cuda_uses_allocator_peak() -> None:
    with PeakMemoryMeter("cuda") as meter:
        x = torch.empty(N, device="cuda")
        del x
    assert meter.method == "cuda_max_allocated"
    assert meter.peak_bytes >= 4 * N
