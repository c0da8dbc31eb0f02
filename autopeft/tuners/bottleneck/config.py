"""The ``BOTTLENECK`` peft config: serial / parallel adapter sizes and prefix lengths per layer.

The tuner is described in :mod:`autopeft.tuners.bottleneck.model`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from peft.config import PeftConfig

PEFT_TYPE = "BOTTLENECK"


@dataclass
class BottleneckConfig(PeftConfig):
    """Config of serial / parallel bottleneck adapters.

    Attributes:
        stack: Full name of the layer ``ModuleList`` (``bert.encoder.layer``).
        ffn_input: Path of the FFN's input linear inside one layer (``intermediate.dense``).
        ffn_output: Path of the FFN's output linear inside one layer (``output.dense``).
        attention: Path of the self-attention module inside one layer (``attention.self``).
        kv_width: Output width of the key projection (prefix keys/values per token and layer).
        serial_sizes: Layer index (as a string) -> serial bottleneck size; absent = none.
        parallel_sizes: Layer index (as a string) -> parallel bottleneck size; absent = none.
        prefix_lengths: Layer index (as a string) -> prefix length (see :mod:`.prefix`).
        parallel_scaling: Factor on the parallel adapter's output.
        modules_to_save: Extra trainable, saved modules (the classification head).
    """

    stack: str = ""
    ffn_input: str = ""
    ffn_output: str = ""
    attention: str = ""
    kv_width: int = 0
    serial_sizes: dict[str, int] = field(default_factory=dict)
    parallel_sizes: dict[str, int] = field(default_factory=dict)
    prefix_lengths: dict[str, int] = field(default_factory=dict)
    parallel_scaling: float = 1.0
    target_modules: list[str] | None = None
    modules_to_save: list[str] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peft_type = PEFT_TYPE
        sizes = {**self.serial_sizes, **self.parallel_sizes}
        for key, size in [*sizes.items(), *self.prefix_lengths.items()]:
            if not str(key).isdigit() or int(size) < 1:
                raise ValueError(f"bottleneck sizes need layer-index keys and sizes >= 1: {key}")
        names = [f"{self.stack}.{i}.{self.ffn_output}" for i in sorted(sizes, key=int)]
        names += [
            f"{self.stack}.{i}.{self.ffn_input}" for i in sorted(self.parallel_sizes, key=int)
        ]
        names += [
            f"{self.stack}.{i}.{self.attention}" for i in sorted(self.prefix_lengths, key=int)
        ]
        self.target_modules = names
