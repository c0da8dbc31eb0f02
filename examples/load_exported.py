"""Load an autopeft export with nothing but peft + transformers, and print its LoRA ranks.

    python examples/load_exported.py EXPORT_DIR [--num-labels K]

Prints one JSON object {full module name: rank} for every module that got a LoRA adapter (for
other methods: {full module name: trainable adapter parameters}). This is all a training job
needs: PeftConfig.from_pretrained(dir) + get_peft_model(base, config). Exports of autopeft's own
bottleneck adapters (serial_adapter, parallel_adapter, sappa) need `import autopeft` first, which
registers their peft type; this script does that when autopeft is installed.
"""

from __future__ import annotations

import argparse
import contextlib
import json

from peft import PeftConfig, get_peft_model
from transformers import AutoModelForSequenceClassification

with contextlib.suppress(ImportError):  # plain peft types load without autopeft
    import autopeft  # noqa: F401 - registers autopeft's bottleneck adapter type with peft


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir")
    parser.add_argument("--num-labels", type=int, default=2)
    args = parser.parse_args()

    config = PeftConfig.from_pretrained(args.export_dir)
    base = AutoModelForSequenceClassification.from_pretrained(
        config.base_model_name_or_path, num_labels=args.num_labels, local_files_only=True
    )
    model = get_peft_model(base, config)
    ranks = {
        name.removeprefix("base_model.model."): module.lora_A["default"].weight.shape[0]
        for name, module in model.named_modules()
        if hasattr(module, "lora_A") and "default" in module.lora_A
    }
    if not ranks:  # another method: trainable adapter parameters per adapted module
        for name, param in model.named_parameters():
            if param.requires_grad and "modules_to_save" not in name:
                owner = name.removeprefix("base_model.model.").rsplit(".", 1)[0]
                ranks[owner] = ranks.get(owner, 0) + param.numel()
    print(json.dumps(ranks, sort_keys=True))


if __name__ == "__main__":
    main()
