"""Verification by reference: a faiss index of cleared scans by HS heading, and its verifier term."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from xray.detection import Detections
from xray.errors import ConfigError
from xray.manifest import Manifest, ManifestLine
from xray.reference import Embedded, ReferenceIndex
from xray.scan import Scan, ScanKind
from xray.verdict import FindingKind
from xray.verify import VerifierConfig, verify

CODES = ("847989", "620342", "940360")  # machinery, textiles, furniture


def _clusters(dim: int = 16, per: int = 20, seed: int = 0) -> tuple[np.ndarray, list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(CODES), dim))
    vectors = np.concatenate([c + 0.3 * rng.normal(size=(per, dim)) for c in centres])
    return vectors.astype(np.float32), [code for code in CODES for _ in range(per)], centres


def test_declared_code_scored_by_its_references_against_other_codes(tmp_path: Path) -> None:
    vectors, codes, centres = _clusters()
    index = ReferenceIndex(vectors, codes)
    assert index.counts() == {"8479": 20, "6203": 20, "9403": 20}  # kept by heading
    scan = centres[0] + 0.1
    like, unlike = index.score(scan, "847990"), index.score(scan, "620342")
    assert like is not None and unlike is not None
    assert like < 0.2 and unlike > 0.8
    assert index.score(scan, "240220") is None  # no reference of tobacco: no term
    again = ReferenceIndex.load(index.save(tmp_path / "site"))
    assert again.score(scan, "620342") == pytest.approx(unlike, abs=1e-6)
    with pytest.raises(ConfigError, match="length"):
        index.similarities(np.ones(3))


def test_missing_or_broken_index_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no reference index"):
        ReferenceIndex.load(tmp_path)
    vectors, codes, _ = _clusters()
    folder = ReferenceIndex(vectors, codes).save(tmp_path / "site")
    (folder / "codes.json").write_text("{}")
    with pytest.raises(ConfigError, match="broken"):
        ReferenceIndex.load(folder)


def test_reference_term_joins_the_risk_only_with_an_index_and_an_embedding() -> None:
    vectors, codes, centres = _clusters()
    index = ReferenceIndex(vectors, codes)
    # The classifier heads are fooled (textiles seen); the references are not (a machinery-like scan).
    cfg = VerifierConfig(image_weight=1.0)
    found = Detections(scan_id="s", image_scores={"textiles": 0.95},
                       embedding=(centres[0] / np.linalg.norm(centres[0])).tolist())
    wrong = Manifest(container_id="C", lines=[ManifestLine(hs_code="620342")])
    right = Manifest(container_id="C", lines=[ManifestLine(hs_code="847989")])
    plain = verify(found, wrong, config=cfg)
    with_ref = verify(found, wrong, config=cfg, reference=index)
    assert plain.risk < 0.1 < 0.6 < with_ref.risk
    assert FindingKind.UNLIKE_REFERENCES in {f.kind for f in with_ref.findings}
    assert verify(found, right, config=cfg, reference=index).risk == pytest.approx(verify(found, right, config=cfg).risk)
    no_embedding = found.model_copy(update={"embedding": None})
    assert verify(no_embedding, wrong, config=cfg, reference=index).risk == pytest.approx(plain.risk)


class _NoEmbedding:
    card: dict = {}

    def detect(self, scan: Scan) -> Detections:
        return Detections(scan_id=scan.id)


def test_stand_in_embedding_fills_what_the_engine_leaves_empty() -> None:
    from xray.baseline import thumbnail_embedding

    scan = Scan(id="x", channels=np.full((1, 32, 96), 0.5, np.float32), kind=ScanKind.SINGLE)
    found = Embedded(_NoEmbedding(), thumbnail_embedding).detect(scan)
    assert found.embedding is not None and len(found.embedding) == 32 * 96
