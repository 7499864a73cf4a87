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
    values = set(np.round(np.unique(img).astype(np.float64), 4).tolist())
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


# -- domain randomisation ----------------------------------------------------------------------

DR_OFF = {**OFF, "domain_randomisation": 1.0, "domain_export": 0.0, "domain_single_energy": 0.0,
          "domain_stripes": 0.0, "domain_noise": 0.0, "domain_blur": 0.0, "domain_crop": 0.0,
          "domain_scatter": 0.0, "domain_starvation": 0.0}


def _textured(shape: tuple[int, int] = (128, 384)) -> np.ndarray:
    rng = np.random.default_rng(3)
    att = np.full((2, *shape), 0.3, np.float32)
    att[:, 20:100, 60:300] = 2.0 + 0.5 * rng.random((80, 240), dtype=np.float32)
    att[1] *= 1.2
    return att


def test_domain_randomisation_is_off_by_default() -> None:
    aug = Augment({**OFF})
    names = [type(t).__name__ for t in aug.pipeline.transforms]
    assert not {"DisplayExport", "SingleEnergy", "RowStripes", "BBoxSafeRandomCrop"} & set(names)


def test_display_export_quantises_to_8_bit_grey_levels_read_as_transmission() -> None:
    aug = Augment({**DR_OFF, "domain_export": 1.0, "domain_jpeg": 0.0})
    img, boxes, _ = aug(_textured(), np.array([[60, 20, 300, 100]]), np.array([2]), rng=np.random.default_rng(1))
    t = np.exp(-img)  # back to transmission: each value is k / 255 for an integer k
    levels = t * 255
    assert np.allclose(levels[levels > 0.5], np.rint(levels[levels > 0.5]), atol=2e-2)
    assert len(np.unique(np.rint(levels))) <= 256
    assert np.allclose(boxes, [[60, 20, 300, 100]])
    # the goods stay darker (more attenuating) than the background around them
    assert img[0, 30:90, 80:280].mean() > img[0, 105:125, :].mean()


def test_display_export_jpeg_adds_block_artifacts_but_keeps_the_picture() -> None:
    att = _textured()
    plain = Augment({**DR_OFF, "domain_export": 1.0, "domain_jpeg": 0.0, "domain_gamma": [1.0, 1.0]})
    jpeg = Augment({**DR_OFF, "domain_export": 1.0, "domain_jpeg": 1.0, "domain_jpeg_quality": [20, 20],
                    "domain_gamma": [1.0, 1.0]})
    a, _, _ = plain(att, np.zeros((0, 4)), np.zeros(0), rng=np.random.default_rng(5))
    b, _, _ = jpeg(att, np.zeros((0, 4)), np.zeros(0), rng=np.random.default_rng(5))
    diff = np.abs(np.exp(-a) - np.exp(-b))
    assert diff.mean() > 1e-3  # re-compression changed pixels
    assert np.corrcoef(np.exp(-a).ravel(), np.exp(-b).ravel())[0, 1] > 0.9  # but not the picture


def test_single_energy_replaces_the_low_energy_by_the_engine_rule() -> None:
    from xray.model.preprocess import SINGLE_ENERGY_RATIO

    aug = Augment({**DR_OFF, "domain_single_energy": 1.0, "domain_single_energy_low": 0.0})
    att = _textured()
    img, _, _ = aug(att, np.zeros((0, 4)), np.zeros(0), rng=np.random.default_rng(0))
    assert np.allclose(img[0], att[0], atol=1e-5)
    assert np.allclose(img[1], att[0] * SINGLE_ENERGY_RATIO, atol=1e-4)


def test_single_energy_can_keep_the_low_energy_as_a_lower_energy_scanner_would() -> None:
    from xray.model.preprocess import SINGLE_ENERGY_RATIO

    att = _textured()
    low, _, _ = Augment({**DR_OFF, "domain_single_energy": 1.0, "domain_single_energy_low": 1.0})(
        att, np.zeros((0, 4)), np.zeros(0), rng=np.random.default_rng(0))
    assert np.allclose(low[0], att[1], atol=1e-5)  # the low energy is now the scan
    assert np.allclose(low[1], att[1] * SINGLE_ENERGY_RATIO, atol=1e-4)
    kept = [Augment({**DR_OFF, "domain_single_energy": 1.0, "domain_single_energy_low": 0.5})(
        att, np.zeros((0, 4)), np.zeros(0), rng=np.random.default_rng(seed))[0] for seed in range(40)]
    lows = sum(np.allclose(k[0], att[1], atol=1e-5) for k in kept)
    assert 8 <= lows <= 32  # about half keep the low energy, the rest the high one
    assert all(np.allclose(k[0], att[0], atol=1e-5) or np.allclose(k[0], att[1], atol=1e-5) for k in kept)


def test_row_stripes_vary_rows_not_columns() -> None:
    aug = Augment({**DR_OFF, "domain_stripes": 1.0, "domain_stripe_strength": [0.05, 0.05],
                   "domain_dead_rows": [0, 0]})
    att = np.full((2, 64, 256), 2.0, np.float32)
    img, _, _ = aug(att, np.zeros((0, 4)), np.zeros(0), rng=np.random.default_rng(2))
    assert img[0].std(axis=0).max() > 0.03  # rows differ ...
    assert img[0].std(axis=1).max() < 1e-5  # ... each row is uniform along the scan direction


def test_domain_noise_and_blur_change_the_texture() -> None:
    att = _textured()
    noisy, _, _ = Augment({**DR_OFF, "domain_noise": 1.0})(att, np.zeros((0, 4)), np.zeros(0),
                                                          rng=np.random.default_rng(0))
    blurred, _, _ = Augment({**DR_OFF, "domain_blur": 1.0, "domain_blur_sigma": [2.0, 2.0]})(
        att, np.zeros((0, 4)), np.zeros(0), rng=np.random.default_rng(0))
    region = (0, slice(30, 90), slice(80, 280))
    assert np.abs(np.diff(noisy[region], axis=1)).mean() > np.abs(np.diff(att[region], axis=1)).mean()
    assert np.abs(np.diff(blurred[region], axis=1)).mean() < np.abs(np.diff(att[region], axis=1)).mean()


def test_scatter_lifts_dense_goods_and_starvation_blacks_them_out() -> None:
    from xray.data.augment import ScannerArtifact

    att = _textured()  # goods at A 2.0-2.5 (T about 0.1) in a hold at A 0.3 (T 0.74)
    none = np.zeros((0, 4)), np.zeros(0)
    goods, hold = (0, slice(30, 90), slice(80, 280)), (0, slice(108, 128), slice(None))
    bar = np.full((2, 128, 384), 0.3, np.float32)
    bar[:, 60:64] = 3.0  # a thin dense bar (a beam, a post) in a bright hold
    hazy, _, _ = Augment({**DR_OFF, "domain_scatter": 1.0, "domain_scatter_fraction": [0.1, 0.1]})(
        bar, *none, rng=np.random.default_rng(0))
    assert hazy[0, 60:64].mean() < 2.5  # haze scattered in from the hold lifts it
    assert hazy[0, 100:].mean() > 0.3  # and dims the hold a little
    starved, _, _ = Augment({**DR_OFF, "domain_starvation": 1.0, "domain_starvation_floor": [0.2, 0.2]})(
        att, *none, rng=np.random.default_rng(0))
    black = np.isclose(starved, A_MAX, atol=1e-3)
    assert black[goods].mean() > 0.5  # below the floor, a pixel reads black
    assert black[hold].mean() < 0.01 and np.abs(starved[hold] - att[hold]).mean() > 0.01  # above it, noise
    with pytest.raises(ValueError, match="scanner artifact"):
        ScannerArtifact("afterglow", (0.0, 0.1))


@pytest.mark.parametrize("seed", range(6))
def test_domain_crop_keeps_the_box_on_its_goods(seed: int) -> None:
    aug = Augment({**DR_OFF, "domain_crop": 1.0})
    att = _block_image((100, 30, 200, 90))
    img, boxes, labels = aug(att, np.array([[100, 30, 200, 90]]), np.array([4]), rng=np.random.default_rng(seed))
    assert img.shape == att.shape
    assert labels.tolist() == [4]
    b = boxes[0]
    assert 0 <= b[0] < b[2] <= 384 and 0 <= b[1] < b[3] <= 128
    assert np.allclose(_pixel_box(img), b, atol=2.5)


@pytest.mark.parametrize("seed", range(4))
def test_full_domain_randomisation_keeps_boxes_valid(seed: int) -> None:
    aug = Augment({"domain_randomisation": 1.0, "tip": 0.0})
    att = _block_image((100, 30, 200, 90))
    img, boxes, _ = aug(att, np.array([[100, 30, 200, 90]]), np.array([4]), rng=np.random.default_rng(seed))
    assert img.shape == att.shape and np.isfinite(img).all() and (img >= 0).all() and (img <= A_MAX + 1e-4).all()
    assert len(boxes) == 1 and (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert (boxes >= 0).all() and (boxes[:, [0, 2]] <= 384).all() and (boxes[:, [1, 3]] <= 128).all()


# -- the scanner look on the scan at its own resolution (`domain_scan_resolution`) ---------------


def _detail_spec():
    """The bundled model's input mode (detail channels measured before the shrink), at a small size."""
    from xray.config import InputConfig

    return InputConfig(mode="dual_ratio_detail", size=(128, 384), mean=(1.5, 1.5, 1.1, 0.07), std=(1.5, 1.5, 0.1, 0.18))


def test_scan_resolution_moves_the_scanner_look_off_the_model_input() -> None:
    on = Augment({"domain_randomisation": 1.0, "domain_scan_resolution": True})
    off = Augment({"domain_randomisation": 1.0})
    model_input = {type(t).__name__ for t in on.pipeline.transforms}
    assert "BBoxSafeRandomCrop" in model_input  # the crop moves boxes: it stays on the model input
    assert model_input == {"HorizontalFlip", "VerticalFlip", "Affine", "BBoxSafeRandomCrop"}  # geometry only
    assert on.at_scan_resolution and not off.at_scan_resolution
    assert [type(t).__name__ for t in on.scan_pipeline.transforms] == [  # goods, then scanner, then export
        "AttenuationGain", "AttenuationGamma", "QuantumNoise", "DetectorBlur",
        "SingleEnergy", "ScannerArtifact", "RowStripes", "QuantumNoise", "ScannerArtifact", "DetectorBlur",
        "DisplayExport"]
    # off, the model input keeps the earlier pipeline, blur and all (recipes trained with it reproduce)
    assert {"DisplayExport", "GaussianBlur"} <= {type(t).__name__ for t in off.pipeline.transforms}
    att = _textured()
    assert off.scanner(att, rng=np.random.default_rng(0), px_per_input=3.0) is att
    with pytest.raises(ConfigError, match="domain_scan_resolution"):
        Augment({"domain_scan_resolution": "sometimes"})


@pytest.mark.parametrize(("seed", "pixel_sum", "box"), [
    (2, 112154.25, [3.03, 14.47, 288.43, 99.07]),
    (3, 82703.27, [60.0, 20.0, 300.0, 100.0]),
    (4, 119279.36, [55.98, 23.16, 311.92, 97.41]),
])
def test_without_scan_resolution_training_draws_as_before_it(seed: int, pixel_sum: float, box: list[float]) -> None:
    """Pinned at commit 60c77de, before the option: the recipes that trained the bundled model draw the same images.
    Within float32 rounding (1e-6 of the sum): the look's arithmetic went from float64 to float32 later on,
    while another draw moves the sum by whole percent."""
    img, boxes, _ = Augment({"domain_randomisation": 1.0, "tip": 0.0, "draws": "shared"})(
        _textured(), np.array([[60, 20, 300, 100]]), np.array([2]), rng=np.random.default_rng(seed))
    assert float(img.astype(np.float64).sum()) == pytest.approx(pixel_sum, rel=1e-6)
    assert np.allclose(boxes[0], box, atol=0.01)


def test_detector_blur_sigma_is_in_model_input_pixels() -> None:
    """The same drawn sigma blurs a scan with three pixels to one input pixel three times as wide."""
    aug = Augment({**DR_OFF, "domain_scan_resolution": True, "domain_blur": 1.0, "domain_blur_sigma": [2.0, 2.0]})
    step = np.zeros((1, 16, 400), np.float32)
    step[:, :, 200:] = 3.0
    widths = []
    for px in (1.0, 3.0):
        out = aug.scanner(step, rng=np.random.default_rng(0), px_per_input=px)[0, 8]
        widths.append(int(((out > 0.3) & (out < 2.7)).sum()))  # columns on the edge's ramp
    assert widths[0] >= 4 and 2.6 <= widths[1] / widths[0] <= 3.4


def test_detail_channels_see_the_scanner_look_only_at_scan_resolution(tmp_path) -> None:
    """A starved training scan: measured before the shrink, its detail channel carries the starvation
    noise (as a starved scan's does at inference); put on after the shrink, it stays the clean scan's."""
    from tests.fixtures_dataset import write_dataset
    from xray.data.dataset import XrayDataset

    root = write_dataset(tmp_path / "ds", splits={"train": 2})
    spec = _detail_spec()
    starve = {**DR_OFF, "tip": 0.0, "domain_starvation": 1.0, "domain_starvation_floor": [0.02, 0.02]}

    def detail(**aug: object) -> np.ndarray:
        ds = XrayDataset(root, "train", spec=spec, augment=Augment({**starve, **aug}) if aug else None)
        return np.stack([ds[i][0][3].numpy() for i in range(len(ds))])

    clean, after, before = detail(), detail(domain_scan_resolution=False), detail(domain_scan_resolution=True)
    assert np.allclose(after, clean)  # after the shrink: the detail channel never saw the starvation
    assert before.mean() > clean.mean() + 0.1  # before it: noise energy in the texture channel


def test_a_dataset_without_scan_resolution_draws_as_before_it(tmp_path) -> None:
    """The dataset's items (TIP, detail channels, domain randomisation) pinned at commit 60c77de."""
    from tests.fixtures_dataset import write_dataset
    from xray.data.dataset import XrayDataset

    root = write_dataset(tmp_path / "ds", splits={"train": 3}, size=(192, 576))
    spec = _detail_spec()
    ds = XrayDataset(root, "train", spec=spec, augment=Augment({"domain_randomisation": 1.0, "draws": "shared"}),
                     seed=5)
    sums = [float(ds[i][0].double().sum()) for i in range(3)]
    assert sums == pytest.approx([-76139.73, -92315.62, -65932.5], abs=0.02)


def test_the_dataset_tells_the_scan_look_how_many_scan_pixels_make_an_input_pixel(tmp_path, monkeypatch) -> None:
    from tests.fixtures_dataset import write_dataset
    from xray.data.dataset import XrayDataset

    root = write_dataset(tmp_path / "ds", splits={"train": 1}, size=(256, 768))
    seen: list[float] = []
    real = Augment.scanner

    def spy(self, att, *, rng, px_per_input, **kw):
        seen.append(px_per_input)
        return real(self, att, rng=rng, px_per_input=px_per_input, **kw)

    monkeypatch.setattr(Augment, "scanner", spy)
    spec = _detail_spec()
    XrayDataset(root, "train", spec=spec, augment=Augment({"domain_scan_resolution": True, "tip": 0.0}))[0]
    assert seen == [pytest.approx(2.0)]  # a 256 x 768 scan into 128 x 384


def test_independent_draws_decide_each_transform_on_its_own() -> None:
    """albumentations seeds a pipeline's transforms alike: with `shared`, a horizontal flip (p 0.5) and
    a vertical one (p 0.5) come together or not at all; `independent` gives all four combinations."""
    att = _block_image((40, 20, 140, 90))

    def combos(draws: str) -> set[tuple[bool, bool]]:
        aug = Augment({**OFF, "hflip": 0.5, "vflip": 0.5, "draws": draws})
        out = set()
        for seed in range(40):
            _, boxes, _ = aug(att, np.array([[40, 20, 140, 90]]), np.array([0]), rng=np.random.default_rng(seed))
            out.add((bool(boxes[0, 0] != 40), bool(boxes[0, 1] != 20)))
        return out

    assert combos("shared") == {(False, False), (True, True)}
    assert combos("independent") == {(False, False), (True, False), (False, True), (True, True)}
    with pytest.raises(ConfigError, match="draws"):
        Augment({"draws": "sometimes"})


def _on_8_bit_grid(att: np.ndarray) -> bool:
    levels = np.exp(-att) * 255  # back to transmission grey levels
    return bool(np.allclose(levels[levels > 0.5], np.rint(levels[levels > 0.5]), atol=2e-2))


@pytest.mark.parametrize("scan_resolution", [True, False])
def test_an_exported_scan_is_not_exported_again_without_reexport_and_only_named_formats_get_the_look(scan_resolution: bool) -> None:
    """`domain_reexport: false`: a 16-bit scan still gets the display export; an 8-bit one keeps its own
    grey levels (its other scanner transforms still apply). The default exports both, as recipes so far."""
    export = {**DR_OFF, "domain_export": 1.0, "domain_jpeg": 0.0, "domain_scan_resolution": scan_resolution}
    once, twice = Augment({**export, "domain_reexport": False}), Augment(export)
    att, box, label = _textured(), np.array([[60, 20, 300, 100]]), np.array([2])

    def look(aug: Augment, scan_format: str) -> np.ndarray:
        rng = np.random.default_rng(1)
        scan = aug.scanner(att, rng=rng, px_per_input=1.0, scan_format=scan_format)
        return aug(scan, box, label, rng=rng, scan_format=scan_format)[0]

    assert _on_8_bit_grid(look(once, "dual-16bit")) and _on_8_bit_grid(look(twice, "single-8bit"))
    assert _on_8_bit_grid(look(twice, "dual-16bit"))
    assert np.allclose(look(once, "single-8bit"), att, atol=1e-5)  # nothing else is on: its own pixels, untouched
    assert not _on_8_bit_grid(att)
    stripes = Augment({**export, "domain_reexport": False, "domain_stripes": 1.0,
                       "domain_stripe_strength": [0.05, 0.05]})
    assert not np.allclose(look(stripes, "rgb-8bit"), att, atol=1e-3)  # the look other than the export stays

    # `domain_formats`: only the formats named get the scanner look (any of it); the others keep their own
    some = Augment({**export, "domain_stripes": 1.0, "domain_formats": ["dual-16bit", "single-8bit"]})
    assert _on_8_bit_grid(look(some, "dual-16bit")) and _on_8_bit_grid(look(some, "single-8bit"))
    assert np.allclose(look(some, "rgb-8bit"), att, atol=1e-5)
    with pytest.raises(ConfigError, match="rgb-24bit"):
        Augment({"domain_formats": ["rgb-24bit"]})


def test_the_dataset_tells_the_augmentation_where_each_scan_was_read_from(tmp_path, monkeypatch) -> None:
    import cv2

    from tests.fixtures_dataset import write_dataset
    from xray.data.dataset import XrayDataset

    root = write_dataset(tmp_path / "ds", splits={"train": 2})
    for name in ("s000002_high.png", "s000002_low.png"):  # the second scan as an 8-bit export of itself
        png = root / "images" / "train" / name
        cv2.imwrite(str(png), (cv2.imread(str(png), cv2.IMREAD_UNCHANGED) // 257).astype(np.uint8))
    seen: list[int] = []
    real = Augment.__call__

    def spy(self, att, boxes, labels, *, scan_format="dual-16bit", **kw):
        seen.append(scan_format)
        return real(self, att, boxes, labels, scan_format=scan_format, **kw)

    monkeypatch.setattr(Augment, "__call__", spy)
    ds = XrayDataset(root, "train", spec=_detail_spec(), augment=Augment({"tip": 0.0}))
    ds[0], ds[1]
    assert seen == ["dual-16bit", "dual-8bit"]


def test_domain_formats_accepts_every_scan_kind() -> None:
    """The config spells out xray.scan.ScanKind's values (importing it would load numpy with every config)."""
    from xray.scan import ScanKind

    formats = [f"{k.value}-{d}bit" for k in ScanKind for d in (8, 16)]
    assert Augment({"domain_formats": formats}).config.domain_formats == formats


def _export_reference(u: np.ndarray, g: float, log: bool, black: float, white: float) -> np.ndarray:
    """The display export written plainly in float64: T = exp(-A), the curve, 8 bits, read back as -ln(v)."""
    t = np.exp(-u.astype(np.float64) * A_MAX)
    v = 1.0 - np.clip(-np.log(np.maximum(t, 1 / 65535)) / A_MAX, 0.0, 1.0) if log else t
    lo, hi = np.percentile(v, [black, 100.0 - white])
    q = np.rint(np.clip((v - lo) / max(hi - lo, 1e-6), 0.0, 1.0) ** g * 255)
    return np.clip(-np.log(np.maximum(q / 255.0, 1 / 65535)) / A_MAX, 0.0, 1.0)


def test_the_look_in_float32_is_the_physics_written_plainly() -> None:
    """QuantumNoise and DisplayExport run in float32, in place, for speed; they must still be the
    formulas: noise sigma = exp(A / 2) / sqrt(N0) capped at 0.5, and the export's grey levels."""
    from xray.data.augment import DisplayExport, QuantumNoise

    rng = np.random.default_rng(5)
    u = np.clip(np.moveaxis(_textured(), 0, -1) / A_MAX + rng.random((128, 384, 2), np.float32) * 0.3, 0, 1)
    u = u.astype(np.float32)
    noisy = QuantumNoise((1e4, 1e4)).apply(u.copy(), n0=1e4, seed=7)
    att = u.astype(np.float64) * A_MAX
    sigma = np.minimum(np.exp(att / 2) / np.sqrt(1e4), 0.5)
    expected = np.clip((att + sigma * np.random.default_rng(7).standard_normal(u.shape, dtype=np.float32)) / A_MAX, 0, 1)
    assert noisy.dtype == np.float32 and noisy.shape == u.shape
    assert np.abs(noisy - expected).max() * A_MAX < 1e-4
    assert not np.array_equal(noisy, u)  # it did add noise
    for log in (True, False):
        out = DisplayExport((1.0, 1.0), (90, 90)).apply(u, g=1.3, log=log, black=1.0, white=2.0, quality=None)
        ref = _export_reference(u, 1.3, log, 1.0, 2.0)
        assert out.dtype == np.float32 and out.shape == u.shape
        # The same grey level but where float32 rounding lands a value on the other side of a half level.
        assert np.mean(np.abs(out - ref) > 1e-6) < 1e-3, log
        assert len(np.unique(out)) <= 256  # read back from 8 bits


def test_the_look_on_the_scan_gives_back_its_layout() -> None:
    """`Augment.scanner` hands the pipeline (H, W, C) and returns (C, H, W) float32, C-contiguous, with
    attenuation in the scan's units: with nothing drawn (probabilities 0) the scan comes back as it was."""
    aug = Augment({**DR_OFF, "domain_randomisation": 1.0, "domain_scan_resolution": True, "noise": 0.0, "blur": 0.0})
    for tr in aug.scan_pipeline.transforms:
        tr.p = 0.0
    att = _textured() * np.float32(1.5)
    att[0, 0, :5] = 30.0  # beyond A_MAX: clipped, as before
    out = aug.scanner(att, rng=np.random.default_rng(1), px_per_input=2.0)
    assert out.shape == att.shape and out.dtype == np.float32 and out.flags.c_contiguous
    assert np.allclose(out, np.minimum(att, A_MAX), rtol=1e-6, atol=1e-6)
