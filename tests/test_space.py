"""Tests of autopeft.space: the search-space file schema, its errors, binding and encoding."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from autopeft.exceptions import SearchSpaceError
from autopeft.methods.binding import bind_space, load_space
from autopeft.models.layout import ModelLayout, layout_on_meta
from autopeft.space.bound import BoundSpace
from autopeft.space.encode import distribution, from_unit, sample, to_unit
from autopeft.space.schema import ParamSpec, SearchSpace

# Line numbers below refer to this text: rank is on line 7, learning_rate on line 9.
SPACE = """\
version: 1
name: lora_layerwise
method: lora
max_trainable_params: 150000
parameters:
  target_modules: {type: categorical, choices: [qv, attn, all_linear]}
  rank: {type: int, choices: [0, 2, 4, 8], per: [layer, module]}
  dropout: 0.0
  learning_rate: {type: float, low: 1.0e-4, high: 3.0e-3, log: true}
"""

HEADER = "version: 1\nname: t\nmethod: lora\nmax_trainable_params: {budget}\n"

TINY = dict(
    vocab_size=64,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
)

BERT_MODULES = ("q", "k", "v", "o", "up", "down")
LLAMA_MODULES = ("q", "k", "v", "o", "gate", "up", "down")


def write(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def params_file(tmp_path: Path, params: str, budget: int = 150000, extra: str = "") -> Path:
    """A space file with the standard header, ``extra`` top-level keys and ``params``."""
    return write(tmp_path, HEADER.format(budget=budget) + extra + "parameters:\n" + params)


def located(path: Path, line: int, key: str) -> str:
    """The regex prefix of a located error: ``<file>:<line>: <key path>:``."""
    return rf"^{re.escape(str(path))}:{line}: {re.escape(key)}: "


@pytest.fixture(scope="module")
def layouts() -> dict[str, ModelLayout]:
    import transformers

    bert = transformers.BertConfig(**TINY)
    llama = transformers.LlamaConfig(**TINY, num_key_value_heads=1, pad_token_id=0)
    return {"bert": layout_on_meta(bert, 2), "llama": layout_on_meta(llama, 2)}


# ---------------------------------------------------------------------------------------------
# Loading a valid file
# ---------------------------------------------------------------------------------------------


def test_valid_space_loads(tmp_path: Path) -> None:
    space = load_space(write(tmp_path, SPACE))
    assert isinstance(space, SearchSpace)
    assert (space.name, space.method, space.max_trainable_params) == (
        "lora_layerwise",
        "lora",
        150000,
    )
    assert space.constants() == {"dropout": 0.0}
    searched = space.searched()
    assert set(searched) == {"target_modules", "rank", "learning_rate"}
    assert all(isinstance(spec, ParamSpec) for spec in searched.values())

    rank = searched["rank"]
    assert rank.type == "int"
    assert rank.choices == (0, 2, 4, 8)
    assert rank.per == "cell"  # [layer, module] normalises to "cell"
    assert rank.values() == (0, 2, 4, 8)

    targets = searched["target_modules"]
    assert (targets.type, targets.per, targets.choices) == (
        "categorical",
        "study",
        ("qv", "attn", "all_linear"),
    )
    lr = searched["learning_rate"]
    assert (lr.type, lr.low, lr.high, lr.log, lr.values()) == ("float", 1e-4, 3e-3, True, None)


@pytest.mark.parametrize(
    ("per", "expected"),
    [("[layer, module]", "cell"), ("[layer]", "layer"), ("layer", "layer"), ("study", "study")],
)
def test_per_normalises(tmp_path: Path, per: str, expected: str) -> None:
    path = params_file(tmp_path, f"  rank: {{type: int, low: 0, high: 4, per: {per}}}\n")
    assert load_space(path).parameters["rank"].per == expected


def test_int_range_bounds_are_inclusive() -> None:
    spec = ParamSpec(type="int", low=0, high=8)
    assert spec.values() == tuple(range(9))
    assert spec.contains(0) and spec.contains(8)
    assert not spec.contains(9) and not spec.contains(-1)
    stepped = ParamSpec(type="int", low=0, high=8, step=4)
    assert stepped.values() == (0, 4, 8)
    assert not stepped.contains(2)


def test_constant_list_of_module_types_loads(tmp_path: Path) -> None:
    path = params_file(tmp_path, "  target_modules: [q, v]\n  rank: 4\n")
    space = load_space(path)
    assert space.constants() == {"target_modules": ("q", "v"), "rank": 4}
    assert space.searched() == {}


# ---------------------------------------------------------------------------------------------
# Bad files: every error names file, line, key path and the rule or value
# ---------------------------------------------------------------------------------------------


def test_malformed_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, SPACE.replace("choices: [0, 2, 4, 8]", "choices: [0, 2, 4, 8}"))
    with pytest.raises(SearchSpaceError, match=rf"^{re.escape(str(path))}:7: malformed YAML: "):
        load_space(path)


def test_unknown_top_level_key_lists_allowed_keys(tmp_path: Path) -> None:
    path = write(tmp_path, SPACE + "bogus: 1\n")
    allowed = (
        "allocation, description, max_trainable_params, method, methods, module_presets, name, "
        "parameters, version"
    )
    with pytest.raises(SearchSpaceError, match=re.escape(str(path))) as info:
        load_space(path)
    message = str(info.value)
    assert "unknown key 'bogus'" in message
    assert f"allowed keys: {allowed}" in message
    assert re.match(rf"{re.escape(str(path))}:\d+: ", message)


def test_unknown_top_level_key_points_at_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, SPACE + "bogus: 1\n")  # line 10
    with pytest.raises(SearchSpaceError, match=located(path, 10, "bogus")):
        load_space(path)


def test_unknown_key_inside_a_parameter(tmp_path: Path) -> None:
    path = write(tmp_path, SPACE.replace("per: [layer, module]}", "per: [layer, module], lo: 1}"))
    with pytest.raises(
        SearchSpaceError,
        match=located(path, 7, "parameters.rank.lo")
        + r"unknown key 'lo'; allowed keys: choices, high, log, low, per, step, type",
    ):
        load_space(path)


def test_unknown_method_lists_known_methods(tmp_path: Path) -> None:
    path = write(tmp_path, SPACE.replace("method: lora", "method: nope"))
    with pytest.raises(
        SearchSpaceError,
        match=located(path, 3, "method") + r"unknown method 'nope'; known methods: .*\blora\b.*"
        r"\(got 'nope'\)$",
    ):
        load_space(path)


@pytest.mark.parametrize(
    ("rank", "got"),
    [
        ("{type: int, choices: [-1, 2, 4], per: [layer, module]}", "-1"),
        ("{type: int, low: -2, high: 8}", "-2"),
        ("-3", "-3"),
        ("{type: int, low: 0, high: 5000}", "5000"),
    ],
    ids=["choices", "range", "constant", "too-high"],
)
def test_rank_out_of_range(tmp_path: Path, rank: str, got: str) -> None:
    path = params_file(tmp_path, f"  rank: {rank}\n")
    with pytest.raises(
        SearchSpaceError,
        match=located(path, 6, "parameters.rank")
        + rf"rank values must be >= 0 and <= 4096 \(integers\) \(got {got}\)$",
    ):
        load_space(path)


def test_low_above_high(tmp_path: Path) -> None:
    path = write(tmp_path, SPACE.replace("low: 1.0e-4, high: 3.0e-3", "low: 1.0e-2, high: 1.0e-3"))
    with pytest.raises(
        SearchSpaceError,
        match=located(path, 9, "parameters.learning_rate")
        + r"`low <= high` must hold, but got low=0.01, high=0.001",
    ):
        load_space(path)


def test_int_choices_must_be_sorted(tmp_path: Path) -> None:
    path = write(tmp_path, SPACE.replace("choices: [0, 2, 4, 8]", "choices: [0, 4, 2, 8]"))
    with pytest.raises(
        SearchSpaceError,
        match=located(path, 7, "parameters.rank")
        + re.escape("int choices are an ordered ladder: sort them, got [0, 4, 2, 8]"),
    ):
        load_space(path)


@pytest.mark.parametrize(
    ("rank", "rule"),
    [
        ("{type: int, choices: [0, 2, 2]}", "`choices` must be unique, got [0, 2, 2]"),
        ("{type: int, choices: [0, 2.5]}", "type int needs integer choices, got [0, 2.5]"),
        ("{type: int, low: 0.5, high: 8}", "type int needs integer bounds, got low=0.5, high=8"),
        ("{type: int}", "type int needs `low` and `high` (or `choices`)"),
        ("{type: int, choices: [0, 2], low: 0}", "give either `choices` or `low`/`high`"),
        ("{type: int, low: 1, high: 8, step: 2, log: true}", "log scale and step > 1"),
        ("{type: categorical, choices: []}", "type categorical needs a non-empty `choices`"),
    ],
)
def test_schema_rules(tmp_path: Path, rank: str, rule: str) -> None:
    path = params_file(tmp_path, f"  rank: {rank}\n")
    with pytest.raises(
        SearchSpaceError, match=located(path, 6, "parameters.rank") + re.escape(rule)
    ):
        load_space(path)


def test_log_scale_needs_positive_low(tmp_path: Path) -> None:
    path = params_file(
        tmp_path, "  rank: 4\n  learning_rate: {type: float, low: 0, high: 1, log: true}\n"
    )
    with pytest.raises(
        SearchSpaceError,
        match=located(path, 7, "parameters.learning_rate") + "log scale needs low > 0, got low=0",
    ):
        load_space(path)


def test_unknown_parameter_for_lora_lists_allowed(tmp_path: Path) -> None:
    path = write(tmp_path, SPACE + "  foo: 3\n")
    with pytest.raises(
        SearchSpaceError,
        match=located(path, 10, "parameters.foo")
        + re.escape(
            "unknown parameter for method 'lora'; allowed: alpha, alpha_ratio, dropout, "
            "gradient_checkpointing, learning_rate, rank, target_modules"
        ),
    ):
        load_space(path)


@pytest.mark.parametrize(
    ("param", "spec", "per"),
    [
        ("dropout", "{type: float, low: 0.0, high: 0.2, per: layer}", "layer"),
        ("alpha", "{type: int, choices: [4, 8], per: [layer, module]}", "cell"),
        ("learning_rate", "{type: float, low: 0.001, high: 0.01, per: layer}", "layer"),
        ("target_modules", "{type: categorical, choices: [qv, attn], per: layer}", "layer"),
    ],
)
def test_per_on_a_parameter_that_cannot_vary(
    tmp_path: Path, param: str, spec: str, per: str
) -> None:
    path = params_file(tmp_path, f"  rank: 4\n  {param}: {spec}\n")
    with pytest.raises(
        SearchSpaceError,
        match=located(path, 7, f"parameters.{param}.per")
        + rf"{param} cannot vary per {per} \(got '{per}'\)$",
    ):
        load_space(path)


@pytest.mark.parametrize("per", ["module", "[module, layer]", "[layer, module, layer]"])
def test_per_module_alone_is_rejected(tmp_path: Path, per: str) -> None:
    path = params_file(tmp_path, f"  rank: {{type: int, low: 0, high: 4, per: {per}}}\n")
    with pytest.raises(
        SearchSpaceError,
        match=located(path, 6, "parameters.rank.per") + r"must be 'layer' or \[layer, module\]",
    ):
        load_space(path)


def test_alpha_and_alpha_ratio_both(tmp_path: Path) -> None:
    path = write(tmp_path, SPACE + "  alpha: 8\n  alpha_ratio: 2\n")
    with pytest.raises(
        SearchSpaceError,
        match=located(path, 11, "parameters.alpha_ratio")
        + "give `alpha` or `alpha_ratio`, not both",
    ):
        load_space(path)


@pytest.mark.parametrize(
    ("param", "rule", "got"),
    [
        ("alpha_ratio: 0", "alpha_ratio values must be > 0 (numbers)", "0"),
        ("dropout: 1.0", "dropout values must be >= 0 and < 1 (numbers)", "1.0"),
        ("alpha: -1", "alpha values must be >= 0 (numbers)", "-1"),
        ("learning_rate: 0", "learning_rate values must be > 0 (numbers)", "0"),
    ],
)
def test_lora_value_rules(tmp_path: Path, param: str, rule: str, got: str) -> None:
    path = params_file(tmp_path, f"  rank: 4\n  {param}\n")
    name = param.split(":")[0]
    with pytest.raises(
        SearchSpaceError,
        match=located(path, 7, f"parameters.{name}") + re.escape(f"{rule} (got {got})") + "$",
    ):
        load_space(path)


def test_rank_is_required(tmp_path: Path) -> None:
    path = params_file(tmp_path, "  dropout: 0.0\n")
    with pytest.raises(
        SearchSpaceError, match=located(path, 6, "parameters") + "method 'lora' needs a `rank`"
    ):
        load_space(path)


def test_float_rank_is_rejected_at_load(tmp_path: Path) -> None:
    path = params_file(tmp_path, "  rank: {type: float, low: 0, high: 8, per: [layer, module]}\n")
    with pytest.raises(
        SearchSpaceError, match=located(path, 6, "parameters.rank.type") + "rank must be type int"
    ):
        load_space(path)


@pytest.mark.parametrize(
    ("top", "rule"),
    [
        ("version: 2", "version: Input should be 1"),
        ("max_trainable_params: 0", "max_trainable_params: Input should be greater than 0"),
        ("name: ''", "name: String should have at least 1 character"),
    ],
)
def test_top_level_rules(tmp_path: Path, top: str, rule: str) -> None:
    key = top.split(":")[0]
    text = {line.split(":")[0]: line for line in HEADER.format(budget=1000).splitlines()}
    text[key] = top
    path = write(tmp_path, "\n".join(text.values()) + "\nparameters:\n  rank: 4\n")
    line = list(text).index(key) + 1
    with pytest.raises(SearchSpaceError, match=rf"^{re.escape(str(path))}:{line}: {rule}"):
        load_space(path)


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "list"), ("", "nothing")])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, kind: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(
        SearchSpaceError,
        match=rf"^{re.escape(str(path))}: expected a mapping of keys at the top level, got {kind}",
    ):
        load_space(path)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "space.yaml"
    with pytest.raises(SearchSpaceError, match=rf"^{re.escape(str(path))}: file not found$"):
        load_space(path)


# ---------------------------------------------------------------------------------------------
# Binding to a model layout
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("family", "modules"), [("bert", BERT_MODULES), ("llama", LLAMA_MODULES)])
def test_same_space_binds_on_both_families(
    tmp_path: Path, layouts: dict[str, ModelLayout], family: str, modules: tuple[str, ...]
) -> None:
    path = write(tmp_path, SPACE)
    bound = bind_space(load_space(path), layouts[family], path)
    assert isinstance(bound, BoundSpace)
    assert bound.modules == modules  # union of qv, attn, all_linear = every module, model order
    cells = [f"rank.{layer}.{m}" for layer in range(2) for m in modules]
    assert [d.name for d in bound.dimensions] == [
        "target_modules",
        *cells,
        "learning_rate",
    ]
    rank_dims = [d for d in bound.dimensions if d.param == "rank"]
    assert [(d.layer, d.module) for d in rank_dims] == [(i, m) for i in range(2) for m in modules]
    assert bound.searched_cells == tuple((i, m) for i in range(2) for m in modules)
    point = {d.name: d.spec.values()[0] if d.spec.values() else 1e-3 for d in bound.dimensions}
    point["target_modules"] = "qv"
    assert bound.target_modules(point) == ("q", "v")
    point["target_modules"] = "attn"
    assert bound.target_modules(point) == ("q", "k", "v", "o")
    point["target_modules"] = "all_linear"
    assert bound.target_modules(point) == modules


@pytest.mark.parametrize(("family", "expected"), [("bert", 2), ("llama", 2)])
def test_per_layer_dimensions(
    tmp_path: Path, layouts: dict[str, ModelLayout], family: str, expected: int
) -> None:
    path = params_file(tmp_path, "  rank: {type: int, choices: [0, 2, 4], per: layer}\n")
    bound = bind_space(load_space(path), layouts[family])
    assert [d.name for d in bound.dimensions] == [f"rank.{i}" for i in range(expected)]
    assert [d.layer for d in bound.dimensions] == list(range(expected))


@pytest.mark.parametrize(
    ("family", "preset", "modules"),
    [
        ("bert", "qv", ("q", "v")),
        ("bert", "mlp", ("up", "down")),  # BERT has no gate: dropped
        ("llama", "mlp", ("gate", "up", "down")),
        ("llama", "qkv", ("q", "k", "v")),
    ],
)
def test_constant_preset_restricts_cells(
    tmp_path: Path, layouts: dict[str, ModelLayout], family: str, preset: str, modules: tuple
) -> None:
    path = params_file(
        tmp_path,
        f"  target_modules: {preset}\n"
        "  rank: {type: int, choices: [0, 2], per: [layer, module]}\n",
    )
    bound = bind_space(load_space(path), layouts[family])
    assert bound.modules == modules
    assert [d.name for d in bound.dimensions] == [
        f"rank.{i}.{m}" for i in range(2) for m in modules
    ]


def test_custom_module_preset(tmp_path: Path, layouts: dict[str, ModelLayout]) -> None:
    path = params_file(
        tmp_path,
        "  target_modules: {type: categorical, choices: [ko, qv]}\n"
        "  rank: {type: int, choices: [0, 2], per: [layer, module]}\n",
        extra="module_presets: {ko: [k, o]}\n",
    )
    bound = bind_space(load_space(path), layouts["llama"])
    assert bound.modules == ("q", "k", "v", "o")
    assert bound.target_modules({"target_modules": "ko"}) == ("k", "o")


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_unknown_preset_lists_presets(
    tmp_path: Path, layouts: dict[str, ModelLayout], family: str
) -> None:
    path = params_file(
        tmp_path, "  target_modules: {type: categorical, choices: [qv, nope]}\n  rank: 4\n"
    )
    with pytest.raises(
        SearchSpaceError,
        match=rf"^{re.escape(str(path))}: parameters\.target_modules: unknown module preset; "
        r"presets: all_linear, attn, mlp, qkv, qv \(got 'nope'\)$",
    ):
        bind_space(load_space(path), layouts[family], path)


@pytest.mark.parametrize(
    ("family", "types"),
    [("bert", "q, k, v, o, up, down"), ("llama", "q, k, v, o, gate, up, down")],
)
def test_unknown_module_type_names_the_model_types(
    tmp_path: Path, layouts: dict[str, ModelLayout], family: str, types: str
) -> None:
    path = params_file(tmp_path, "  target_modules: [q, zz]\n  rank: 4\n")
    with pytest.raises(
        SearchSpaceError,
        match=r"parameters\.target_modules: "
        + re.escape(f"module type 'zz' is not in this model; its module types are {types}")
        + re.escape(" (got ['q', 'zz'])"),
    ):
        bind_space(load_space(path), layouts[family], path)


def test_bert_has_no_gate(tmp_path: Path, layouts: dict[str, ModelLayout]) -> None:
    path = params_file(tmp_path, "  target_modules: [gate]\n  rank: 4\n")
    space = load_space(path)
    assert bind_space(space, layouts["llama"]).modules == ("gate",)
    # gate is a known module type (Llama's), so BERT drops it: nothing is left to target
    with pytest.raises(SearchSpaceError, match="preset matches no module of this model"):
        bind_space(space, layouts["bert"])


@pytest.mark.parametrize(
    ("family", "smallest"),
    # one rank-2 adapter on the smallest leaf: BERT q (32+32); Llama k (32+16)
    [("bert", 2 * 64), ("llama", 2 * 48)],
)
def test_budget_below_smallest_configuration(
    tmp_path: Path, layouts: dict[str, ModelLayout], family: str, smallest: int
) -> None:
    rank = "  rank: {type: int, choices: [0, 2, 4], per: [layer, module]}\n"
    space = load_space(params_file(tmp_path, rank, budget=smallest - 1))
    with pytest.raises(
        SearchSpaceError,
        match=r"max_trainable_params: is below the smallest configuration of this model "
        + rf"\({smallest:,} parameters\) \(got {smallest - 1}\)$",
    ):
        bind_space(space, layouts[family], "space.yaml")
    at_limit = load_space(params_file(tmp_path, rank, budget=smallest))
    bound = bind_space(at_limit, layouts[family])
    point = {d.name: 0 for d in bound.dimensions}
    cell = min(bound.layout.sites, key=lambda s: s.in_features + s.out_features)
    point[f"rank.{cell.layer}.{cell.module}"] = 2
    assert bound.count_params(point) == smallest
    assert bound.is_feasible(point)


def test_rank_that_allows_no_adapter(tmp_path: Path, layouts: dict[str, ModelLayout]) -> None:
    space = load_space(params_file(tmp_path, "  rank: 0\n"))
    with pytest.raises(SearchSpaceError, match=r"parameters\.rank: allows no rank above 0"):
        bind_space(space, layouts["bert"])


def test_budget_check_with_a_shared_rank(tmp_path: Path, layouts: dict[str, ModelLayout]) -> None:
    # one rank shared by every cell: the smallest configuration with an adapter is rank 4 on q
    # and v of both layers = 4 * 4 * (32 + 32) = 1024 parameters
    params = "  target_modules: qv\n  rank: {type: int, choices: [0, 4]}\n"
    with pytest.raises(
        SearchSpaceError,
        match=r"^search space 't': max_trainable_params: is below the smallest configuration "
        + r"of this model \(1,024 parameters\) \(got 1023\)$",
    ):
        bind_space(load_space(params_file(tmp_path, params, 1023)), layouts["bert"])
    bound = bind_space(load_space(params_file(tmp_path, params, 1024)), layouts["bert"])
    assert [d.name for d in bound.dimensions] == ["rank"]
    assert bound.count_params({"rank": 4}) == 1024
    assert bound.is_feasible({"rank": 4})  # the only point with an adapter, exactly at budget
    assert not bound.is_feasible({"rank": 0})  # no adapter


def test_rank_larger_than_a_leaf_is_caught(tmp_path: Path, layouts: dict[str, ModelLayout]) -> None:
    # every leaf of the tiny BERT has min(in, out) = 32: rank 64 is rejected when binding, at
    # the first searched cell, whatever the budget
    too_large = "  rank: {type: int, choices: [0, 64], per: [layer, module]}\n"
    with pytest.raises(
        SearchSpaceError,
        match=r"^space\.yaml: parameters\.rank: rank 64 exceeds the smaller dimension of "
        + r"bert\.encoder\.layer\.0\.attention\.self\.query \(32 -> 32\); "
        + r"use ranks <= 32 \(got 64\)$",
    ):
        bind_space(
            load_space(params_file(tmp_path, too_large, 10**7)), layouts["bert"], "space.yaml"
        )
    # the largest rank that fits binds, and a point using it compiles
    fits = "  rank: {type: int, choices: [0, 32], per: [layer, module]}\n"
    bound = bind_space(load_space(params_file(tmp_path, fits, 10**7)), layouts["bert"])
    point = {d.name: 0 for d in bound.dimensions}
    point["rank.0.q"] = 32
    assert bound.count_params(point) == 32 * (32 + 32)
    compiled = bound.compile(point)
    assert compiled.module_sizes == {"bert.encoder.layer.0.attention.self.query": 32}
    assert compiled.trainable_params == 32 * (32 + 32)


# ---------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------

CHOICES = ParamSpec(type="categorical", choices=("qv", "attn", "all_linear"))
INT_LADDER = ParamSpec(type="int", choices=(0, 2, 4, 8, 16))
INT_RANGE = ParamSpec(type="int", low=1, high=9)
INT_STEP = ParamSpec(type="int", low=0, high=12, step=4)
INT_LOG = ParamSpec(type="int", low=1, high=64, log=True)
FLOAT_LIN = ParamSpec(type="float", low=0.0, high=0.5)
FLOAT_LOG = ParamSpec(type="float", low=1e-4, high=1e-1, log=True)


@pytest.mark.parametrize(
    "spec",
    [CHOICES, INT_LADDER, INT_RANGE, INT_STEP, INT_LOG],
    ids=["choices", "ladder", "range", "step", "log-int"],
)
def test_finite_round_trip(spec: ParamSpec) -> None:
    values = spec.values()
    assert values
    for value in values:
        u = to_unit(spec, value)
        assert 0.0 <= u <= 1.0
        decoded = from_unit(spec, u)
        assert decoded == value and type(decoded) is type(value)


def test_bin_centres_and_edges() -> None:
    assert [to_unit(CHOICES, v) for v in CHOICES.choices] == pytest.approx([1 / 6, 3 / 6, 5 / 6])
    assert from_unit(CHOICES, 0.0) == "qv"
    assert from_unit(CHOICES, 1.0) == "all_linear"
    assert from_unit(CHOICES, 1 / 3 - 1e-9) == "qv"
    assert from_unit(CHOICES, 1 / 3) == "attn"
    assert from_unit(CHOICES, -3.0) == "qv" and from_unit(CHOICES, 7.0) == "all_linear"


@pytest.mark.parametrize("spec", [FLOAT_LIN, FLOAT_LOG], ids=["linear", "log"])
def test_float_round_trip(spec: ParamSpec) -> None:
    assert from_unit(spec, 0.0) == pytest.approx(spec.low)
    assert from_unit(spec, 1.0) == pytest.approx(spec.high)
    for u in (0.0, 0.1, 0.37, 0.5, 0.99, 1.0):
        value = from_unit(spec, u)
        assert spec.low <= value <= spec.high
        assert to_unit(spec, value) == pytest.approx(u, abs=1e-12)
    for value in (spec.low, spec.high, (spec.low + spec.high) / 2):
        assert from_unit(spec, to_unit(spec, value)) == pytest.approx(value, rel=1e-12)


def test_log_float_midpoint_is_geometric() -> None:
    assert from_unit(FLOAT_LOG, 0.5) == pytest.approx(math.sqrt(1e-4 * 1e-1))
    assert from_unit(FLOAT_LIN, 0.5) == pytest.approx(0.25)


def test_uniform_draws_hit_every_value() -> None:
    rng = np.random.default_rng(0)
    for spec in (CHOICES, INT_LADDER, INT_RANGE):
        values = spec.values()
        draws = [sample(spec, rng) for _ in range(600)]
        counts = {v: draws.count(v) for v in values}
        assert set(draws) == set(values)
        expected = 600 / len(values)
        assert all(abs(c - expected) < 0.4 * expected for c in counts.values()), counts


def test_uniform_unit_draws_are_uniform_over_values() -> None:
    """``u`` uniform on [0, 1] puts exactly equal mass on every value (bin centres)."""
    u = (np.arange(1000) + 0.5) / 1000
    draws = [from_unit(INT_LADDER, x) for x in u]
    assert [draws.count(v) for v in INT_LADDER.choices] == [200] * 5


def test_log_float_draws_stay_in_range_and_spread() -> None:
    rng = np.random.default_rng(1)
    draws = np.array([sample(FLOAT_LOG, rng) for _ in range(400)])
    assert draws.min() >= 1e-4 and draws.max() <= 1e-1
    # log-uniform: about a third of the draws in each decade
    decades = np.histogram(np.log10(draws), bins=[-4, -3, -2, -1])[0]
    assert all(80 < d < 190 for d in decades), decades


def test_distributions() -> None:
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    cat = distribution(CHOICES)
    assert isinstance(cat, CategoricalDistribution)
    assert cat.choices == ("qv", "attn", "all_linear")
    ladder = distribution(INT_LADDER)
    assert isinstance(ladder, CategoricalDistribution)
    assert ladder.choices == (0, 2, 4, 8, 16)

    rng = distribution(INT_STEP)
    assert isinstance(rng, IntDistribution)
    assert (rng.low, rng.high, rng.step, rng.log) == (0, 12, 4, False)
    log_int = distribution(INT_LOG)
    assert isinstance(log_int, IntDistribution)
    assert (log_int.low, log_int.high, log_int.log) == (1, 64, True)

    lin = distribution(FLOAT_LIN)
    assert isinstance(lin, FloatDistribution) and not lin.log
    assert (lin.low, lin.high) == (0.0, 0.5)
    log = distribution(FLOAT_LOG)
    assert isinstance(log, FloatDistribution) and log.log
    assert (log.low, log.high) == (1e-4, 1e-1)


# ---------------------------------------------------------------------------------------------
# check_point
# ---------------------------------------------------------------------------------------------


@pytest.fixture()
def bound(tmp_path: Path, layouts: dict[str, ModelLayout]) -> BoundSpace:
    path = write(tmp_path, SPACE)
    return bind_space(load_space(path), layouts["bert"], path)


def _point(bound: BoundSpace) -> dict:
    point = {d.name: 2 for d in bound.dimensions if d.param == "rank"}
    return {"target_modules": "attn", **point, "learning_rate": 1e-3}


def test_check_point_accepts_a_valid_point(bound: BoundSpace) -> None:
    point = _point(bound)
    bound.check_point(point)  # no error
    bound.check_point({**point, "learning_rate": 1e-4, "rank.0.q": 8})  # inclusive bounds


def test_check_point_rejects_a_missing_dimension(bound: BoundSpace) -> None:
    point = _point(bound)
    del point["rank.1.down"]
    with pytest.raises(SearchSpaceError, match=re.escape("unknown [], missing ['rank.1.down']")):
        bound.check_point(point)


def test_check_point_rejects_an_extra_dimension(bound: BoundSpace) -> None:
    point = {**_point(bound), "rank.2.q": 2}
    with pytest.raises(
        SearchSpaceError, match=r"point does not match .*: unknown \['rank\.2\.q'\], missing \[\]"
    ):
        bound.check_point(point)


@pytest.mark.parametrize(
    ("name", "value", "rule"),
    [
        ("rank.0.v", 3, "one of [0, 2, 4, 8]"),
        ("rank.0.v", 2.5, "one of [0, 2, 4, 8]"),
        ("rank.0.v", "2", "one of [0, 2, 4, 8]"),
        ("target_modules", "mlp", "one of ['qv', 'attn', 'all_linear']"),
        ("learning_rate", 5e-3, "float in [0.0001, 0.003], log scale"),
        ("learning_rate", 5e-5, "float in [0.0001, 0.003], log scale"),
        ("learning_rate", "fast", "float in [0.0001, 0.003], log scale"),
    ],
)
def test_check_point_rejects_out_of_domain(
    bound: BoundSpace, name: str, value: object, rule: str
) -> None:
    point = {**_point(bound), name: value}
    with pytest.raises(
        SearchSpaceError,
        match=rf"^{re.escape(f'{name}={value!r}')} is outside .*: expected {re.escape(rule)}$",
    ):
        bound.check_point(point)


def test_compile_checks_the_point(bound: BoundSpace) -> None:
    point = {**_point(bound), "rank.0.q": 3}
    with pytest.raises(SearchSpaceError, match=r"rank\.0\.q=3 is outside"):
        bound.compile(point)
