"""Build a real sparse data set offline: Python source files x identifiers.

Documents are ``.py`` files of installed packages (one data block per file, one sample per
source line that holds a vocabulary identifier); features are identifiers (``tokenize`` NAME
tokens that are not keywords) that occur in at least ``min_document_frequency`` of the chosen
files; the label of a line is the package its file belongs to (a document-classification
task). Identifiers are sorted alphabetically and cut into equal key ranges, one shard each,
as key-range parameter servers do (the default, one identifier per shard, makes every
key its own shard: a worker pulls exactly the keys its data touches).

The shipped file was made with (the venv's site-packages; versions recorded in its metadata)::

    python -m envs.param_server.corpus --out data/param_server/sitepackages.npz

File choice is deterministic: per package, the ``.py`` files of 4-40 KiB outside test
folders, sorted by path, ``files_per_package`` of them evenly spaced.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import json
import keyword
import sysconfig
import tokenize
from collections import Counter
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from envs.param_server.dataset import SparseDataset

DEFAULT_PACKAGES = ("networkx", "sympy", "matplotlib", "hypothesis", "torch", "pyspark",
                    "rich", "scipy")
#: relative to the current directory: run from a checkout's root to replace the shipped file
DEFAULT_OUT = Path("data/param_server/sitepackages.npz")


def choose_files(root: Path, package: str, count: int) -> list[Path]:
    candidates = sorted(
        path for path in (root / package).rglob("*.py")
        if 4096 <= path.stat().st_size <= 40960
        and not {"tests", "test", "testing"} & set(path.relative_to(root).parts))
    if len(candidates) < count:
        raise FileNotFoundError(f"{root / package}: only {len(candidates)} suitable .py files, "
                                f"{count} needed")
    picks = np.linspace(0, len(candidates) - 1, count).round().astype(int)
    return [candidates[i] for i in picks]


def line_identifiers(source: str) -> dict[int, set[str]]:
    """Identifiers per physical line (1-based); unreadable tails are skipped."""
    lines: dict[int, set[str]] = {}
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.NAME and not keyword.iskeyword(token.string):
                lines.setdefault(token.start[0], set()).add(token.string)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return lines


def build_dataset(root: Path, packages: tuple[str, ...] = DEFAULT_PACKAGES,
                  files_per_package: int = 12, features_per_shard: int = 1,
                  min_document_frequency: int = 2) -> SparseDataset:
    documents = []
    for label, package in enumerate(packages):
        for path in choose_files(root, package, files_per_package):
            lines = line_identifiers(path.read_text(encoding="utf-8", errors="replace"))
            documents.append((label, path.relative_to(root).as_posix(), lines))
    frequency = Counter(name for _, _, lines in documents
                        for name in set().union(*lines.values()))
    vocabulary = sorted(name for name, df in frequency.items() if df >= min_document_frequency)
    column = {name: index for index, name in enumerate(vocabulary)}
    rows, columns, labels, row_block, kept = [], [], [], [], []
    for label, path, lines in documents:
        block = len(kept)
        for number in sorted(lines):
            features = sorted(column[n] for n in lines[number] if n in column)
            if not features:
                continue
            rows.extend([len(labels)] * len(features))
            columns.extend(features)
            labels.append(label)
            row_block.append(block)
        if row_block and row_block[-1] == block:
            kept.append(path)
    matrix = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, columns)),
                           shape=(len(labels), len(vocabulary)))
    offsets = np.unique(np.append(np.arange(0, len(vocabulary), features_per_shard),
                                  len(vocabulary)))
    versions = {}
    for package in packages:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "unknown"
    metadata = {"source": "python source files x identifiers", "packages": versions,
                "files": kept,
                "features_per_shard": features_per_shard,
                "min_document_frequency": min_document_frequency}
    return SparseDataset(features=matrix, labels=np.array(labels), row_block=np.array(row_block),
                         shard_offsets=offsets, num_classes=len(packages),
                         name="sitepackages", metadata=json.dumps(metadata))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m envs.param_server.corpus")
    parser.add_argument("--site-packages", default=sysconfig.get_paths()["purelib"])
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument("--files-per-package", type=int, default=12)
    parser.add_argument("--features-per-shard", type=int, default=1)
    args = parser.parse_args(argv)
    dataset = build_dataset(Path(args.site_packages), files_per_package=args.files_per_package,
                            features_per_shard=args.features_per_shard)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    dataset.save(args.out)
    summary = {k: v for k, v in dataset.describe().items() if k != "files"}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
