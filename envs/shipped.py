"""Where the shipped files live: trained models (``models/``) and small data (``data/``:
DNN profiles, Spark traces, PS corpora). Every module finds them here, never by counting
parent folders from its own file."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = ROOT / "models"
DATA_DIR = ROOT / "data"
