"""The fast preprocessing path computes the numbers of the plain definitions it replaces."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from xray.model.preprocess import (
    InputSpec,
    detail,
    finish,
    fit,
    preprocess,
    resize,
    shrink,
)
from xray.scan import Scan, ScanKind
from xray.sources.files import read_scan, write_png16

SPEC = InputSpec.from_dict({"mode": "dual_ratio_detail", "size": [64, 192]})


def dual(h: int = 200, w: int = 600, seed: int = 0) -> Scan:
    rng = np.random.default_rng(seed)
    t = rng.random((2, h, w), dtype=np.float32) * 0.98 + 0.01
    t[:, :, : w // 3] = np.round(t[:, :, : w // 3] * 65535) / 65535  # some 16-bit counts, some smooth values
    t[0, :10, :10] = 0.0  # opaque: the transmission floor
    return Scan(id="s", channels=t, kind=ScanKind.DUAL)


def reference(scan: Scan, spec: InputSpec) -> np.ndarray:
    """The definitions, written plainly: -ln T, separate resizes, the detail channel, then
    pad, ratio and normalise with whole-array arithmetic."""
    att = scan.attenuation()
    lb = fit(att.shape[1:], spec.size)
    small = resize(att, lb.resized_hw)
    if spec.detail_channels:
        small = np.concatenate([small, detail(att[0], lb.resized_hw, spec.detail_sigma)[None]])
    H, W = spec.size
    canvas = np.zeros((small.shape[0], H, W), np.float32)
    canvas[:, : small.shape[1], : small.shape[2]] = small
    if spec.mode in ("dual_ratio", "dual_ratio_detail"):
        ratio = np.clip((canvas[1] + spec.ratio_eps) / (canvas[0] + spec.ratio_eps), *spec.ratio_clip)
        canvas = np.concatenate([canvas[:2], ratio[None], canvas[2:]])
    mean = np.asarray(spec.mean, np.float32)[:, None, None]
    std = np.asarray(spec.std, np.float32)[:, None, None]
    return (canvas - mean) / std


@pytest.mark.parametrize("mode", ["dual_ratio_detail", "dual_ratio", "dual", "single"])
def test_preprocess_equals_the_plain_definitions_bit_for_bit(mode: str) -> None:
    spec = SPEC.replace(mode=mode, mean=None, std=None)
    for scan in (dual(), dual(333, 1001, seed=1)):
        x, _ = preprocess(scan, spec)
        want = reference(scan, spec) if mode != "single" else None
        if want is not None:
            np.testing.assert_array_equal(x, want)
        else:
            np.testing.assert_array_equal(
                x, finish(resize(scan.attenuation()[:1], fit(scan.channels.shape[1:], spec.size).resized_hw), spec)
            )


def test_growing_a_small_scan_stays_within_float_rounding() -> None:
    scan = dual(40, 100)  # smaller than the input: linear interpolation, interleaved
    np.testing.assert_allclose(preprocess(scan, SPEC)[0], reference(scan, SPEC), rtol=0, atol=1e-4)


def test_the_detail_channel_is_the_rms_of_the_fine_texture() -> None:
    scan = dual()
    att = scan.attenuation()
    lb = fit(att.shape[1:], SPEC.size)
    got = shrink(att, lb.resized_hw, SPEC)
    k = 2 * math.ceil(2 * SPEC.detail_sigma) + 1
    hp = att[0] - cv2.GaussianBlur(att[0], (k, k), SPEC.detail_sigma)
    assert got.shape == (3, *lb.resized_hw)
    np.testing.assert_allclose(got[2], np.sqrt(resize((hp * hp)[None], lb.resized_hw)[0]), atol=1e-6)


def test_a_png_pair_decodes_into_one_array_with_the_values_of_each_file(tmp_path: Path) -> None:
    scan = dual(64, 160)
    high = write_png16(tmp_path / "a_high.png", scan.channels[0])
    low = write_png16(tmp_path / "a_low.png", scan.channels[1])
    pair = read_scan(high, low)
    assert pair.channels.flags.c_contiguous and pair.channels.shape == (2, 64, 160)
    np.testing.assert_array_equal(pair.channels[0], read_scan(high).channels[0])
    np.testing.assert_array_equal(pair.channels[1], read_scan(low).channels[0])
    np.testing.assert_array_equal(np.round(pair.channels * 65535), np.round(scan.channels.astype(np.float64) * 65535))
