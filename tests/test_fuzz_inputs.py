"""Property-based fuzzing of every parser of user files (issue 15, item 4).

The study-spec parser (:func:`autopeft.spec.load_study`), the search-space parser
(:func:`autopeft.methods.binding.load_space`) and the CSV / JSONL loaders
(:func:`autopeft.data.load_dataset`, :func:`autopeft.data.load_completions`) get random
YAML-ish text and bytes, and structured mutations of the shipped valid files (fields dropped,
replaced by wrong types, huge or negative numbers, NaN, unicode, empty lists, YAML oddities
such as self-referencing anchors, 5000-digit integers or 2000-deep nesting). Each input must
give a valid object or a :class:`~autopeft.exceptions.UserInputError` (the CLI's one
``error:`` line, exit 2), never another exception; a few go through ``autopeft validate``.

The example budget is fixed (profile ``inputs-fuzz``: derandomized, no deadline) so CI runs
the same examples every time, in about 20 s on a 2-core machine.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from autopeft.cli import app
from autopeft.data import load_completions, load_dataset
from autopeft.exceptions import UserInputError
from autopeft.methods.binding import load_space
from autopeft.spec import load_study
from tests.conftest import SPACE, write_study, write_tiny_csv

ROOT = Path(__file__).resolve().parent.parent
SPACES = sorted((ROOT / "search_spaces").glob("*.yaml"))
SPECS = sorted((ROOT / "studies").glob("*.yaml"))

settings.register_profile(
    "inputs-fuzz",
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
# Explore further by hand: AUTOPEFT_FUZZ_PROFILE=inputs-fuzz-long pytest tests/test_fuzz_inputs.py
settings.register_profile(
    "inputs-fuzz-long", settings.get_profile("inputs-fuzz"), max_examples=1500, derandomize=False
)
FUZZ = settings(settings.get_profile(os.environ.get("AUTOPEFT_FUZZ_PROFILE", "inputs-fuzz")))
FEW = settings(FUZZ, max_examples=max(25, FUZZ.max_examples // 5))

# Tokens pasted verbatim into YAML (where a value goes): what yaml.safe_dump cannot write.
RAW_YAML = [
    "1" * 5000,  # an int of more than 4300 digits: Python refuses to build it
    "[" * 600 + "]" * 600,  # nesting deeper than the recursion limit (PyYAML: O(depth²))
    "{a: " * 300 + "1" + "}" * 300,
    "&x [*x]",  # a list that contains itself
    "{[a, b]: 1}",  # a mapping with a list as a key
    "2020-13-45",  # looks like a timestamp, is not a date
    "2020-01-01",
    "!!binary aGVsbG8=",
    "!!set {a, b}",
    "!!python/name:os.system",
    "*undefined",
    ".nan",
    "-.inf",
    "1e400",
    "0x1F",
    "~",
    '"\\ud800"',
    '"\\0"',
    "[]",
    "{}",
    "''",
]

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
SCALARS = (
    JSON_SCALARS
    | st.sampled_from([0, -1, 1, 2, 10**20, -(10**20), 2**63, 1e-300, "", " ", "ünï ✓ 🤖"])
    | st.sampled_from([f"__RAW_{i}__" for i in range(len(RAW_YAML))])
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)
YAMLISH = st.text(
    alphabet=st.sampled_from(list(":-[]{},#&*!|>'\"%@`?~ \n\t.") + list("abcnrtuex019_")),
    max_size=80,
) | st.text(max_size=80)


def _paths(tree: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path into ``tree`` (mapping keys and list indices), the root first."""
    found = [prefix]
    items = (
        tree.items()
        if isinstance(tree, dict)
        else enumerate(tree)
        if isinstance(tree, list)
        else ()
    )
    for key, value in items:
        found += _paths(value, (*prefix, key))
    return found


@st.composite
def mutated_yaml(draw: st.DrawFn, source: Path) -> str:
    """``source`` with one to three fields dropped, replaced or added, dumped back to YAML."""
    tree = yaml.safe_load(source.read_text())
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(tree)))
        if not path:
            tree = tree if isinstance(tree, dict) else {}
            tree[draw(st.text(max_size=8))] = draw(VALUES)
            continue
        *parents, key = path
        node = tree
        for parent in parents:
            node = node[parent]
        op = draw(st.sampled_from(["replace", "drop", "add"]))
        if op == "drop":
            del node[key]
        elif op == "add" and isinstance(node[key], dict):
            node[key][draw(st.text(max_size=8))] = draw(VALUES)
        else:
            node[key] = draw(VALUES)
    text = yaml.safe_dump(tree, sort_keys=False, allow_unicode=True)
    for i, raw in enumerate(RAW_YAML):
        text = text.replace(f"__RAW_{i}__", raw)
    return text


def parses_or_user_error(parse: Callable[[str], Any], path: Path, content: str | bytes) -> Any:
    """``parse(path)`` after writing ``content`` there: its result, or None on a user error."""
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", errors="surrogatepass")
    try:
        return parse(str(path))
    except UserInputError as exc:
        assert str(exc).strip(), "an empty error message"
        return None


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of studies/ and search_spaces/, so the specs' relative paths resolve."""
    root = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(ROOT / "search_spaces", root / "search_spaces")
    (root / "studies").mkdir()
    return root


# -- study specs and search spaces ------------------------------------------------------------
@pytest.mark.slow  # ~4 s on an idle 2-core machine
@FUZZ
@given(data=st.data())
def test_mutated_study_specs_load_or_give_a_user_error(tree: Path, data: st.DataObject) -> None:
    text = data.draw(mutated_yaml(data.draw(st.sampled_from(SPECS))))
    parses_or_user_error(load_study, tree / "studies" / "fuzz.yaml", text)


@pytest.mark.slow  # ~4 s on an idle 2-core machine
@FUZZ
@given(data=st.data())
def test_mutated_search_spaces_load_or_give_a_user_error(tree: Path, data: st.DataObject) -> None:
    text = data.draw(mutated_yaml(data.draw(st.sampled_from(SPACES))))
    parses_or_user_error(load_space, tree / "search_spaces" / "fuzz.yaml", text)


@FUZZ
@given(content=YAMLISH | st.binary(max_size=80), as_spec=st.booleans())
def test_random_text_and_bytes_as_spec_or_space(
    tree: Path, content: str | bytes, as_spec: bool
) -> None:
    parse, name = (load_study, "studies/fuzz.yaml") if as_spec else (load_space, "space.yaml")
    parses_or_user_error(parse, tree / name, content)


# The crashes this fuzzing found, pinned (each raised a non-user exception before its fix).
DEMO = (ROOT / "studies" / "demo.yaml").read_text()
FOUND = [
    (load_study, "studies/deep.yaml", "name: " + "[" * 600 + "]" * 600, "nested too deeply"),
    (
        load_study,
        "studies/big.yaml",
        DEMO.replace("n_trials: 12", "n_trials: " + "1" * 5000),
        "4300 digits",
    ),
    (load_study, "studies/key.yaml", DEMO + "x: {[a, b]: 1}\n", "a list cannot be a key"),
    (
        load_study,
        "studies/date.yaml",
        DEMO.replace("seed: 0\n", "seed: 2020-13-45\n"),
        "month must be",
    ),
    (
        load_study,
        "studies/nan.yaml",
        DEMO.replace("max_steps: 50", "max_steps: .nan"),
        "finite number",
    ),
    (
        load_study,
        "studies/inf.yaml",
        DEMO.replace("learning_rate: 1.0e-3", "learning_rate: .inf"),
        "finite number",
    ),
    (load_dataset, "label.csv", "text,label\na," + "1" * 5000 + "\nb,2\n", None),
    (
        load_dataset,
        "deep.jsonl",
        '{"text": "a", "label": ' + "[" * 10**5 + "]" * 10**5 + "}",
        "nested too deeply",
    ),
    (load_dataset, "big.jsonl", '{"text": "a", "label": ' + "1" * 5000 + "}", "4300 digits"),
    (
        load_completions,
        "chat.csv",
        'messages\n"' + "[" * 5000 + "]" * 5000 + '"\n',
        "nested too deeply",
    ),
]


@pytest.mark.parametrize(("parse", "name", "content", "message"), FOUND)
def test_the_crashes_fuzzing_found_are_user_errors(
    tree: Path, parse: Callable[[str], Any], name: str, content: str, message: str | None
) -> None:
    path = tree / name
    path.write_text(content)
    if message is None:  # a valid input now
        parse(str(path))
        return
    with pytest.raises(UserInputError, match=message):
        parse(str(path))


# -- CSV and JSONL datasets -------------------------------------------------------------------
COLUMNS = st.sampled_from(["text", "label", "prompt", "completion", "messages", "", "x"])
CELLS = st.text(max_size=10) | st.sampled_from(["1" * 5000, "-7", "3.0", "nan", "[]", "\x00"])
MESSAGES = st.lists(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "bot"])})
    | st.dictionaries(st.sampled_from(["role", "content"]), JSON_SCALARS),
    max_size=3,
).map(json.dumps)
RAW_JSON = ["1" * 5000, "[" * 100000 + "]" * 100000, "NaN", "-Infinity", '"\\ud800"', "{", ""]


@st.composite
def csv_text(draw: st.DrawFn) -> str:
    header = draw(st.lists(COLUMNS, min_size=1, max_size=4))
    rows = draw(st.lists(st.lists(CELLS | MESSAGES, max_size=5), max_size=6))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


@st.composite
def jsonl_text(draw: st.DrawFn) -> str:
    record = st.dictionaries(COLUMNS, JSON_SCALARS | MESSAGES | VALUES, max_size=4)
    lines = draw(
        st.lists(
            record.map(json.dumps)
            | VALUES.map(json.dumps)
            | st.sampled_from(RAW_JSON).map(lambda raw: '{"text": "a", "label": ' + raw + "}"),
            max_size=6,
        )
    )
    return "\n".join(lines)


LOADERS = [load_dataset, load_completions]


@FUZZ
@given(content=csv_text() | YAMLISH | st.binary(max_size=60), loader=st.sampled_from(LOADERS))
def test_csv_files_load_or_give_a_user_error(
    tmp_path: Path, content: str | bytes, loader: Callable[[str], Any]
) -> None:
    parses_or_user_error(loader, tmp_path / "data.csv", content)


@FUZZ
@given(content=jsonl_text() | YAMLISH | st.binary(max_size=60), loader=st.sampled_from(LOADERS))
def test_jsonl_files_load_or_give_a_user_error(
    tmp_path: Path, content: str | bytes, loader: Callable[[str], Any]
) -> None:
    parses_or_user_error(loader, tmp_path / "data.jsonl", content)


# -- through the CLI --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> Path:
    """A directory holding a valid tiny study (data.csv, space.yaml, study.yaml)."""
    directory = tmp_path_factory.mktemp("fuzz-cli")
    write_tiny_csv(directory / "data.csv")
    (directory / "space.yaml").write_text(SPACE.format(budget=4000))
    return write_study(directory, model=str(tiny_bert_dir)).parent


@pytest.mark.slow  # ~4 s on an idle 2-core machine
@FEW
@given(data=st.data())
def test_validate_gives_ok_or_one_error_line(tiny_study: Path, data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(["study.yaml", "space.yaml"]))
    text = data.draw(mutated_yaml(tiny_study / name) | YAMLISH)
    path = tiny_study / f"fuzz-{name}"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert "Traceback" not in result.output, result.output
    if result.exit_code == 0:
        assert result.stdout.startswith("ok: "), result.output
        return
    assert result.exit_code == 2, f"{result.exception!r}\n{result.output}"
    err = result.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err, err
