"""Corpus documents: read them from JSONL (`text` field, or GSM8K `question`/`answer`) and plain .txt.

Documents are split deterministically into a training part and a held-out part by a hash of their
text, so every tool (SAE training, evaluation, the feature atlas) agrees on what was held out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from diagnostics.jsonl import JsonlLineError, jsonl_rows

Split = Literal["train", "heldout", "all"]

HELDOUT_FRACTION = 0.16
"""Default share of documents held out from SAE training (by text hash)."""


def document_split(text: str, heldout_fraction: float = HELDOUT_FRACTION) -> Split:
    """'heldout' for a stable `heldout_fraction` of documents, 'train' for the rest."""
    bucket = int.from_bytes(hashlib.sha1(text.encode("utf-8")).digest()[:4], "big") / 2**32
    return "heldout" if bucket < heldout_fraction else "train"


def iter_documents(
    path: str | Path, split: Split = "all", heldout_fraction: float = HELDOUT_FRACTION
) -> Iterator[str]:
    """Documents of one file: a JSONL line's `text` (or `question` + `answer`), or a .txt's paragraphs."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"text source not found: {path}")
    for text in _raw_documents(path):
        if text.strip() and (split == "all" or document_split(text, heldout_fraction) == split):
            yield text


def interleave_documents(
    paths: list[str | Path], split: Split = "all", heldout_fraction: float = HELDOUT_FRACTION
) -> Iterator[str]:
    """Documents of several files, round-robin, so any prefix draws on every source."""
    return round_robin([iter_documents(p, split, heldout_fraction) for p in paths])


def shuffled_documents(
    paths: list[str | Path],
    split: Split = "all",
    seed: int = 0,
    heldout_fraction: float = HELDOUT_FRACTION,
) -> list[str]:
    """Every document of every file in one seeded random order, so any stretch of the list holds
    the sources in their overall proportions (round-robin runs the small sources dry early, and a
    file's own order keeps its kinds of text together: a trainer then forgets them)."""
    import random

    docs = [d for p in paths for d in iter_documents(p, split, heldout_fraction)]
    random.Random(seed).shuffle(docs)
    return docs


def round_robin(iterators: list[Iterator[str]]) -> Iterator[str]:
    """One item of each iterator in turn until all are exhausted."""
    iters = list(iterators)
    while iters:
        for it in list(iters):
            doc = next(it, None)
            if doc is None:
                iters.remove(it)
            else:
                yield doc


def _raw_documents(path: Path) -> Iterator[str]:
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as fh:
            try:
                for lineno, row in jsonl_rows(fh):
                    if "text" in row:
                        yield str(row["text"])
                    elif "question" in row:
                        yield f"{row['question']}\n{row.get('answer', '')}".strip()
                    else:
                        raise ValueError(f"{path}:{lineno}: expected a 'text' or 'question' field")
            except JsonlLineError as err:
                raise ValueError(f"{path}:{err.line}: not JSON: {err.msg}") from err
    else:
        content = path.read_text(encoding="utf-8")
        yield from (part for part in content.split("\n\n"))
