"""The method as a searched dimension: schema errors, the union of namespaced dimensions,
canonical inactive dimensions, dispatch, and every sampler proposing several methods within the
budget."""

from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path

import pytest

from autopeft.core.objectives import Objective
from autopeft.exceptions import SearchSpaceError
from autopeft.methods.binding import bind_space, load_space
from autopeft.methods.choice import MethodChoiceSpace
from autopeft.models.layout import ModelLayout
from autopeft.search.samplers import make_sampler
from autopeft.search.samplers.base import Observation
from autopeft.search.samplers.encoding import DesignEncoder
from tests.conftest import tiny_bert_layout

ZOO = """\
version: 1
name: zoo
method: {type: categorical, choices: [lora, ia3, serial_adapter, prefix_tuning, ln_tuning]}
max_trainable_params: 3000
parameters:
  learning_rate: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}
methods:
  lora:
    target_modules: {type: categorical, choices: [qv, attn]}
    rank: {type: int, choices: [0, 1, 2, 4], per: [layer, module]}
  ia3:
    target_modules: all_linear
    active: {type: int, choices: [0, 1], per: layer}
  serial_adapter:
    size: {type: int, choices: [0, 2, 4, 8], per: layer}
  prefix_tuning:
    num_virtual_tokens: {type: int, low: 1, high: 8}
"""
OBJECTIVES = [Objective("accuracy", "maximize"), Objective("trainable_params", "minimize")]


def layout() -> ModelLayout:
    return tiny_bert_layout()


def zoo(tmp_path: Path, text: str = ZOO) -> MethodChoiceSpace:
    path = tmp_path / "zoo.yaml"
    path.write_text(text)
    bound = bind_space(load_space(path), layout(), path)
    assert isinstance(bound, MethodChoiceSpace)
    return bound


def test_dimensions_are_the_namespaced_union(tmp_path: Path) -> None:
    names = [d.name for d in zoo(tmp_path).dimensions]
    assert names[:2] == ["method", "learning_rate"]
    assert "lora.rank.1.o" in names and "lora.target_modules" in names
    assert [n for n in names if n.startswith("ia3.")] == ["ia3.active.0", "ia3.active.1"]
    assert "serial_adapter.size.1" in names and "prefix_tuning.num_virtual_tokens" in names
    assert not any(n.startswith("ln_tuning.") for n in names)  # no own parameters
    assert len(names) == len(set(names))


def test_dispatch_and_canonical_inactive_dimensions(tmp_path: Path) -> None:
    bound = zoo(tmp_path)
    point = {d.name: d.spec.values()[-1] if d.spec.values() else 5e-3 for d in bound.dimensions}
    point["method"] = "serial_adapter"
    point["serial_adapter.size.0"], point["serial_adapter.size.1"] = 2, 0
    compiled = bound.compile(point)
    assert compiled.method == "serial_adapter"
    assert compiled.trainable_params == 2 * 32 * 2 + 2 + 32 == bound.count_params(point)
    assert compiled.training == {"learning_rate": 5e-3}
    canon = bound.canonical(point)
    # the chosen method's dimensions and the shared ones are kept, every other one is fixed
    assert {k: canon[k] for k in ("serial_adapter.size.0", "serial_adapter.size.1")} == {
        "serial_adapter.size.0": 2,
        "serial_adapter.size.1": 0,
    }
    assert canon["learning_rate"] == 5e-3
    assert canon["lora.rank.0.q"] == 0 and canon["lora.target_modules"] == "qv"
    assert canon["prefix_tuning.num_virtual_tokens"] == 1 and canon["ia3.active.1"] == 0
    other = dict(point, **{"lora.rank.0.q": 1, "ia3.active.0": 0})
    encoder = DesignEncoder(bound)
    assert encoder.encode([point]).tolist() == encoder.encode([other]).tolist()
    # and an active method's unused dimensions go through that method's canonical form
    lora = dict(point, method="lora", **{"lora.target_modules": "qv", "lora.rank.0.k": 4})
    assert bound.canonical(lora)["lora.rank.0.k"] == 0


def test_over_budget_and_unknown_method(tmp_path: Path) -> None:
    bound = zoo(tmp_path)
    point = {d.name: d.spec.values()[-1] if d.spec.values() else 5e-3 for d in bound.dimensions}
    point["method"] = "serial_adapter"  # 2 layers x size 8: 2 * 568 > ... fits? check exactly
    assert bound.count_params(point) == 2 * (2 * 32 * 8 + 8 + 32)
    point["method"] = "lora"  # every cell at rank 4 on attn: 8 * 4 * 64 = 2048
    point["lora.target_modules"] = "attn"
    assert bound.count_params(point) == 8 * 4 * 64
    point["method"] = "prefix_tuning"  # 8 tokens x 2 layers x 2 x 32 = 1024
    assert bound.is_feasible(point)
    with pytest.raises(SearchSpaceError, match=r"method='dora' is outside .*expected one of"):
        bound.compile(dict(point, method="dora"))


BAD = [
    (
        ZOO.replace("ia3, serial", "dora, serial"),
        3,
        "method.choices.1",
        "unknown method 'dora'",
    ),
    (ZOO + "  vera: {rank: 4}\n", 18, "methods.vera", "is not a method choice"),
    (
        ZOO.replace("    num_virtual_tokens: {type: int, low: 1, high: 8}", "    rank: 4"),
        17,
        "methods.prefix_tuning.rank",
        r"\(prefix_tuning\) unknown parameter",
    ),
    (
        ZOO.replace("  prefix_tuning:\n    num_virtual_tokens: {type: int, low: 1, high: 8}\n", ""),
        8,
        "methods.prefix_tuning",
        r"\(prefix_tuning\) method 'prefix_tuning' needs a `num_virtual_tokens` parameter",
    ),
    (
        ZOO.replace("{type: categorical, choices: [lora,", "{type: int, choices: [lora,"),
        3,
        "method",
        r"^Input should be a valid string",
    ),
]


@pytest.mark.parametrize(("text", "line", "key", "message"), BAD)
def test_bad_choice_spaces_are_located(
    text: str, line: int, key: str, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "zoo.yaml"
    path.write_text(text)
    with pytest.raises(SearchSpaceError) as info:
        load_space(path)
    where = f"{path}:{line}: {key}: "
    assert str(info.value).startswith(where), str(info.value)
    assert re.search(message, str(info.value).removeprefix(where)), str(info.value)


def test_a_method_block_can_override_a_shared_parameter(tmp_path: Path) -> None:
    text = ZOO.replace(
        "  serial_adapter:\n",
        "  serial_adapter:\n    learning_rate: {type: float, low: 0.1, high: 0.3}\n",
    )
    bound = zoo(tmp_path, text)
    names = [d.name for d in bound.dimensions]
    assert "learning_rate" in names and "serial_adapter.learning_rate" in names
    point = {d.name: d.spec.values()[-1] if d.spec.values() else 0.2 for d in bound.dimensions}
    point.update({"method": "serial_adapter", "learning_rate": 5e-3})
    assert bound.compile(point).training == {"learning_rate": 0.2}
    assert bound.canonical(point)["learning_rate"] == 1e-3  # inactive for this method
    assert bound.compile(dict(point, method="ln_tuning")).training == {"learning_rate": 5e-3}


def test_methods_block_needs_a_searched_method(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "version: 1\nname: s\nmethod: lora\nmax_trainable_params: 100\n"
        "parameters: {rank: 2}\nmethods:\n  lora: {dropout: 0.0}\n"
    )
    with pytest.raises(SearchSpaceError, match=rf"^{re.escape(str(path))}:7: methods: per-method"):
        load_space(path)


SAMPLER_OPTIONS = {"mobo": {"n_initial": 4, "raw_samples": 32, "num_restarts": 2}}


@pytest.mark.parametrize("name", ["random", "sobol", "tpe", "nsga2", "gp", "mobo"])
def test_every_sampler_proposes_several_methods_within_budget(name: str, tmp_path: Path) -> None:
    bound = zoo(tmp_path)
    sampler = make_sampler(name, bound, OBJECTIVES, 0, SAMPLER_OPTIONS.get(name, {}))
    rng = random.Random(0)
    history: list[Observation] = []
    methods: Counter[str] = Counter()
    for _ in range(7):
        (point,) = sampler.propose(history, 1)
        compiled = bound.compile(point)  # raises if infeasible or over budget
        assert compiled.trainable_params <= bound.space.max_trainable_params
        methods[compiled.method] += 1
        values = {"accuracy": rng.random(), "trainable_params": float(compiled.trainable_params)}
        history.append(Observation(point, "COMPLETE", values))
    assert len(methods) >= 2, methods


@pytest.mark.parametrize("name", ["peft_zoo", "autopeft_sappa"])
def test_shipped_spaces_load_bind_and_compile(name: str) -> None:
    path = Path(__file__).parent.parent / "search_spaces" / f"{name}.yaml"
    bound = bind_space(load_space(path), layout(), path)
    sampler = make_sampler("random", bound, OBJECTIVES, 0, {})
    methods = {bound.compile(p).method for p in sampler.propose([], 12)}
    assert methods <= set(bound.space.method_choices())
    assert len(methods) >= (3 if name == "peft_zoo" else 1)
