"""The formats causal-LM fine-tuning data ships in, recognised by their columns.

* ``prompt_completion``: a plain ``prompt`` and its ``completion`` (TRL's prompt-completion
  format; the column names are the spec's ``prompt_column`` / ``completion_column``);
* ``messages``: OpenAI-style chat, a list of ``{"role", "content"}`` whose last message is the
  assistant's answer (TRL's conversational format; ``messages_column``);
* ``alpaca``: ``instruction``, an optional ``input`` and the ``output`` to learn (Stanford
  Alpaca and the many datasets in its shape); the instruction and input become one user turn;
* ``sharegpt``: ``conversations``, a list of ``{"from", "value"}`` turns (``human``/``gpt``,
  also ``user``/``assistant``/``system``), the last one the model's answer.

``alpaca`` and ``sharegpt`` rows become chat turns, so they are rendered with the tokenizer's
chat template like ``messages`` (see :mod:`autopeft.tasks.causal_lm`). With ``format: auto``
each row is read in the first format whose columns it has, in the order above.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from autopeft.exceptions import DatasetError

__all__ = ["FORMAT_NAMES", "alpaca_messages", "describe_formats", "detect", "sharegpt_messages"]

FORMAT_NAMES = ("auto", "prompt_completion", "messages", "alpaca", "sharegpt")
ALPACA = ("instruction", "input", "output")
SHAREGPT = "conversations"
_SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "model": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "system": "system",
}


def describe_formats(prompt: str, completion: str, messages: str) -> str:
    """The known formats and their columns, for error messages."""
    return (
        f"prompt_completion ({prompt!r} and {completion!r}), messages (a chat {messages!r} "
        f"column), alpaca ('instruction', optional 'input', 'output'), sharegpt "
        f"({SHAREGPT!r} with from/value turns)"
    )


def detect(
    columns: Sequence[str] | Mapping[str, Any], prompt: str, completion: str, messages: str
) -> str | None:
    """The first format whose columns ``columns`` holds (see the module), or None."""
    present = set(columns)
    if prompt in present and completion in present:
        return "prompt_completion"
    if messages in present:
        return "messages"
    if "instruction" in present and "output" in present:
        return "alpaca"
    if SHAREGPT in present:
        return "sharegpt"
    return None


def required(fmt: str, prompt: str, completion: str, messages: str) -> tuple[str, ...]:
    """The columns a row of format ``fmt`` must have."""
    return {
        "prompt_completion": (prompt, completion),
        "messages": (messages,),
        "alpaca": ("instruction", "output"),
        "sharegpt": (SHAREGPT,),
    }[fmt]


def alpaca_messages(record: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    """An Alpaca row as a user turn (instruction, then the input if any) and the answer."""
    texts = {}
    for column in ALPACA:
        value = record.get(column)
        if value is not None and not isinstance(value, str):
            raise DatasetError(
                f"{where}: column {column!r} is {value!r} ({type(value).__name__}); "
                "expected a string"
            )
        texts[column] = (value or "").strip()
    if not texts["instruction"]:
        raise DatasetError(f"{where}: column 'instruction' is empty; expected a non-empty text")
    user = texts["instruction"] + (f"\n\n{texts['input']}" if texts["input"] else "")
    return [{"role": "user", "content": user}, {"role": "assistant", "content": record["output"]}]


def sharegpt_messages(value: Any, where: str) -> Any:
    """ShareGPT ``{"from", "value"}`` turns as ``{"role", "content"}`` messages; anything that
    is not a list of objects is returned as is (the chat reader names what is wrong)."""
    if not isinstance(value, list):
        return value
    out: list[Any] = []
    for number, turn in enumerate(value, start=1):
        if not isinstance(turn, Mapping) or "from" not in turn:
            out.append(turn)
            continue
        speaker = str(turn["from"]).strip().lower()
        role = _SHAREGPT_ROLES.get(speaker)
        if role is None:
            known = ", ".join(_SHAREGPT_ROLES)
            raise DatasetError(
                f"{where}: column {SHAREGPT!r} turn {number}: 'from' is {turn['from']!r}; "
                f"expected one of {known}"
            )
        out.append({"role": role, "content": turn.get("value")})
    return out
