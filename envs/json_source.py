"""Reading instance JSON from a path or a string, with errors that name the source."""

from __future__ import annotations

import difflib
import json
from collections.abc import Collection
from pathlib import Path
from typing import Any


def load_json(path_or_str: str | Path, error: type[Exception]) -> tuple[Any, str]:
    """Parse JSON text or the JSON file at a path; return ``(data, source name)``.

    A string that starts with ``{`` or ``[`` is JSON text; anything else is a path. Failures
    raise ``error`` with the source in the message (unreadable file, malformed JSON).
    """
    if isinstance(path_or_str, Path) or not str(path_or_str).lstrip().startswith(("{", "[")):
        path = Path(path_or_str)
        try:
            text, source = path.read_text(), str(path)
        except OSError as reason:
            raise error(f"{path}: cannot read file: {reason.strerror}") from None
    else:
        text, source = str(path_or_str), "<json string>"
    try:
        return json.loads(text), source
    except json.JSONDecodeError as reason:
        raise error(f"{source}: malformed JSON: {reason}") from None


def field(mapping: Any, key: str, where: str, error: type[Exception]) -> Any:
    """``mapping[key]``, or ``error`` naming ``where`` and the missing key."""
    if not isinstance(mapping, dict):
        raise error(f"{where}: expected an object, got {type(mapping).__name__}")
    if key not in mapping:
        raise error(f"{where}: missing field '{key}'")
    return mapping[key]


def reject_unknown(mapping: Any, allowed: Collection[str], where: str,
                   error: type[Exception]) -> None:
    """Raise ``error`` naming each key of ``mapping`` not in ``allowed`` (a misspelt key is
    never ignored), with the closest allowed key as a hint."""
    if not isinstance(mapping, dict):
        raise error(f"{where}: expected an object, got {type(mapping).__name__}")
    unknown = [key for key in mapping if key not in allowed]
    if not unknown:
        return
    names = []
    for key in unknown:
        close = difflib.get_close_matches(str(key), list(allowed), n=1)
        names.append(f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key))
    raise error(f"{where}: unknown field(s) {', '.join(names)}; "
                f"allowed: {', '.join(sorted(allowed))}")
