"""The out-of-domain guard: its distances, its calibration, the ONNX feature output, and the
bundled model's guard on in-domain scans, broken-profile scans and images that are not cargo scans."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from xray.bundled import default_model_dir
from xray.calibration import split_scans
from xray.domain import (
    FEATURE_OUTPUT,
    REASONS,
    DomainGuard,
    Reference,
    add_feature_output,
    calibrate_guard,
    feature_parity,
    guard_section,
    look_group,
)
from xray.engine import Engine
from xray.errors import ConfigError
from xray.foreign import foreign_images
from xray.manifest import Manifest, ManifestLine
from xray.verdict import Channel, FindingKind, Outcome
from xray.verify import Inspector


def test_mahalanobis_distance_grows_with_distance_from_the_reference() -> None:
    rng = np.random.default_rng(0)
    v = rng.normal(size=(400, 3)) * np.array([1.0, 10.0, 0.1])
    ref = Reference.fit(v)
    assert ref.distance(ref.mean) == pytest.approx(0.0, abs=1e-9)
    # one standard deviation along each axis is about one unit, whatever the axis's scale
    for axis, sd in enumerate([1.0, 10.0, 0.1]):
        step = np.zeros(3)
        step[axis] = sd
        assert 0.7 < ref.distance(ref.mean + step) < 1.4
    assert ref.distance(ref.mean + np.array([5.0, 0, 0])) > 4


def test_a_statistic_constant_in_the_reference_still_counts() -> None:
    rng = np.random.default_rng(1)
    v = np.column_stack([rng.normal(size=200), np.zeros(200)])  # e.g. colour saturation of dual-energy scans
    ref = Reference.fit(v)
    assert np.isfinite(ref.distance(np.array([0.0, 0.0])))
    assert ref.distance(np.array([0.0, 0.2])) > 10 * ref.distance(np.array([1.0, 0.0]))


def _vectors(rng: np.random.Generator, n: int, shift: float = 0.0) -> list[dict[str, np.ndarray]]:
    return [{"stats": rng.normal(size=6) + shift, "features": rng.normal(size=16)} for _ in range(n)]


def test_calibrated_guard_flags_few_in_domain_and_names_what_was_off() -> None:
    rng = np.random.default_rng(2)
    guard, summary = calibrate_guard(_vectors(rng, 600), target=0.01)
    assert summary["scans"] == 600 and summary["folds"] == 5
    # out of fold, about the per-measure targets add up to (two measures at 1 %, the features' at 0.2 %)
    assert 0.004 <= summary["flagged_out_of_fold"] <= 0.03
    fresh = _vectors(rng, 1000)
    flagged = [
        not guard.references["stats"].distance(v["stats"]) <= guard.references["stats"].threshold
        or not guard.references["features"].distance(v["features"]) <= guard.references["features"].threshold
        for v in fresh
    ]
    assert np.mean(flagged) < 0.05
    # a shift of the statistics alone is flagged, with the statistics named as the reason
    section = guard_section(guard, summary)
    restored = DomainGuard.from_card({"domain": json.loads(json.dumps(section))})
    assert restored is not None
    shifted = {"stats": fresh[0]["stats"] + 6.0, "features": fresh[0]["features"]}
    d = restored.references["stats"].distance(shifted["stats"])
    assert d > restored.references["stats"].threshold
    assert restored.references["features"].distance(shifted["features"]) == pytest.approx(
        guard.references["features"].distance(shifted["features"])
    )


def test_out_of_fold_thresholds_flag_fresh_in_domain_scans_at_about_the_target() -> None:
    rng = np.random.default_rng(4)
    guard, summary = calibrate_guard([{"stats": rng.normal(size=8)} for _ in range(2000)], target=0.02)
    ref = guard.references["stats"]
    fresh = np.mean([not ref.distance(rng.normal(size=8)) <= ref.threshold for _ in range(5000)])
    assert 0.01 <= fresh <= 0.035 and 0.01 <= summary["flagged_out_of_fold"] <= 0.035
    # a different dealing of the folds moves the threshold by little
    other, _ = calibrate_guard([{"stats": rng.normal(size=8)} for _ in range(2000)], target=0.02, seed=1)
    assert other.references["stats"].threshold == pytest.approx(ref.threshold, rel=0.1)


def test_guard_calibration_refuses_too_few_or_uneven_scans() -> None:
    rng = np.random.default_rng(3)
    with pytest.raises(ValueError, match="2 folds"):
        calibrate_guard(_vectors(rng, 40), folds=1)
    with pytest.raises(ValueError, match="at least 20"):
        calibrate_guard(_vectors(rng, 10))
    uneven = _vectors(rng, 30)
    del uneven[5]["features"]
    with pytest.raises(ValueError, match="same measures"):
        calibrate_guard(uneven)


def _formats(rng: np.random.Generator, n: int) -> tuple[list[dict[str, np.ndarray]], list[str]]:
    """Two scan formats whose statistics sit far apart: pooled, the reference spans both."""
    vectors, groups = [], []
    for i in range(n):
        g = "single-8bit" if i % 2 else "rgb-8bit"
        centre = np.array([4.0, -4.0, 0.0]) if g == "single-8bit" else np.array([-4.0, 4.0, 0.0])
        vectors.append({"stats": centre + rng.normal(size=3), "features": rng.normal(size=8)})
        groups.append(g)
    return vectors, groups


def test_the_look_is_compared_within_the_scans_own_format() -> None:
    rng = np.random.default_rng(6)
    vectors, groups = _formats(rng, 400)
    guard, summary = calibrate_guard(vectors, groups=groups, target=0.01)
    assert summary["formats"] == {"rgb-8bit": 200, "single-8bit": 200}
    assert summary["grouped_measures"] == ["stats"]  # features stay pooled
    assert set(guard.groups["stats"]) == {"rgb-8bit", "single-8bit"}
    # an 8-bit grey scan that looks like a pseudo-colour one: inside the pooled reference,
    # far outside the grey scans' own
    odd = np.array([-4.0, 4.0, 0.0])
    pooled = guard.references["stats"]
    assert pooled.distance(odd) <= pooled.threshold
    own, is_own = guard.reference("stats", "single-8bit")
    assert is_own and own.distance(odd) > 3 * own.threshold
    # a format the calibration never saw is judged by the pooled reference
    ref, is_own = guard.reference("stats", "dual-16bit")
    assert ref is pooled and not is_own
    # the per-format references survive the card
    restored = DomainGuard.from_card({"domain": json.loads(json.dumps(guard_section(guard, summary)))})
    assert restored is not None
    back, is_own = restored.reference("stats", "single-8bit")
    assert is_own and back.distance(odd) == pytest.approx(own.distance(odd))
    assert back.threshold == own.threshold


def test_a_format_with_too_few_scans_gets_no_reference_of_its_own() -> None:
    from xray.domain import MIN_GROUP_SCANS

    rng = np.random.default_rng(7)
    vectors, groups = _formats(rng, 300)
    groups = ["rare" if i < MIN_GROUP_SCANS - 1 else g for i, g in enumerate(groups)]
    guard, summary = calibrate_guard(vectors, groups=groups)
    assert "rare" not in guard.groups["stats"] and summary["formats"]["rare"] == MIN_GROUP_SCANS - 1
    with pytest.raises(ValueError, match="scan formats"):
        calibrate_guard(vectors, groups=groups[:-1])


def test_a_scan_of_a_format_the_calibration_barely_saw_is_out_of_domain(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pooled references span every format and are too broad to judge one they barely hold:
    such a scan is out of domain by its format, whatever its distances."""
    from xray.domain import MIN_GROUP_SCANS
    from xray.scan import Scan, ScanKind

    rng = np.random.default_rng(8)
    vectors, groups = _formats(rng, 300)
    groups = ["rgb-8bit" if g == "rgb-8bit" and i < MIN_GROUP_SCANS - 1 else "single-8bit" for i, g in enumerate(groups)]
    guard, summary = calibrate_guard(vectors, groups=groups, target=0.01)
    restored = DomainGuard.from_card({"domain": json.loads(json.dumps(guard_section(guard, summary)))})
    assert restored is not None and restored.formats == summary["formats"]
    centre = {"stats": np.mean([v["stats"] for v in vectors], axis=0), "features": np.zeros(8)}
    monkeypatch.setattr(restored, "measures", lambda *a: centre)
    grey = Scan(id="g", channels=np.full((1, 8, 8), 0.5, np.float32), kind=ScanKind.SINGLE, bit_depth=8)
    colour = Scan(id="c", channels=np.full((3, 8, 8), 0.5, np.float32), kind=ScanKind.RGB, bit_depth=8)
    x = np.zeros((3, 8, 8), np.float32)
    assert restored.check(x, (8, 8), grey, None).in_domain
    off = restored.check(x, (8, 8), colour, None)
    assert not off.in_domain and off.off == ["format"]
    assert f"rgb-8bit: {summary['formats']['rgb-8bit']} calibration scans" in off.reason
    # a card from before formats were recorded keeps judging every format by its references
    section = guard_section(guard, {k: v for k, v in summary.items() if k != "formats"})
    old = DomainGuard.from_card({"domain": json.loads(json.dumps(section))})
    assert old is not None
    monkeypatch.setattr(old, "measures", lambda *a: centre)
    assert old.check(x, (8, 8), colour, None).in_domain
    with pytest.raises(ConfigError, match="formats"):
        DomainGuard.from_card({"domain": {**section, "calibration": {"formats": {"rgb-8bit": "many"}}}})


def test_the_grey_level_profile_turns_over_with_an_inverted_display() -> None:
    from xray.domain import PROFILE_BANDS, input_statistics
    from xray.scan import Scan, ScanKind

    # a container: air on top, a load, a heavy floor band at the bottom (attenuation, channel 0)
    h, w = 80, 240
    att = np.zeros((h, w), np.float32)
    att[30:64] = 1.5
    att[64:] = 3.0
    x = np.stack([att, att * 1.16, np.ones_like(att)])
    scan = Scan(id="c", channels=np.exp(-att)[None], kind=ScanKind.SINGLE, bit_depth=8)
    upright = input_statistics(x, (h, w), scan)["profile"]
    inverted = input_statistics(x[:, ::-1], (h, w), scan)["profile"]
    bands = upright[:PROFILE_BANDS]
    assert bands[0] < 0 < bands[-1]  # light roof, heavy floor
    assert inverted[0] > 0 > inverted[PROFILE_BANDS - 1]
    # the same grey levels, so the same display-curve quantiles
    np.testing.assert_allclose(upright[PROFILE_BANDS:], inverted[PROFILE_BANDS:])
    # a brighter display curve moves the quantiles
    assert np.all(
        input_statistics(x * 0.5, (h, w), scan)["profile"][PROFILE_BANDS + 1 :] < upright[PROFILE_BANDS + 1 :]
    )


def test_jpeg_blocking_is_seen_on_or_off_the_block_grid() -> None:
    import cv2

    from xray.domain import blocking
    from xray.scan import Scan, ScanKind

    rng = np.random.default_rng(8)
    # a smooth load with some grain, the way an 8-bit export holds it
    yy, xx = np.mgrid[0:320, 0:960]
    img = np.clip(120 + 60 * np.sin(xx / 37.0) * np.cos(yy / 23.0) + rng.normal(0, 6, yy.shape), 0, 255).astype(
        np.uint8
    )

    def scan(u8: np.ndarray) -> Scan:
        return Scan(id="s", channels=(u8.astype(np.float32) / 255)[None], kind=ScanKind.SINGLE, bit_depth=8)

    def jpeg(u8: np.ndarray, q: int) -> np.ndarray:
        ok, buf = cv2.imencode(".jpg", u8, [cv2.IMWRITE_JPEG_QUALITY, q])
        assert ok
        return np.asarray(cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE))

    clean = blocking(scan(img))
    crushed = jpeg(img, 10)
    assert np.all(blocking(scan(crushed)) > clean + 0.3)
    assert np.all(blocking(scan(crushed)) > blocking(scan(jpeg(img, 90))))
    # cropped off the grid (3 rows, 5 columns): the blocks are still found
    np.testing.assert_allclose(blocking(scan(crushed[3:, 5:])), blocking(scan(crushed)), atol=0.15)
    # too small to hold two blocks: nothing measured
    assert np.all(blocking(scan(img[:10, :10])) == 0.0)


def test_card_without_a_domain_section_has_no_guard_and_a_broken_one_is_refused() -> None:
    assert DomainGuard.from_card({}) is None
    with pytest.raises(ConfigError, match="domain"):
        DomainGuard.from_card(
            {"domain": {"references": {"stats": {"mean": [0, 0], "precision": [[1]], "threshold": 1}}}}
        )
    ok = {"mean": [0.0], "precision": [[1.0]], "threshold": 1.0}
    for groups in (["single-8bit"], {"single-8bit": {"mean": [0.0]}}, {"single-8bit": "far"}):
        with pytest.raises(ConfigError, match="malformed domain section"):
            DomainGuard.from_card({"domain": {"references": {"profile": {**ok, "groups": groups}}}})
    with pytest.raises(ConfigError, match="unknown domain measures"):
        DomainGuard.from_card({"domain": {"references": {"colour": {"mean": [0], "precision": [[1]], "threshold": 1}}}})


def test_feature_output_leaves_every_other_output_bit_identical(tiny_model_dir: Path, tmp_path: Path) -> None:
    src = tiny_model_dir / "model.onnx"
    dst = tmp_path / "model.onnx"
    tensor = add_feature_output(src, dst)
    assert "image_head" in tensor
    rng = np.random.default_rng(4)
    engine = Engine(tiny_model_dir)
    H, W = engine.spec.size
    inputs = [rng.normal(size=(engine.spec.channels, H, W)).astype(np.float32) for _ in range(2)]
    parity = feature_parity(src, dst, inputs)
    assert parity["bit_identical"] and parity["inputs"] == 2
    shutil.copytree(tiny_model_dir, tmp_path / "m")
    shutil.copy(dst, tmp_path / "m" / "model.onnx")
    out = Engine(tmp_path / "m")._run(inputs[0])
    assert out[FEATURE_OUTPUT].shape == (1, engine.card["architecture"]["image_head_channels"])


# -- the bundled model's guard --------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundled() -> Engine:
    engine = Engine(default_model_dir(), threads=1)
    if engine.guard is None:
        pytest.fail("the bundled model card has no calibrated out-of-domain guard (xray calibrate --domain)")
    return engine


@pytest.fixture(scope="module")
def simulated(bundled: Engine, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """In-domain scans (the scanner profiles the bundled model was trained on, as its card names
    them; the first simulator's look for a card that names none) and broken-profile scans."""
    from xray.simulate.dataset import generate_dataset

    trained_on = ((bundled.card.get("training") or {}).get("data") or {}).get("profiles")
    base = tmp_path_factory.mktemp("domain")
    out = {}
    for name, profiles in (("default", trained_on), ("broken", ["broken"])):
        generate_dataset(
            base / name,
            count=6,
            seed=91,
            workers=1,
            mismatch_rate=0.5,
            splits=(0, 0, 1),
            progress=False,
            profiles=profiles,
        )
        out[name] = base / name
    return out


def test_bundled_card_records_the_guard_and_its_measured_figures(bundled: Engine) -> None:
    domain = bundled.card["domain"]
    assert {"stats", "features"} <= set(domain["references"]) <= {"stats", "profile", "blocking", "features"}
    assert bundled.card["export"]["feature_output"]["parity"]["bit_identical"] is True
    measured = domain["measured"]
    assert measured["in_domain_test"]["flagged"] <= 0.02
    assert measured["non_cargo"]["flagged"] >= 0.95
    assert measured["broken"]["flagged"] >= 0.95


def test_calibration_measures_everything_whatever_guard_the_card_already_holds(
    bundled: Engine, simulated: dict[str, Path]
) -> None:
    from xray.calibration import guard_measures

    scans = list(split_scans(simulated["default"], "test"))[:2]
    vectors, groups = guard_measures(bundled, scans)
    assert set(vectors[0]) == {"stats", "profile", "blocking", "features"}
    assert groups == [look_group(s) for s in scans]
    # inspection measures only what the card's guard compares (a guard without blocking skips that pass)
    whole = bundled.model_inputs(scans[0])[0]
    compared = set(bundled.guard.references)
    assert set(bundled.guard.measures(whole.x, whole.lb.resized_hw, scans[0], None)) == compared - {"features"}
    stats_only = DomainGuard({"stats": bundled.guard.references["stats"]})
    assert set(stats_only.measures(whole.x, whole.lb.resized_hw, scans[0], None)) == {"stats"}


def test_a_scan_judged_by_its_formats_reference_is_told_which(bundled: Engine, simulated: dict[str, Path]) -> None:
    scan = next(iter(split_scans(simulated["default"], "test")))
    whole = bundled.model_inputs(scan)[0]
    v = DomainGuard({}).measures(whole.x, whole.lb.resized_hw, scan, None)["profile"]
    near = Reference(mean=v, precision=np.eye(len(v)), threshold=1.0)
    far = Reference(mean=v + 10.0, precision=np.eye(len(v)), threshold=1.0)
    group = look_group(scan)
    judged = DomainGuard({"profile": near}, groups={"profile": {group: far}}).check(
        whole.x, whole.lb.resized_hw, scan, None
    )
    assert not judged.in_domain and judged.distance > judged.threshold
    assert judged.reason == f"grey-level profile unlike the {group} training scans (inverted or re-mapped display?)"
    # another format's reference does not judge this scan: the pooled one does
    other = DomainGuard({"profile": near}, groups={"profile": {"rgb-8bit": far}})
    assert other.check(whole.x, whole.lb.resized_hw, scan, None).in_domain


def test_in_domain_scans_are_read_and_broken_ones_are_flagged(bundled: Engine, simulated: dict[str, Path]) -> None:
    ok = [bundled.detect(s).domain for s in split_scans(simulated["default"], "test")]
    assert sum(d is not None and not d.in_domain for d in ok) <= 1
    broken = [bundled.detect(s).domain for s in split_scans(simulated["broken"], "test")]
    flagged = [d for d in broken if d is not None and not d.in_domain]
    # the card claims >= 95 % on 300 such scans: at most one of six may slip through
    assert len(flagged) >= len(broken) - 1 and all(d.distance > d.threshold for d in flagged)


@pytest.mark.parametrize("kind", ["photos", "documents", "baggage", "noise_flat"])
def test_images_that_are_not_cargo_scans_never_get_a_goods_verdict(bundled: Engine, kind: str) -> None:
    scans = foreign_images(seed=5)[kind]
    inspector = Inspector(bundled)
    # declared empty: whatever the model thinks it sees would be undeclared goods, i.e. red; declared
    # goods: a hold measured empty would be red (`xray.hold`), and no such image is measured so
    empty = Manifest(container_id="MSKU1234565")
    goods = Manifest(container_id="MSKU1234565", lines=[ManifestLine(hs_code="620342")])
    for scan, manifest in zip(scans[:4], [empty, None, goods, goods]):
        v = inspector.inspect(scan, manifest)
        assert v.domain is not None and not v.domain.in_domain, scan.id
        assert v.channel is Channel.YELLOW and v.verdict is Outcome.INCONCLUSIVE
        ood = [f for f in v.findings if f.kind is FindingKind.OUT_OF_DOMAIN]
        # the reason, naming the format whose training scans the image was judged by when there is one
        detail = re.sub(r"the [\w-]+ training scans", "the training scans", ood[0].detail)
        assert ood and any(r in detail for r in REASONS.values()), ood[0].detail


def test_holdout_benchmark_reads_detection_at_the_false_alarm_rate() -> None:
    from benchmarks.holdout import detection_at

    clean = np.linspace(0.0, 0.99, 100)  # 5 % of clean scans at 0.95 or above
    bad = np.array([0.2, 0.97, 0.98, 0.99, 0.999])
    risks = np.concatenate([clean, bad])
    mismatch = np.array([False] * 100 + [True] * 5)
    at = detection_at(risks, mismatch, 0.05)
    assert at["false_alarm_rate"] <= 0.05
    assert at["detection_rate"] == pytest.approx(0.8)
    assert detection_at(clean, np.zeros(100, bool), 0.05)["detection_rate"] is None


def test_holdout_benchmark_breaks_detection_down_by_scenario() -> None:
    from benchmarks.holdout import by_scenario

    risks = np.array([0.1, 0.2, 0.9, 0.3, 0.95, 0.8, 0.7])
    scenarios = ["clean", "clean", "clean", "concealment", "concealment", "missing", "missing"]
    rows = by_scenario(risks, scenarios, 0.75)
    assert rows["clean"] == {"scans": 3, "flagged": pytest.approx(1 / 3)}
    assert rows["concealment"] == {"scans": 2, "flagged": pytest.approx(0.5)}
    assert rows["missing"] == {"scans": 2, "flagged": pytest.approx(0.5)}
    assert by_scenario(risks, scenarios, None) == {}  # no operating point (no clean or no mismatched scans)


def test_guard_options_need_domain_mode(tmp_path: Path) -> None:
    from xray.cli import main

    assert main(["calibrate", "--model", str(tmp_path), "--data", str(tmp_path), "--measure", "x=y"]) == 2


def test_a_card_measures_quantiles_with_the_stride_it_was_calibrated_with(
    bundled: Engine, simulated: dict[str, Path]
) -> None:
    from xray.domain import QUANTILE_STRIDE, guard_section

    scan = next(iter(split_scans(simulated["default"], "test")))
    whole = bundled.model_inputs(scan)[0]
    card = {"input": bundled.card["input"], "domain": guard_section(bundled.guard, {})}
    assert card["domain"]["statistics"]["quantile_stride"] == bundled.guard.quantile_stride
    # A card from before the stride (no key) keeps the every-pixel quantiles its references were fitted on.
    del card["domain"]["statistics"]["quantile_stride"]
    old = DomainGuard.from_card(card)
    assert old is not None and old.quantile_stride == 1
    card["domain"]["statistics"]["quantile_stride"] = QUANTILE_STRIDE
    new = DomainGuard.from_card(card)
    assert new is not None and new.quantile_stride == QUANTILE_STRIDE
    every = old.measures(whole.x, whole.lb.resized_hw, scan, None)["stats"]
    strided = new.measures(whole.x, whole.lb.resized_hw, scan, None)["stats"]
    x0 = whole.x[0, : whole.lb.resized_hw[0], : whole.lb.resized_hw[1]]
    assert every[0] == pytest.approx(np.percentile(x0, 1))
    assert strided[0] == pytest.approx(np.percentile(x0[::QUANTILE_STRIDE, ::QUANTILE_STRIDE], 1))
    assert np.allclose(every, strided, atol=0.05)  # the same look, measured on a quarter of the pixels
    card["domain"]["statistics"]["quantile_stride"] = 0
    with pytest.raises(ConfigError, match="quantile_stride"):
        DomainGuard.from_card(card)
