"""COCO evaluation on known boxes gives the known mAP."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_dataset import write_dataset

from xray.data.dataset import XrayDataset
from xray.model.preprocess import InputSpec
from xray.train.evaluate import coco_map, confusion_matrix, to_coco_results


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> XrayDataset:
    root = write_dataset(tmp_path_factory.mktemp("eval") / "ds", splits={"val": 6}, seed=3)
    return XrayDataset(root, "val", spec=InputSpec(mode="dual_ratio", size=(128, 384)), image_labels="none")


def _predictions(ds: XrayDataset, *, shift: float = 0.0, relabel: int | None = None) -> list[dict]:
    return [
        {"image_id": img_id, "boxes": ds.boxes[i] + shift, "scores": np.ones(len(ds.labels[i]), np.float32),
         "labels": ds.labels[i] if relabel is None else np.full(len(ds.labels[i]), relabel)}
        for i, img_id in enumerate(ds.ids)
    ]


def test_perfect_predictions_score_one(dataset: XrayDataset) -> None:
    m = coco_map(dataset.coco, to_coco_results(_predictions(dataset), dataset.cat_of_class))
    assert m["mAP50"] == pytest.approx(1.0) and m["mAP"] == pytest.approx(1.0)
    present = {dataset.classes[c] for labels in dataset.labels for c in labels}
    for name, pc in m["per_class"].items():
        if name in present:
            assert pc["gt"] > 0 and pc["AP50"] == pytest.approx(1.0) and pc["AP"] == pytest.approx(1.0)
        else:
            assert pc["gt"] == 0 and pc["AP"] is None


def test_no_predictions_score_zero(dataset: XrayDataset) -> None:
    m = coco_map(dataset.coco, [])
    assert m["mAP50"] == 0.0 and m["mAP"] == 0.0


def test_wrong_class_scores_zero(dataset: XrayDataset) -> None:
    wrong = len(dataset.classes) - 1  # firearms: never in the fixture data
    m = coco_map(dataset.coco, to_coco_results(_predictions(dataset, relabel=wrong), dataset.cat_of_class))
    assert m["mAP50"] == 0.0


def test_shifted_boxes_lose_strict_ious(dataset: XrayDataset) -> None:
    # Shifted by 8 px: still IoU > 0.5 with 40+ px boxes, but not above 0.95.
    m = coco_map(dataset.coco, to_coco_results(_predictions(dataset, shift=8.0), dataset.cat_of_class))
    assert m["mAP50"] == pytest.approx(1.0)
    assert 0.0 < m["mAP"] < 1.0


def test_confusion_matrix(dataset: XrayDataset) -> None:
    k = len(dataset.classes)
    n_gt = sum(len(b) for b in dataset.boxes)
    cm = confusion_matrix(dataset, _predictions(dataset))
    assert cm.shape == (k + 1, k + 1)
    assert np.trace(cm) == n_gt and cm.sum() == n_gt
    cm_none = confusion_matrix(dataset, [])
    assert cm_none[:, k].sum() == n_gt  # everything missed -> background column
    cm_wrong = confusion_matrix(dataset, _predictions(dataset, relabel=k - 1))
    assert cm_wrong[:, k - 1].sum() == n_gt and np.trace(cm_wrong) == 0
