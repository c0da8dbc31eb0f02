"""Load an autopeft export with nothing but peft + transformers, and print its LoRA ranks.

    python examples/load_exported.py EXPORT_DIR [--num-labels K]

Prints one JSON object {full module name: rank} for every module that got an adapter. This is
all a training job needs: PeftConfig.from_pretrained(dir) + get_peft_model(base, config).
"""

from __future__ import annotations

import argparse
import json

from peft import PeftConfig, get_peft_model
from transformers import AutoModelForSequenceClassification


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
    print(json.dumps(ranks, sort_keys=True))


if __name__ == "__main__":
    main()
