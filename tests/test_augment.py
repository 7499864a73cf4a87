"""Augmentation keeps boxes consistent with the pixels; TIP adds attenuation inside its box only."""

from __future__ import annotations

import numpy as np
import pytest

from xray.data.augment import Augment, extract_patch, project
from xray.errors import ConfigError
from xray.model.preprocess import A_MAX

OFF = {"hflip": 0.0, "vflip": 0.0, "affine": 0.0, "noise": 0.0, "blur": 0.0, "gain": [1.0, 1.0],
       "channel_gain": 0.0, "gamma": [1.0, 1.0], "tip": 0.0}


def _block_image(box: tuple[int, int, int, int], shape: tuple[int, int] = (128, 384)) -> np.ndarray:
    att = np.zeros((2, *shape), np.float32)
    x1, y1, x2, y2 = box
    att[:, y1:y2, x1:x2] = 3.0
    return att


def _pixel_box(att: np.ndarray, thresh: float = 1.5) -> np.ndarray:
    ys, xs = np.where(att[0] > thresh)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def test_hflip_moves_box_with_pixels() -> None:
    aug = Augment({**OFF, "hflip": 1.0})
    att = _block_image((40, 20, 140, 90))
    img, boxes, labels = aug(att, np.array([[40, 20, 140, 90]]), np.array([5]), rng=np.random.default_rng(0))
    assert np.allclose(boxes[0], [384 - 140, 20, 384 - 40, 90])
    assert np.allclose(_pixel_box(img), boxes[0], atol=1.0)
    assert labels.tolist() == [5]


def test_vflip_moves_box_with_pixels() -> None:
    aug = Augment({**OFF, "vflip": 1.0})
    att = _block_image((40, 20, 140, 90))
    img, boxes, _ = aug(att, np.array([[40, 20, 140, 90]]), np.array([1]), rng=np.random.default_rng(0))
    assert np.allclose(boxes[0], [40, 128 - 90, 140, 128 - 20])
    assert np.allclose(_pixel_box(img), boxes[0], atol=1.0)


@pytest.mark.parametrize("seed", range(12))
def test_full_pipeline_box_follows_block(seed: int) -> None:
    # Defaults: flips, scale + translate, gain, contrast, noise, blur, all random.
    aug = Augment({"tip": 0.0, "affine": 1.0})
    box = (100, 30, 220, 100)
    img, boxes, labels = aug(_block_image(box), np.array([box]), np.array([2]), rng=np.random.default_rng(seed))
    assert img.shape == (2, 128, 384) and img.dtype == np.float32
    assert 0.0 <= img.min() and img.max() <= A_MAX
    if len(boxes):  # the block may be pushed mostly out of the frame, and its box dropped
        assert labels.tolist() == [2]
        # Box within 2 px of where the block's pixels went (blur and resampling blur the edges).
        assert np.abs(_pixel_box(img) - boxes[0]).max() <= 2.5
    else:
        assert (img[0] > 1.5).sum() < 0.4 * (box[2] - box[0]) * (box[3] - box[1])


def test_same_rng_same_result() -> None:
    aug = Augment()
    att = _block_image((50, 20, 150, 90))
    a = aug(att, np.array([[50, 20, 150, 90]]), np.array([0]), rng=np.random.default_rng(7))
    b = aug(att, np.array([[50, 20, 150, 90]]), np.array([0]), rng=np.random.default_rng(7))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_gain_scales_attenuation() -> None:
    aug = Augment({**OFF, "gain": [1.2, 1.2]})
    img, _, _ = aug(_block_image((50, 20, 150, 90)), np.zeros((0, 4)), np.zeros(0, int), rng=np.random.default_rng(0))
    values = set(np.round(np.unique(img), 4).tolist())
    # p = 0.8: either untouched (3.0) or exactly 3.6 = 3.0 x 1.2; air stays air.
    assert values in ({0.0, 3.0}, {0.0, 3.6})


def test_unknown_option_rejected() -> None:
    with pytest.raises(ConfigError, match="unknown key .augment.mosaic."):
        Augment({"mosaic": 1.0})


def test_extract_patch_removes_background() -> None:
    att = np.zeros((2, 100, 300), np.float32)
    att[:, 10:90, :] += np.linspace(0.2, 0.6, 80, dtype=np.float32)[None, :, None]  # walls, varying by row
    att[:, 30:80, 100:180] += 2.0  # the goods
    patch = extract_patch(att, np.array([100, 30, 180, 80]))
    assert patch.shape == (2, 50, 80)
    assert np.allclose(patch, 2.0, atol=1e-5)


def test_tip_adds_attenuation_inside_its_box_only() -> None:
    rng = np.random.default_rng(3)
    att = rng.uniform(0, 2, size=(2, 128, 384)).astype(np.float32)
    patch = rng.uniform(0.5, 1.5, size=(2, 30, 50)).astype(np.float32)
    boxes, labels = np.array([[10, 10, 100, 100]], np.float32), np.array([4])
    out, new_boxes, new_labels = project(att, boxes, labels, patch, 0, rng=rng, over_goods=0.0)
    assert new_labels.tolist() == [4, 0]
    assert np.array_equal(new_boxes[0], boxes[0])
    x1, y1, x2, y2 = new_boxes[1].astype(int)
    assert (x2 - x1, y2 - y1) == (50, 30)
    diff = out - att
    inside = np.zeros(att.shape[1:], bool)
    inside[y1:y2, x1:x2] = True
    assert np.all(diff[:, ~inside] == 0)
    assert np.allclose(diff[:, inside].reshape(2, 30, 50), patch, atol=1e-6)
    # Adding attenuation multiplies transmission.
    assert np.allclose(np.exp(-out[:, y1:y2, x1:x2]), np.exp(-att[:, y1:y2, x1:x2]) * np.exp(-patch), rtol=1e-5)
    assert not np.shares_memory(out, att)


def test_tip_over_goods_lands_on_goods() -> None:
    rng = np.random.default_rng(0)
    att = np.zeros((1, 200, 600), np.float32)
    goods = np.array([[300, 50, 500, 180]], np.float32)
    for _ in range(10):
        _, boxes, _ = project(att, goods, np.array([1]), np.ones((1, 20, 30), np.float32), 0, rng=rng, over_goods=1.0)
        cx, cy = (boxes[1, 0] + boxes[1, 2]) / 2, (boxes[1, 1] + boxes[1, 3]) / 2
        assert 300 <= cx <= 500 and 50 <= cy <= 180


def test_detail_channels_move_with_the_pixels_but_keep_their_values() -> None:
    att = _block_image((40, 20, 140, 90))
    texture = np.zeros((1, *att.shape[1:]), np.float32)
    texture[0, 20:90, 40:140] = 0.25
    aug = Augment({**OFF, "hflip": 1.0, "gain": [1.5, 1.5]})
    img, boxes, _ = aug(np.concatenate([att, texture]), np.array([[40, 20, 140, 90]]), np.array([0]),
                        rng=np.random.default_rng(0), geometric_only=1)
    assert img.shape == (3, 128, 384)
    assert np.allclose(_pixel_box(img[2:] * 10), boxes[0], atol=1e-3) and np.allclose(_pixel_box(img), boxes[0], atol=1e-3)
    assert set(np.unique(img[2]).tolist()) == {0.0, 0.25}  # flipped, but no gain on the detail channel
