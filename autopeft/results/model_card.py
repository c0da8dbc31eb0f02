"""The ``README.md`` model card written beside an export: what was searched, what this trial
measured, where it sits on the Pareto front and how to train with it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autopeft.results.views import StudyView
    from autopeft.storage.records import TrialRecord

CARD_FILE = "README.md"

_HOW = {
    "peft": (
        "```python\n"
        "from peft import PeftConfig, get_peft_model\n"
        "config = PeftConfig.from_pretrained('.')   # this directory\n"
        "model = get_peft_model(base_model, config)\n"
        "```\n"
        "Train it with the settings in `training.json`."
    ),
    "trl": "```\npython train.py --data-dir DATA   # TRL SFTTrainer (Trainer for seq_cls)\n```",
    "axolotl": "```\naxolotl train axolotl.yaml   # add your `datasets:` block first\n```",
    "llamafactory": (
        "```\nllamafactory-cli train llamafactory.yaml   # add `dataset:` and `template:` first\n"
        "```\nRead the `lost:` comment at its top: LLaMA-Factory cannot express all of the "
        "trial."
    ),
}


def model_card(
    view: StudyView, record: TrialRecord, recipe: dict[str, Any], fmt: str, lost: list[str]
) -> str:
    """The card's Markdown text."""
    from autopeft.results import format_value, pareto_front

    front = pareto_front(view.records, view.objectives)
    on_front = any(r.number == record.number for r in front)
    place = (
        f"on the Pareto front ({len(front)} trials)"
        if on_front
        else f"not on the Pareto front ({len(front)} trials)"
    )
    objectives = "\n".join(
        f"| {o.name} | {o.direction} | {format_value(o.name, record.values[o.name])} |"
        for o in view.objectives
        if o.name in record.values
    )
    t = recipe["training"]
    lines = [
        f"# {view.name}: trial {record.number} ({record.method})",
        "",
        f"Exported by autopeft {recipe['autopeft_version']} from study `{view.name}` "
        f"(fingerprint `{recipe['fingerprint']}`): {view.spec.get('description') or ''}",
        "",
        f"- Base model: `{recipe['model']['base_model_name_or_path']}`; task "
        f"`{recipe['task']}`; data `{recipe['data'].get('source')}`",
        f"- Searched: {len(view.complete())} complete trials of {len(view.records)}; "
        f"this trial is {place}.",
        f"- Placement: {record.placement_summary()}",
        f"- Trained: {t['max_steps']} steps, batch {t['batch_size']}, sequence length "
        f"{t['seq_len']}, learning rate {t['learning_rate']:.4g} ({t['lr_scheduler']}, "
        f"{t['warmup_steps']} warmup steps), {t['precision']}, seed {t['seed']}",
        "",
        "| objective | direction | value |",
        "|---|---|---|",
        objectives,
        "",
        "## How to train with it",
        "",
        _HOW[fmt],
        "",
    ]
    if lost:
        lines += ["## Not expressed by this format", "", *(f"- {item}" for item in lost), ""]
    return "\n".join(lines)
