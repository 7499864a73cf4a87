"""Pseudo-colour exports of one grey picture are read back through their palette (xray.sources.palette);
material-coded pseudo-colour and other colour pictures stay colour."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from xray.domain import look_group, scan_group
from xray.scan import ScanKind
from xray.simulate.dataset import write_export
from xray.simulate.parcel import simulate_parcel
from xray.simulate.scenarios import simulate_scan
from xray.sources.files import read_scan
from xray.sources.palette import PALETTES, Palette, colour_keys, read_back


def _hold(seed: int = 0, h: int = 160, w: int = 480) -> np.ndarray:
    """A grey 8-bit export: bright air, a dark floor band, noisy cartons and stripes of every grey."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w), 235, np.float32)
    img[h - 20 :] = 25
    for x0 in range(20, w - 60, 70):
        img[20 : h - 25, x0 : x0 + 55] = rng.uniform(20, 200)
    img[30:35, :] = np.linspace(0, 255, w)  # a ramp through every level
    img += rng.normal(0, 4, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _rgb_planes(bgr: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(bgr[..., ::-1].transpose(2, 0, 1)).astype(np.float32) / np.float32(255.0)


@pytest.mark.parametrize("name", ["jet", "turbo", "viridis", "hot"])
def test_a_palette_export_is_read_back_to_its_grey_level(tmp_path: Path, name: str) -> None:
    grey = _hold()
    bgr = cv2.applyColorMap(grey, PALETTES[name])
    found = read_back(_rgb_planes(bgr))
    assert found is not None and found[0] == name
    # lossless: the exact level but where the 6-bit lookup merges neighbouring palette entries
    assert np.abs(found[1] * 255 - grey).mean() < 1.0
    # through a JPEG at the quality viewers export with, as a file: within a few grey levels,
    # where the luminance the reader used before was off by tens of levels and not even monotonic
    cv2.imwrite(str(tmp_path / "s.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, 75])
    scan = read_scan(tmp_path / "s.jpg")
    assert scan.kind is ScanKind.SINGLE and scan.bit_depth == 8 and scan.meta["palette"] == name
    err = np.abs(scan.channels[0] * 255 - grey)
    assert np.median(err) <= 4 and err.mean() < 6
    luminance = cv2.cvtColor(cv2.imread(str(tmp_path / "s.jpg")), cv2.COLOR_BGR2GRAY).astype(np.float32)
    if name == "jet":
        assert np.abs(luminance - grey).mean() > 40


def test_jet_air_reads_as_air_not_as_steel(tmp_path: Path) -> None:
    """JET's ends are both dark: as luminance, air (maroon) would read as dense as the floor (navy)."""
    grey = _hold()
    cv2.imwrite(str(tmp_path / "s.png"), cv2.applyColorMap(grey, cv2.COLORMAP_JET))
    scan = read_scan(tmp_path / "s.png")
    t = scan.channels[0]
    assert t[:15].mean() > 0.85 and t[-15:].mean() < 0.15
    # judged by the verifier as the 8-bit grey export it is; its look compared with other read-back exports
    assert scan_group(scan) == "single-8bit" and look_group(scan) == "single-8bit-palette"


def test_material_coded_pseudo_colour_stays_colour() -> None:
    """Hue from the dual-energy ratio and brightness from transmission lie on no palette."""
    for seed in range(4):
        bgr = simulate_parcel(seed).image
        assert read_back(_rgb_planes(bgr)) is None


def test_pictures_off_every_palette_stay_colour(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    noise = cv2.GaussianBlur(rng.integers(0, 256, (200, 300, 3), dtype=np.uint8), (31, 31), 10)
    noise = cv2.normalize(noise, None, 0, 255, cv2.NORM_MINMAX)
    assert read_back(_rgb_planes(noise)) is None
    # mostly white air (a map that ends in white must not claim it) around a few orange goods
    page = np.full((200, 300, 3), 255, np.uint8)
    page[80:120, 100:200] = (40, 140, 230)
    cv2.imwrite(str(tmp_path / "p.png"), page)
    scan = read_scan(tmp_path / "p.png")
    assert scan.kind is ScanKind.RGB and "palette" not in scan.meta


def test_a_few_flat_colours_on_a_palette_render_no_grey_picture() -> None:
    """A red logo lies on JET's red end, but two flat colours span no stretch of the palette."""
    jet = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_JET)[:, 0]
    logo = np.empty((120, 300, 3), np.uint8)
    logo[:, :150], logo[:, 150:] = jet[225], jet[250]  # two reds, 25 levels apart
    assert read_back(_rgb_planes(logo)) is None
    ramp = np.ascontiguousarray(np.broadcast_to(jet[None, :, :], (120, 256, 3)))  # the whole palette
    found = read_back(_rgb_planes(ramp))
    assert found is not None and found[0] == "jet"


def test_palette_inverse_is_the_nearest_entry() -> None:
    jet = Palette.named("jet")
    entries = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_JET)[:, 0, ::-1]
    keys = colour_keys(np.ascontiguousarray(entries.T[:, :, None]))[:, 0]
    levels = jet.level[keys].astype(int)
    # every entry comes back within the few levels that share its quantised colour, and on the curve
    assert np.abs(levels - np.arange(256)).max() <= 4
    assert jet.distance[keys].max() <= 4


def test_the_simulators_palettes_read_back_to_one_grey_picture(tmp_path: Path) -> None:
    """The same scene exported through JET and through TURBO reads back to the same grey picture."""
    grey = {}
    for profile in ("pseudo-colour", "pseudo-colour-turbo"):
        sim = simulate_scan(5, size="20ft", scenario="clean", profile=profile)
        (tmp_path / profile).mkdir()
        (path,) = write_export(sim, tmp_path / profile)
        scan = read_scan(path)
        assert scan.kind is ScanKind.SINGLE and scan.meta["palette"] == ("jet" if profile == "pseudo-colour" else "turbo")
        grey[profile] = scan.channels[0] * 255
    diff = np.abs(grey["pseudo-colour"] - grey["pseudo-colour-turbo"])
    assert grey["pseudo-colour"].shape == grey["pseudo-colour-turbo"].shape
    assert np.median(diff) <= 4 and diff.mean() < 8


def test_a_read_back_export_is_judged_by_its_own_formats_thresholds(tmp_path: Path) -> None:
    """Read back, a pseudo-colour export is an 8-bit grey picture, but the verifier and the guard judge it
    by the read-back exports' own calibration: its risks run apart from the grey JPEG exports'."""
    from xray.bundled import default_model_dir
    from xray.engine import Engine
    from xray.verify import VerifierConfig

    engine = Engine(default_model_dir(), threads=1)
    sim = simulate_scan(5, size="20ft", scenario="clean", profile="pseudo-colour")
    found = engine.detect(read_scan(*write_export(sim, tmp_path)))
    assert found.scan_format == "single-8bit-palette"
    config = VerifierConfig.from_card(engine.card)
    own, grey = config.for_format("single-8bit-palette"), config.for_format("single-8bit")
    assert "single-8bit-palette" in config.by_format and own.red != grey.red
