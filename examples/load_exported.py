"""Load an autopeft export with nothing but peft + transformers, and print its LoRA ranks.

    python examples/load_exported.py EXPORT_DIR [--model PATH] [--num-labels K]

Prints one JSON object {full module name: rank} for every module that got a LoRA adapter (for
other methods: {full module name: trainable adapter parameters}). This is all a training job
needs: PeftConfig.from_pretrained(dir) + get_peft_model(base, config). The task (a classifier, with
its number of labels, or a causal LM) is read from the export's training.json; --model loads the
base model from a local copy instead of the name in the export. Exports of autopeft's own
bottleneck adapters (serial_adapter, parallel_adapter, sappa) need `import autopeft` first, which
registers their peft type; this script does that when autopeft is installed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

from peft import PeftConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

with contextlib.suppress(ImportError):  # plain peft types load without autopeft
    import autopeft  # noqa: F401 - registers autopeft's bottleneck adapter type with peft


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir")
    parser.add_argument("--model", help="a local copy of the base model")
    parser.add_argument("--num-labels", type=int, help="default: training.json's")
    args = parser.parse_args()

    config = PeftConfig.from_pretrained(args.export_dir)
    recipe_file = Path(args.export_dir) / "training.json"
    recipe = json.loads(recipe_file.read_text()) if recipe_file.is_file() else {}
    path = args.model or config.base_model_name_or_path
    if recipe.get("task") == "causal_lm" or config.task_type == "CAUSAL_LM":
        base = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    else:
        labels = args.num_labels or recipe.get("model", {}).get("num_labels") or 2
        base = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=labels, local_files_only=True
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
