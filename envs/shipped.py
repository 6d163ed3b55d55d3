"""Where the shipped files live: trained models (``MODELS_DIR``) and small data (``DATA_DIR``:
DNN profiles, Spark traces, PS corpora). Every module finds them here, never by counting
parent folders from its own file.

They are package data of ``envs`` under ``envs/_shipped/``, found through
:mod:`importlib.resources`: in a checkout ``envs/_shipped/models`` and ``envs/_shipped/data``
are links to the repository's ``models/`` and ``data/``; a wheel carries the files themselves
(``[tool.setuptools.package-data]`` in pyproject.toml, docs/install.md). Tools that write
(trainers, profilers, tracegen) write relative to the current directory, never here.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def _shipped(name: str) -> Path:
    """The folder ``envs/_shipped/<name>`` on disk, links resolved (a checkout's
    ``models/``, or the installed copy)."""
    folder = files("envs") / "_shipped" / name
    if not isinstance(folder, Path) or not folder.is_dir():
        raise RuntimeError(f"pipesched's shipped {name}/ is not a folder on disk at {folder}; "
                           "install pipesched unzipped (pip install) or repair the checkout")
    return folder.resolve()


MODELS_DIR = _shipped("models")
DATA_DIR = _shipped("data")
