"""Reading instance JSON from a path or a string, with errors that name the source."""

from __future__ import annotations

import json
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
            raise error(f"{path}: cannot read instance file: {reason.strerror}") from None
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
