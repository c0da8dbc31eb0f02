"""Seeded classes of synthetic PEFT-like problems, to benchmark samplers off their tuned problem.

:mod:`autopeft.testing.synthetic` is one problem family (a fixed budget, rank ladder and
learning-rate range); a sampler tuned on it can be fragile elsewhere. Here a
:class:`ProblemClass` names one combination of the properties a real study varies, and
:func:`make_problem` draws a seeded problem of that class: a real search-space file (its YAML
text, parsed and checked by the method rules) bound to a synthetic BERT-like layout, and an
objective with a known optimum.

The objective (as in :mod:`~autopeft.testing.synthetic`): accuracy saturates in the capacity
``sum(layer_w * module_w * log1p(size))`` over the adapted cells, falls off as
``0.25 * log10(lr / lr_opt) ** 2`` from a seeded optimum ``lr_opt`` anywhere in the searched
range, plus seeded Gaussian noise; ``trainable_params`` is the exact count; peak memory grows with
the adapted cells and parameters. The optimum is known: every important cell at a large size
and ``lr = lr_opt`` (per method in a method-choice space, whose methods have their own ceilings).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import yaml

from autopeft.core.objectives import Objective
from autopeft.methods.binding import bind_space, check_methods
from autopeft.methods.choice import MethodChoiceSpace
from autopeft.models.layout import FAMILY_ROLES, LinearSite, ModelLayout
from autopeft.space.bound import BoundSpace, Point
from autopeft.space.schema import SearchSpace

__all__ = ["CLASSES", "ClassProblem", "ProblemClass", "make_problem", "synthetic_layout"]

BASE_ACC = 0.30
#: Accuracy ceiling of each method (a method-choice space trades accuracy for parameters).
TOP_ACC = {"lora": 0.92, "ia3": 0.86, "prompt_tuning": 0.80}
#: Capacity of one cell of size 1 relative to one LoRA rank (IA3 scales a whole vector).
SIZE_SCALE = {"lora": 1.0, "ia3": 3.0, "prompt_tuning": 1.0}
MEMORY_FLOOR = 150.0
OBJECTIVES = (
    Objective("accuracy", "maximize"),
    Objective("trainable_params", "minimize"),
    Objective("peak_memory_mb", "minimize"),
)


@dataclass(frozen=True)
class ProblemClass:
    """One named combination of problem properties.

    Attributes:
        name: The class name (``tight``, ``deep32``, ...).
        layers: Layers of the synthetic model (6 to 32).
        rungs: Rungs of the rank ladder, 0 included: ``[0, 2, 4, ..., 2 ** (rungs - 1)]``.
        budget: ``max_trainable_params`` as a fraction of the largest reachable count (every
            cell of every module at the top rung): 0.15 is tight, 3.0 is 20x that (never binds).
        lr_decades: Width of the searched learning-rate range in decades.
        importance: Layer/module importance pattern: ``random``, ``early``, ``late``, ``flat``,
            ``sparse``.
        noise: Standard deviation of the accuracy noise.
        failures: Whether points fail: LoRA with a total rank over 20 % of the largest and a
            learning rate above 3x the optimum diverges; peak memory over 70 % of the span from
            its floor to its ceiling is out of memory.
        objectives: 2 (accuracy, trainable_params) or 3 (+ peak_memory_mb).
        method_choice: Search the method among lora, ia3 and prompt_tuning.
        targets: The LoRA ``target_modules`` presets searched (one preset: a constant).
    """

    name: str
    layers: int = 6
    rungs: int = 4
    budget: float = 0.45
    lr_decades: float = 1.0
    importance: str = "random"
    noise: float = 0.005
    failures: bool = False
    objectives: int = 3
    method_choice: bool = False
    targets: tuple[str, ...] = ("qv", "attn", "all_linear")
    description: str = field(default="", compare=False)


CLASSES: dict[str, ProblemClass] = {
    c.name: c
    for c in (
        ProblemClass("base", description="6 layers, 4 rungs, budget 0.45, 1 decade, 3 obj"),
        ProblemClass("tight", budget=0.15, description="budget 0.15 of the largest count"),
        ProblemClass("loose5x", budget=0.75, description="budget 5x tight"),
        ProblemClass("loose20x", budget=3.0, description="budget 20x tight (never binds)"),
        ProblemClass("ladder3", rungs=3, description="ranks [0, 2, 4]"),
        ProblemClass("ladder8", rungs=8, description="ranks [0, 2, ..., 128]"),
        ProblemClass("lr4dec", lr_decades=4.0, description="learning rate over 4 decades"),
        ProblemClass("early", importance="early", description="early layers matter"),
        ProblemClass("late", importance="late", description="late layers matter"),
        ProblemClass("flat", importance="flat", description="every cell matters equally"),
        ProblemClass("sparse", importance="sparse", description="few layers/modules matter"),
        ProblemClass("noisy", noise=0.03, description="accuracy noise 0.03"),
        ProblemClass("failures", failures=True, description="divergence and OOM regions"),
        ProblemClass("two_obj", objectives=2, description="accuracy + trainable_params"),
        ProblemClass("deep32", layers=32, description="32 layers (192 rank cells)"),
        ProblemClass("method_choice", method_choice=True, description="lora | ia3 | prompt_tuning"),
    )
}


def synthetic_layout(layers: int, hidden: int = 384, ffn: int = 1536) -> ModelLayout:
    """A BERT-like layout (q k v o up down per layer) built directly, without transformers."""
    shapes = {"up": (hidden, ffn), "down": (ffn, hidden)}
    roles = FAMILY_ROLES["bert"]
    sites = tuple(
        LinearSite(layer, m, f"bert.encoder.layer.{layer}.{path}", *shapes.get(m, (hidden, hidden)))
        for layer in range(layers)
        for m, path in roles.items()
    )
    return ModelLayout("bert", "bert.encoder.layer", layers, tuple(roles), sites, hidden)


@dataclass
class ClassProblem:
    """A seeded problem of a :class:`ProblemClass`: ``evaluate(point)`` -> values or None.

    Attributes:
        cls: Its class.
        seed: Its seed (importances, learning-rate optimum, range, noise stream).
        space_yaml: The search-space file it was built from.
        bound: That space bound to the synthetic layout.
        objectives: The objectives a sampler optimises (2 or 3).
        largest: The largest reachable trainable-parameter count (the budget's unit).
        lr_opt: The accuracy-optimal learning rate of each method.
    """

    cls: ProblemClass
    seed: int
    space_yaml: str
    bound: BoundSpace
    objectives: tuple[Objective, ...]
    largest: int
    lr_opt: dict[str, float]
    layer_weight: np.ndarray
    module_weight: dict[str, float]
    top_acc: dict[str, float]
    rng: np.random.Generator

    @property
    def budget(self) -> int:
        return self.bound.space.max_trainable_params

    def memory_ceiling(self) -> float:
        """The largest peak memory a feasible point can reach (the HV frame's worst edge)."""
        cells = len(self.bound.layout.sites)
        return _memory(cells, min(self.budget, self.largest), 32 if self.cls.method_choice else 0)

    def evaluate(self, point: Point) -> dict[str, float] | None:
        """Objective values of ``point``; None when it fails (see :attr:`ProblemClass.failures`).

        Reads from the problem's own noise stream: copy the problem for an independent run.
        """
        method = point.get("method", "lora")
        sizes = self.bound.method.cell_sizes(self.bound, point)
        lr = float(self.bound.value(point, "learning_rate"))
        params = self.bound.count_params(point)
        tokens = sizes.get((0, "prompt"), 0)
        memory = _memory(len(sizes) - (1 if tokens else 0), params, tokens)
        if self.cls.failures and self._fails(method, sizes, lr, memory):
            return None
        capacity = sum(
            self._weight(layer, module) * math.log1p(size * SIZE_SCALE[method])
            for (layer, module), size in sizes.items()
        )
        saturation = 1.0 - math.exp(-capacity / self.cls.layers)
        penalty = 0.25 * math.log10(lr / self.lr_opt[method]) ** 2
        acc = BASE_ACC + (self.top_acc[method] - BASE_ACC) * saturation - penalty
        values = {
            "accuracy": float(np.clip(acc + self.rng.normal(0, self.cls.noise), 0, 1)),
            "trainable_params": float(params),
            "peak_memory_mb": float(memory + self.rng.normal(0, 0.05)),
        }
        return {o.name: values[o.name] for o in self.objectives}

    def profile(self, noise: float = 0.5) -> dict[tuple[int, str], float]:
        """A stand-in for a measured sensitivity profile: every (layer, module) cell's true
        weight in the accuracy model times lognormal noise of scale ``noise`` (drawn from a
        stream of its own, so the problem's noise stream is untouched), summing to 1."""
        rng = np.random.default_rng([self.seed, 7919])
        cells = [(s.layer, s.module) for s in self.bound.layout.sites]
        raw = {c: self._weight(*c) * float(rng.lognormal(0.0, noise)) for c in cells}
        total = sum(raw.values())
        return {c: v / total for c, v in raw.items()}

    def _weight(self, layer: int, module: str) -> float:
        if module == "prompt":  # a soft prompt reaches every layer: half the layers' worth
            return 0.5 * self.cls.layers
        return float(self.layer_weight[layer]) * self.module_weight[module]

    def _fails(self, method: str, sizes: dict, lr: float, memory: float) -> bool:
        share = sum(sizes.values()) / (len(self.bound.layout.sites) * 2 ** (self.cls.rungs - 1))
        if method == "lora" and lr > 3 * self.lr_opt[method] and share > 0.2:
            return True  # diverged
        return memory > MEMORY_FLOOR + 0.7 * (self.memory_ceiling() - MEMORY_FLOOR)  # OOM


def _memory(cells: int, params: float, tokens: int) -> float:
    return MEMORY_FLOOR + 0.9 * cells + params * 16 / 2**20 + 0.5 * tokens


def make_problem(cls: ProblemClass | str, seed: int) -> ClassProblem:
    """The seeded problem ``seed`` of ``cls`` (a :class:`ProblemClass` or a name in CLASSES)."""
    if isinstance(cls, str):
        if cls not in CLASSES:
            raise KeyError(f"unknown problem class {cls!r}; classes: {', '.join(CLASSES)}")
        cls = CLASSES[cls]
    rng = np.random.default_rng([seed, *cls.name.encode()])
    layout = synthetic_layout(cls.layers)
    low = 10 ** rng.uniform(-5, -2.5)
    ranges = {"lora": (low, low * 10**cls.lr_decades)}
    if cls.method_choice:
        ranges["ia3"] = ranges["lora"]
        ranges["prompt_tuning"] = (10 * low, 10 * low * 10**cls.lr_decades)
    lr_opt = {m: lo * 10 ** rng.uniform(0, cls.lr_decades) for m, (lo, _) in ranges.items()}
    unbounded = _bind(_space_dict(cls, ranges, 10**12), layout)[1]
    largest = unbounded.count_params(_largest_point(unbounded))
    text, bound = _bind(_space_dict(cls, ranges, max(1, round(cls.budget * largest))), layout)
    layer_weight, module_weight = _importances(cls, layout, rng)
    jitter = {m: t + rng.uniform(-0.02, 0.02) for m, t in TOP_ACC.items()}
    objectives = OBJECTIVES[: cls.objectives]
    return ClassProblem(
        cls, seed, text, bound, objectives, largest, lr_opt, layer_weight, module_weight,
        jitter, np.random.default_rng([seed, 1, *cls.name.encode()]),
    )  # fmt: skip


def _space_dict(cls: ProblemClass, ranges: dict[str, tuple[float, float]], budget: int) -> dict:
    ladder = [0] + [2**i for i in range(1, cls.rungs)]
    lr = {m: {"type": "float", "low": float(f"{lo:.4g}"), "high": float(f"{hi:.4g}"), "log": True}
          for m, (lo, hi) in ranges.items()}  # fmt: skip
    targets: object = {"type": "categorical", "choices": list(cls.targets)}
    if len(cls.targets) == 1:
        targets = cls.targets[0]
    lora = {
        "target_modules": targets,
        "rank": {"type": "int", "choices": ladder, "per": "layer" if cls.method_choice else
                 ["layer", "module"]},
        "alpha_ratio": 2.0,
        "dropout": 0.0,
    }  # fmt: skip
    head = {"version": 1, "name": f"synthetic_{cls.name}", "description": cls.description}
    if not cls.method_choice:
        params = {**lora, "learning_rate": lr["lora"]}
        return {**head, "method": "lora", "max_trainable_params": budget, "parameters": params}
    methods = {
        "lora": lora,
        "ia3": {
            "target_modules": {"type": "categorical", "choices": ["ia3", "attn", "all_linear"]},
            "active": {"type": "int", "choices": [0, 1], "per": "layer"},
        },
        "prompt_tuning": {
            "num_virtual_tokens": {"type": "int", "choices": [4, 8, 16, 32]},
            "learning_rate": lr["prompt_tuning"],
        },
    }
    return {
        **head,
        "method": {"type": "categorical", "choices": list(methods)},
        "max_trainable_params": budget,
        "module_presets": {"ia3": ["k", "v", "down"]},
        "parameters": {"learning_rate": lr["lora"]},
        "methods": methods,
    }


def _bind(data: dict, layout: ModelLayout) -> tuple[str, BoundSpace]:
    """The YAML text of a space and the space it parses into, bound to ``layout``."""
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=None)
    space = SearchSpace.model_validate(yaml.safe_load(text))
    check_methods(space)
    return text, bind_space(space, layout)


def _largest_point(bound: BoundSpace) -> Point:
    """LoRA on every module of every cell at the top rung (the largest reachable count)."""
    point: Point = {}
    for dim in bound.dimensions:
        values = dim.spec.values()
        if not values:
            point[dim.name] = dim.spec.low
        elif "all_linear" in values or "lora" in values:
            point[dim.name] = "all_linear" if "all_linear" in values else "lora"
        else:
            point[dim.name] = max(values)
    if isinstance(bound, MethodChoiceSpace):
        point = bound.canonical(point)
    return point


def _importances(
    cls: ProblemClass, layout: ModelLayout, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, float]]:
    """Layer weights (mean 1) and module weights of ``cls.importance``."""
    n = layout.num_layers
    depth = np.arange(n) / max(1, n - 1)
    modules = rng.uniform(0.2, 1.5, len(layout.modules))
    if cls.importance == "early":
        layers = np.exp(-3 * depth) * rng.lognormal(0, 0.2, n)
    elif cls.importance == "late":
        layers = np.exp(-3 * (1 - depth)) * rng.lognormal(0, 0.2, n)
    elif cls.importance == "flat":
        layers, modules = rng.lognormal(0, 0.05, n), np.ones(len(layout.modules))
    elif cls.importance == "sparse":
        layers = np.full(n, 0.02)
        layers[rng.choice(n, max(1, n // 6), replace=False)] = 1.0
        modules = np.full(len(layout.modules), 0.05)
        modules[rng.choice(len(modules), 2, replace=False)] = 1.5
    else:
        layers = rng.dirichlet(np.full(n, 0.7))
    return layers / layers.mean(), dict(zip(layout.modules, map(float, modules), strict=True))
