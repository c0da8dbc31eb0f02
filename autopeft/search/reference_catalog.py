"""The built-in references: configurations practitioners train by hand, each defined once here.

Every entry is written in a search space's own vocabulary (``method`` plus that method's
parameters, with family-neutral module types or presets: ``qv``, ``attn``, ``all_linear``, see
:mod:`autopeft.models.layout`), so the same name builds on BERT (``query``/``value``) and on
Llama-style models (``q_proj``/``v_proj``). A reference's learning rate is the study's
``fidelity.learning_rate`` unless the study gives one (``{name: lora-r8-qv, learning_rate:
5.0e-3}``). ``source`` says where the default comes from.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

_LORA = "LoRA, Hu et al. 2021 (arXiv:2106.09685)"

_CATALOG: dict[str, dict[str, Any]] = {
    "lora-r8-qv": {
        "method": "lora",
        "target_modules": "qv",
        "rank": 8,
        "alpha_ratio": 2.0,
        "dropout": 0.0,
        "source": f"{_LORA}: r=8 on W_q and W_v (its GLUE/GPT-3 setting); peft's LoraConfig "
        "default r=8 with q,v targets for BERT/Llama",
    },
    "lora-r16-all-linear": {
        "method": "lora",
        "target_modules": "all_linear",
        "rank": 16,
        "alpha_ratio": 2.0,
        "dropout": 0.0,
        "source": "QLoRA, Dettmers et al. 2023 (arXiv:2305.14314): LoRA on every linear layer; "
        "r=16, alpha=32 as in TRL/Axolotl examples",
    },
    "rslora-r16-all-linear": {
        "method": "lora",
        "target_modules": "all_linear",
        "rank": 16,
        "alpha_ratio": 2.0,
        "dropout": 0.0,
        "use_rslora": True,
        "source": "rsLoRA, Kalajdzievski 2023 (arXiv:2312.03732): alpha/sqrt(r) scaling; "
        "peft's use_rslora",
    },
    "dora-r16-all-linear": {
        "method": "lora",
        "target_modules": "all_linear",
        "rank": 16,
        "alpha_ratio": 2.0,
        "dropout": 0.0,
        "use_dora": True,
        "source": "DoRA, Liu et al. 2024 (arXiv:2402.09353); peft's use_dora",
    },
    "ia3": {
        "method": "ia3",
        "target_modules": ["k", "v", "down"],
        "source": "IA3, Liu et al. 2022 (arXiv:2205.05638): keys, values and the "
        "feed-forward down projection (peft's default IA3 placement)",
    },
    "prompt-tuning-20": {
        "method": "prompt_tuning",
        "num_virtual_tokens": 20,
        "source": "Prompt tuning, Lester et al. 2021 (arXiv:2104.08691); 20 virtual tokens as "
        "in peft's prompt-tuning guides",
    },
    "loha-r16": {
        "method": "loha",
        "target_modules": "attn",
        "rank": 16,
        "alpha_ratio": 2.0,
        "source": "LoHa, LyCORIS, Yeh et al. 2023 (arXiv:2309.14859): r=16 on the attention "
        "projections",
    },
    "vera-r256": {
        "method": "vera",
        "target_modules": "qv",
        "rank": 256,
        "source": "VeRA, Kopiczko et al. 2024 (arXiv:2310.11454): r=256 on q and v (peft's "
        "VeraConfig default r)",
    },
}

#: Name -> definition (``method``, its parameters, ``source``); read-only.
CATALOG: MappingProxyType[str, dict[str, Any]] = MappingProxyType(_CATALOG)
