"""Verification by reference: a per-site index (faiss) of cleared scans' embeddings by HS heading.

A declared code is scored by how much the scan looks like that code's references compared
with the other codes': the mean cosine similarity to its k nearest references of the
declared heading, against the best other heading's. A code that no classifier head knows
can then still be verified, and adding a code needs examples, not retraining.

On disk (a site folder, or next to the model):

    index.faiss   the unit-length embeddings (inner product = cosine similarity)
    codes.json    the heading of each vector, and how the index was built and scores
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xray.atomic import write_atomic
from xray.errors import ConfigError, DatasetError
from xray.goods import normalize_hs

INDEX_FILE, CODES_FILE = "index.faiss", "codes.json"
HEADING_DIGITS = 4  # references are kept by HS heading: declarations give 6-10 digits, sites share headings
NEAREST = 5
# Similarity gap at which the score is sigmoid(1): cosine gaps between look-alike headings are a few hundredths.
TEMPERATURE = 0.05


def heading(hs_code: str, digits: int = HEADING_DIGITS) -> str:
    return normalize_hs(hs_code)[:digits]


def _unit(vectors: np.ndarray) -> np.ndarray:
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    n = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.maximum(n, 1e-12)


class ReferenceIndex:
    """Cleared scans' embeddings, grouped by HS heading.

    Args:
        vectors: (N, D) embeddings (normalised here).
        codes: The HS code (or heading) of each vector.
        embedding: What made the vectors ("model": the engine's `Detections.embedding`,
            or "thumbnail": the stand-in `xray.baseline.thumbnail_embedding`).
        k: References per heading that a score averages over.
        temperature: Similarity gap that maps to a score of sigmoid(1).
    """

    def __init__(
        self,
        vectors: np.ndarray,
        codes: Sequence[str],
        *,
        embedding: str = "model",
        k: int = NEAREST,
        temperature: float = TEMPERATURE,
        digits: int = HEADING_DIGITS,
    ):
        import faiss

        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(codes) or len(codes) == 0:
            raise DatasetError(
                f"a reference index needs one embedding per code, got {vectors.shape} for {len(codes)} codes"
            )
        if k < 1 or temperature <= 0:
            raise ConfigError(f"k must be at least 1 and temperature positive, got k={k}, temperature={temperature}")
        self.vectors = _unit(vectors)
        self.codes = [heading(c, digits) for c in codes]
        self.embedding, self.k, self.temperature, self.digits = embedding, k, temperature, digits
        rows: dict[str, list[int]] = defaultdict(list)
        for i, c in enumerate(self.codes):
            rows[c].append(i)
        # One exact inner-product index per heading: the k nearest *of each heading* are wanted, not overall.
        self.by_heading: dict[str, Any] = {}
        for c, idx in rows.items():
            sub = faiss.IndexFlatIP(self.vectors.shape[1])
            sub.add(self.vectors[idx])
            self.by_heading[c] = sub

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def counts(self) -> dict[str, int]:
        return {c: int(ix.ntotal) for c, ix in sorted(self.by_heading.items())}

    def similarities(self, embedding: Sequence[float]) -> dict[str, float]:
        """Mean cosine similarity of the scan to the k nearest references of each heading.

        Raises:
            ConfigError: the embedding's length is not the index's.
        """
        q = _unit(np.asarray(embedding, dtype=np.float32).reshape(1, -1))
        if q.shape[1] != self.dim:
            raise ConfigError(
                f"embedding of length {q.shape[1]}, but the reference index holds {self.dim}: built with another model?"
            )
        out = {}
        for c, ix in self.by_heading.items():
            sims, _ = ix.search(q, min(self.k, ix.ntotal))
            out[c] = float(sims[0].mean())
        return out

    def score(self, embedding: Sequence[float], hs_code: str) -> float | None:
        """How unlike its references the scan is for a declared code, in [0, 1] (0.5: as like as the
        best other heading); None when the index holds no reference of the code's heading, or no other."""
        code = heading(hs_code, self.digits)
        if code not in self.by_heading or len(self.by_heading) < 2:
            return None
        sims = self.similarities(embedding)
        own = sims.pop(code)
        gap = max(sims.values()) - own
        return float(1.0 / (1.0 + np.exp(-gap / self.temperature)))

    def save(self, folder: str | Path) -> Path:
        import faiss

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        flat = faiss.IndexFlatIP(self.dim)
        flat.add(self.vectors)
        write_atomic(folder / INDEX_FILE, lambda p: faiss.write_index(flat, str(p)))
        meta = {
            "format": "xray-reference",
            "version": 1,
            "embedding": self.embedding,
            "dim": self.dim,
            "k": self.k,
            "temperature": self.temperature,
            "digits": self.digits,
            "counts": self.counts(),
            "codes": self.codes,
        }
        write_atomic(folder / CODES_FILE, json.dumps(meta, indent=1))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> ReferenceIndex:
        """Raises: ConfigError: the folder holds no reference index, or a broken one."""
        import faiss

        folder = Path(folder)
        if not (folder / INDEX_FILE).is_file() or not (folder / CODES_FILE).is_file():
            raise ConfigError(
                f"{folder}: no reference index ({INDEX_FILE} and {CODES_FILE}); build one with `xray reference build`"
            )
        try:
            meta = json.loads((folder / CODES_FILE).read_text())
            flat = faiss.read_index(str(folder / INDEX_FILE))
            vectors = flat.reconstruct_n(0, flat.ntotal)
            return cls(
                vectors,
                meta["codes"],
                embedding=meta.get("embedding", "model"),
                k=int(meta["k"]),
                temperature=float(meta["temperature"]),
                digits=int(meta.get("digits", HEADING_DIGITS)),
            )
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise ConfigError(f"{folder}: broken reference index: {e}") from e


class Embedded:
    """An engine whose detections carry a scan embedding: the engine's own, or, when it has none,
    `embed(scan)` (the stand-in thumbnail until a model fills `Detections.embedding`)."""

    def __init__(self, engine: Any, embed: Callable[[Any], list[float]]):
        self.engine, self.embed = engine, embed
        self.card: dict[str, Any] = engine.card

    def detect(self, scan: Any) -> Any:
        found = self.engine.detect(scan)
        if found.embedding is not None:
            return found
        return found.model_copy(update={"embedding": self.embed(scan)})


def embedding_engine(engine: Any, kind: str) -> Any:
    """The engine to use with an index built from `kind` embeddings ("model" or "thumbnail").

    Raises:
        ConfigError: an unknown kind.
    """
    if kind == "model":
        return engine
    if kind == "thumbnail":
        from xray.baseline import thumbnail_embedding

        return Embedded(engine, thumbnail_embedding)
    raise ConfigError(f"embedding must be 'model' or 'thumbnail', got {kind!r}")


def build_reference(
    engine: Any,
    data: str | Path,
    *,
    split: str = "train",
    embedding: str = "model",
    limit: int | None = None,
    progress: bool = True,
    k: int = NEAREST,
) -> ReferenceIndex:
    """Index the embeddings of a split's cleared scans by their declared HS headings.

    A scan whose truth marks a mismatch is not a reference; every declared code of a
    cleared scan adds the scan under its heading.

    Raises:
        ConfigError: the engine fills no embedding (use `embedding="thumbnail"` until it does).
        DatasetError: the split holds no usable scan.
    """
    from tqdm import tqdm

    from xray.data.format import split_records
    from xray.manifest import Manifest
    from xray.sources.files import read_scan

    engine = embedding_engine(engine, embedding)
    vectors: list[list[float]] = []
    codes: list[str] = []
    records = split_records(data, split)[:limit]
    for r in tqdm(records, desc=f"reference {split}", unit="scan", disable=not progress):
        if r.truth and r.truth.get("mismatch"):
            continue
        manifest = Manifest.load(r.manifest_path)
        if not manifest.lines:
            continue
        scan = read_scan(r.high, r.low, scan_id=r.scan_id, pixel_mm=r.pixel_mm)
        found = engine.detect(scan)
        if found.embedding is None:
            raise ConfigError("the model fills no scan embedding; build with --embedding thumbnail until it does")
        for line in manifest.lines:
            vectors.append(list(found.embedding))
            codes.append(line.hs_code)
    if not vectors:
        raise DatasetError(f"{data}: no cleared scan with a declaration in split {split!r}")
    return ReferenceIndex(np.array(vectors, dtype=np.float32), codes, embedding=embedding, k=k)
