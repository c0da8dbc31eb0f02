"""Loading base models from local directories: dtype, quantization, tokenizer, freezing."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from autopeft.exceptions import UnsupportedError

if TYPE_CHECKING:
    from torch import nn

    from autopeft.tasks.base import LoadOptions

PRECISIONS = ("fp32", "bf16", "fp16")
QUANTIZATIONS = ("nf4", "int8")


def torch_dtype(precision: str) -> Any:
    """The torch dtype of a precision name."""
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def quiet_transformers() -> None:
    """No progress bars or load reports from transformers (a worker logs its own progress)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def load_tokenizer(path: Path, padding_side: str = "right") -> Any:
    """The tokenizer of a local model directory, with a pad token (decoders often lack one)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    tokenizer.padding_side = padding_side
    return tokenizer


def model_kwargs(options: LoadOptions) -> dict[str, Any]:
    """``from_pretrained`` keyword arguments for ``options`` (local files only)."""
    kwargs: dict[str, Any] = {"local_files_only": True, "dtype": torch_dtype(options.precision)}
    if options.num_hidden_layers is not None:
        kwargs["num_hidden_layers"] = options.num_hidden_layers
    if options.quantization is not None:
        kwargs["quantization_config"] = quantization_config(options)
        kwargs["device_map"] = {"": options.device.index or 0}
    return kwargs


def quantization_config(options: LoadOptions) -> Any:
    """The bitsandbytes config of ``options.quantization`` (QLoRA: NF4 with double quantization
    and the compute dtype of ``options.precision``)."""
    check_quantization(options.quantization, options.device.type)
    from transformers import BitsAndBytesConfig

    if options.quantization == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch_dtype(options.precision),
    )


def check_quantization(quantization: str | None, device_type: str) -> None:
    """Raise :class:`UnsupportedError` unless ``quantization`` can run on ``device_type``."""
    if quantization is None:
        return
    if device_type != "cuda":
        raise UnsupportedError(
            f"model.quantization {quantization!r} (QLoRA, bitsandbytes) needs a CUDA device, "
            f"but trials would run on {device_type!r}; remove model.quantization or run on a GPU"
        )
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        raise UnsupportedError(
            f"model.quantization {quantization!r} needs the 'bitsandbytes' package; "
            "run: pip install 'autopeft[qlora]'"
        )


def finish(model: nn.Module, options: LoadOptions) -> nn.Module:
    """Freeze the loaded model and place it: quantized models are already placed and get
    peft's k-bit preparation (fp32 norms, input gradients)."""
    if options.quantization is not None:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    else:
        model = model.to(options.device)
    model.requires_grad_(False)
    return model
