"""The hold check: an empty container is measured empty from its attenuation, whatever the model
reads; a loaded one, a material-coded colour rendering and an image that is not a cargo scan never are."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from xray.bundled import default_model_dir
from xray.engine import Engine
from xray.foreign import foreign_images
from xray.hold import EMPTY_LOAD, measure_hold
from xray.scan import ScanKind
from xray.simulate.dataset import write_export
from xray.simulate.parcel import simulate_parcel
from xray.simulate.scenarios import simulate_scan
from xray.sources.files import read_scan

# pseudo-colour: a JET export of a grey picture, read back to that picture (xray.sources.palette)
PHYSICAL = ["portal-dual-16bit", "portal-single-16bit", "export-8bit-jpeg", "pseudo-colour", "mobile-gantry"]


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(default_model_dir(), threads=1)


def found(engine: Engine, tmp_path: Path, seed: int, scenario: str, profile: str):
    sim = simulate_scan(seed, size="20ft", scenario=scenario, profile=profile)
    files = write_export(sim, tmp_path)
    return engine.detect(read_scan(*files))


@pytest.mark.parametrize("profile", PHYSICAL)
def test_an_empty_container_is_measured_empty_and_a_loaded_one_is_not(engine, tmp_path, profile):
    # mobile-gantry is the profile held out of training: the measure is physics, not what was learned.
    for seed in (3, 4):
        empty = found(engine, tmp_path, seed, "empty", profile).hold
        assert empty is not None and empty.empty, (profile, seed, empty)
        loaded = found(engine, tmp_path, seed, "clean", profile).hold
        assert loaded is not None and not loaded.empty and loaded.load > EMPTY_LOAD, (profile, seed, loaded)
        # The gap the threshold sits in, and the empty hold's floor. A loaded scan's floor may go unseen:
        # a log display stretched to a dense load can leave the floor lighter than A 1 (pseudo-colour).
        assert empty.load < loaded.load and empty.floor > 1.0
        if profile != "pseudo-colour":
            assert loaded.floor > 1.0


def test_a_material_coded_rendering_is_not_measured(engine, tmp_path):
    """Hue from the dual-energy ratio is not attenuation: such a picture stays colour and is not measured."""
    cv2.imwrite(str(tmp_path / "bag.png"), simulate_parcel(3).image)
    scan = read_scan(tmp_path / "bag.png")
    assert scan.kind is ScanKind.RGB and engine.detect(scan).hold is None


@pytest.mark.parametrize("kind", ["photos", "documents", "baggage", "noise_flat"])
def test_an_image_that_is_not_a_cargo_scan_is_never_an_empty_hold(engine, kind):
    for scan in foreign_images()[kind]:
        hold = engine.detect(scan).hold
        assert hold is None or not hold.empty, (scan.id, hold)


def container(h: int = 96, w: int = 300) -> np.ndarray:
    """An empty container's attenuation: two walls, and a floor band at 70-74 % of the height."""
    a = np.full((h, w), 0.15, np.float32)
    a[int(0.70 * h) : int(0.74 * h)] = 3.0
    return a


def test_each_of_the_three_facts_is_needed():
    a = container()
    assert measure_hold(a).empty
    loaded = a.copy()
    loaded[30:60, 50:250] = 2.0  # goods in the hold
    assert not measure_hold(loaded).empty and measure_hold(loaded).load > EMPTY_LOAD
    no_walls = a.copy()
    no_walls[a == np.float32(0.15)] = 0.0  # a white page with a dark rule
    assert not measure_hold(no_walls).empty
    no_floor = np.full((96, 300), 0.15, np.float32)  # a flat grey image
    assert not measure_hold(no_floor).empty
    assert measure_hold(np.zeros((4, 300), np.float32)) is None  # too small to place a hold in
    broken = a.copy()
    broken[10, 10] = np.nan
    assert measure_hold(broken) is None  # not finite: not measured, never a NaN in a stored verdict


@pytest.mark.parametrize("rows", [6, 10, 20])
@pytest.mark.parametrize("length", [1.0, 0.5])
def test_a_load_lying_low_on_the_floor_is_not_an_empty_hold(rows, length):
    # Steel plates or tiles, loaded low for their weight: darker than the floor itself when they
    # span the container, lighter when a half-length layer of sacks; on the floor either way.
    h, w = 96, 300
    a = container(h, w)
    x1 = int(w * (0.05 + 0.9 * length))
    a[int(0.70 * h) - rows : int(0.70 * h), int(0.05 * w) : x1] = 6.0 if length == 1.0 else 1.2
    hold = measure_hold(a)
    assert hold is not None and not hold.empty, hold


def test_plates_on_dunnage_and_light_goods_filling_the_hold_are_not_an_empty_hold():
    h, w = 96, 300
    plates = container(h, w)
    plates[int(0.70 * h) - 6 : int(0.70 * h) - 3, 20:280] = 8.0  # on bearers: a gap above the floor
    assert not measure_hold(plates).empty
    light = container(h, w)
    light[15 : int(0.70 * h), 15:285] += 0.35  # foam or mattresses: no column darker than the rest
    hold = measure_hold(light)
    assert not hold.empty and hold.walls > 0.3


def test_a_thick_layer_reaching_above_the_floor_search_is_measured_whole():
    # The floor near 60 % of the height (air above a portal scan's container) and a dense layer on it
    # rising above that line: the dark run is measured whole, and is too thick to be a floor.
    h, w = 120, 300
    a = np.full((h, w), 0.15, np.float32)
    a[: int(0.2 * h)] = 0.0  # air above the roof
    a[int(0.62 * h) : int(0.65 * h)] = 3.0  # the floor
    a[int(0.53 * h) : int(0.62 * h), 15:285] = 8.0  # steel plates on it
    a[int(0.65 * h) :] = 0.3  # chassis and air
    assert not measure_hold(a).empty


def test_a_chassis_rail_below_the_floor_is_not_taken_for_the_floor():
    a = container()
    a[85] = 1.4  # a truck frame rail: dark across the width, one row, below the floor band
    hold = measure_hold(a)
    assert hold.empty and hold.floor == pytest.approx(3.0)


def test_an_engine_whose_guard_cannot_see_the_display_does_not_measure_the_hold(tiny_engine, tmp_path):
    assert tiny_engine.guard is None or "profile" not in tiny_engine.guard.references
    assert found(tiny_engine, tmp_path, 3, "empty", "portal-dual-16bit").hold is None


def test_the_hold_is_kept_with_the_stored_verdict(engine, tmp_path):
    from xray.manifest import Manifest, ManifestLine
    from xray.verdict import Verdict
    from xray.verify import VerifierConfig, verify

    f = found(engine, tmp_path, 3, "empty", "portal-dual-16bit")
    v = verify(f, Manifest(container_id="MSKU1234565", lines=[ManifestLine(hs_code="620342")]),
               config=VerifierConfig.from_card(engine.card))
    again = Verdict.model_validate_json(v.model_dump_json())
    assert again.hold == f.hold and again.hold.empty and again.channel.value == "red"
    # The measured hold, in scan pixels: what the evidence picture frames.
    x1, y1, x2, y2 = again.hold.region
    assert 0 <= x1 < x2 and 0 <= y1 < y2


def test_a_display_the_guard_finds_inverted_is_not_read_as_an_empty_hold():
    from xray.detection import DomainCheck, HoldCheck
    from xray.hold import unread_if_display_off

    bright = HoldCheck(empty=True, load=0.12, walls=0.05, floor=6.0)
    inverted = DomainCheck(in_domain=False, reason="grey-level profile unlike ...", off=["profile", "stats"])
    unread = unread_if_display_off(bright, inverted)
    assert not unread.empty and "inverted" in unread.note and unread.load == bright.load
    # Off for other measures (a noisier scanner), or in domain: the measurement stands.
    assert unread_if_display_off(bright, DomainCheck(in_domain=False, off=["stats", "blocking"])) == bright
    assert unread_if_display_off(bright, DomainCheck()) == bright and unread_if_display_off(bright, None) == bright
    assert unread_if_display_off(None, inverted) is None


def test_the_guard_names_the_measures_that_were_off(engine, tmp_path):
    flagged = 0
    for seed in range(11, 15):
        sim = simulate_scan(seed, size="20ft", scenario="clean", profile="broken")
        domain = engine.detect(read_scan(*write_export(sim, tmp_path))).domain
        assert domain is not None
        assert set(domain.off) <= {"stats", "profile", "blocking", "features"}
        assert len(domain.off) == (len(domain.reason.split("; ")) if domain.reason else 0)
        flagged += not domain.in_domain
    assert flagged >= 3  # the guard flags ~98 % of the broken profile
