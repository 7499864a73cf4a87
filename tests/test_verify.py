"""The verifier on hand-made detections and manifests: every finding kind and channel."""

import pytest

from xray.detection import Detection, Detections, DomainCheck, HoldCheck
from xray.errors import ConfigError
from xray.goods import default_goods_table
from xray.manifest import Manifest, ManifestLine
from xray.verdict import Channel, FindingKind, Outcome
from xray.verify import PresenceMap, VerifierConfig, calibrate, category_weight, verify

HS = {"textiles": "620342", "tobacco": "240220", "machinery": "847989", "electronics": "851712",
      "tyres": "401110", "paper": "480100"}


def manifest(*cats, extra_codes=()):
    return Manifest(container_id="MSKU1234565",
                    lines=[ManifestLine(hs_code=HS[c]) for c in cats] + [ManifestLine(hs_code=c) for c in extra_codes])


def det(cat, score, box=(10, 20, 110, 220)):
    return Detection(box=box, category=cat, score=score)


def verdict_of(dets, m, *, scan_id="", image_scores=None, domain=None, hold=None, **kw):
    """The verifier's verdict on hand-made detections."""
    found = Detections(scan_id=scan_id, detections=dets, image_scores=image_scores or {}, domain=domain, hold=hold)
    return verify(found, m, **kw)


def kinds(v):
    return [(f.kind, f.category) for f in v.findings]


def test_clean_match_goes_green():
    v = verdict_of([det("textiles", 0.95), det("textiles", 0.9)], manifest("textiles"), scan_id="a")
    assert v.verdict is Outcome.MATCH and v.channel is Channel.GREEN and not v.findings
    assert v.risk < 0.1 and v.declared == ["textiles"] and v.scan_id == "a"


def test_concealed_cigarettes_are_undeclared_and_red():
    v = verdict_of([det("textiles", 0.95), det("tobacco", 0.8, (300, 40, 500, 200))], manifest("textiles"))
    assert kinds(v) == [(FindingKind.UNDECLARED, "tobacco")]
    assert v.findings[0].evidence == [(300, 40, 500, 200)] and v.findings[0].confidence == pytest.approx(0.8)
    assert v.verdict is Outcome.MISMATCH and v.channel is Channel.RED


def test_high_risk_goods_weigh_more_than_low_risk_goods():
    tob = verdict_of([det("textiles", 0.95), det("tobacco", 0.6)], manifest("textiles"))
    pap = verdict_of([det("textiles", 0.95), det("paper", 0.6)], manifest("textiles"))
    assert tob.risk > pap.risk


def test_compatible_categories_explain_each_other():
    v = verdict_of([det("electronics", 0.9)], manifest("machinery"))
    assert v.channel is Channel.GREEN and not v.findings


def test_declared_goods_not_seen():
    v = verdict_of([det("textiles", 0.9)], manifest("textiles", "tyres"))
    assert kinds(v) == [(FindingKind.NOT_SEEN, "tyres")]
    assert v.findings[0].confidence == pytest.approx(1.0)
    assert v.channel is Channel.RED


def test_substitution_when_nothing_declared_is_there():
    v = verdict_of([det("tobacco", 0.9)], manifest("textiles"))
    assert kinds(v) == [(FindingKind.SUBSTITUTION, "tobacco")]
    assert "declared textiles" in v.findings[0].detail and v.channel is Channel.RED


def test_false_empty():
    v = verdict_of([det("machinery", 0.85)], manifest())
    assert kinds(v) == [(FindingKind.FALSE_EMPTY, "machinery")] and v.channel is Channel.RED


def test_genuinely_empty_container_declared_empty_is_green():
    v = verdict_of([det("machinery", 0.1)], manifest())
    assert v.channel is Channel.GREEN and not v.findings


def test_goods_declared_but_container_empty():
    v = verdict_of([], manifest("paper"))
    assert kinds(v) == [(FindingKind.EMPTY, None)] and v.verdict is Outcome.MISMATCH


def test_unknown_hs_code_is_a_finding_and_sends_to_review():
    v = verdict_of([det("textiles", 0.95)], manifest("textiles", extra_codes=("999999",)))
    assert kinds(v) == [(FindingKind.UNKNOWN_HS, None)] and "999999" in v.findings[0].detail
    assert v.channel is Channel.YELLOW and v.verdict is Outcome.INCONCLUSIVE


def test_weak_evidence_lands_in_yellow():
    cfg = VerifierConfig(present=0.5, yellow=0.2, red=0.6)
    v = verdict_of([det("textiles", 0.95), det("tyres", 0.35)], manifest("textiles"), config=cfg)
    assert 0.2 <= v.risk < 0.6 and v.channel is Channel.YELLOW
    # Below `present`, so not "seen"; the review still learns what raised the risk.
    assert kinds(v) == [(FindingKind.UNDECLARED, "tyres")] and "suspected" in v.findings[0].detail


def test_risk_rises_with_evidence():
    risks = [verdict_of([det("textiles", 0.9), det("tobacco", s)], manifest("textiles")).risk for s in (0.1, 0.4, 0.7, 0.95)]
    assert risks == sorted(risks) and risks[0] < risks[-1]


def test_config_rejects_yellow_above_red():
    with pytest.raises(ValueError, match="yellow"):
        VerifierConfig(yellow=0.8, red=0.5)


def test_calibration_meets_the_false_alarm_rate():
    clean = [i / 100 for i in range(100)]  # risks 0.00 .. 0.99 on matching scans
    bad = [0.995] * 20
    cfg = calibrate(clean + bad, [False] * 100 + [True] * 20, false_alarm=0.02)
    flagged_clean = sum(r >= cfg.red for r in clean)
    assert flagged_clean <= 2 and all(r >= cfg.red for r in bad)
    assert cfg.yellow <= cfg.red and sum(r >= cfg.yellow for r in clean) <= 10
    assert cfg.false_alarm_rate == 0.02
    with pytest.raises(ValueError, match="matches"):
        calibrate([0.5], [True], false_alarm=0.01)
    with pytest.raises(ValueError, match="false_alarm"):
        calibrate([0.5], [False], false_alarm=0.0)


def test_each_scan_format_holds_its_own_false_alarm_rate():
    # 8-bit exports whose clean scans run hotter than the 16-bit pairs' (as the first mixed model's did)
    cool = [i / 1000 for i in range(300)]  # 16-bit clean risks 0.000 .. 0.299
    hot = [0.3 + i / 500 for i in range(300)]  # 8-bit clean risks 0.30 .. 0.898
    bad = [0.95] * 40
    risks = cool + hot + bad + bad
    labels = [False] * 600 + [True] * 80
    formats = ["dual-16bit"] * 300 + ["single-8bit"] * 300 + ["dual-16bit"] * 40 + ["single-8bit"] * 40
    pooled = calibrate(risks, labels, false_alarm=0.02)
    assert sum(r >= pooled.red for r in hot) == 12 and sum(r >= pooled.red for r in cool) == 0  # 4 % vs 0 %
    cfg = calibrate(risks, labels, false_alarm=0.02, formats=formats)
    for fmt, clean in (("dual-16bit", cool), ("single-8bit", hot)):
        own = cfg.for_format(fmt)
        assert sum(r >= own.red for r in clean) <= 6 and own.yellow <= own.red and own.red < 0.95
    assert cfg.by_format["dual-16bit"].red < cfg.by_format["single-8bit"].red
    assert cfg.for_format("rgb-8bit").red == cfg.red  # a format calibration did not see: the pooled thresholds
    # too few matching scans of a format: no thresholds of its own
    few = calibrate(risks, labels, false_alarm=0.02, formats=formats, min_format_clean=301)
    assert few.by_format == {}
    # the verdict applies the scan's format's red threshold
    m = manifest("textiles")
    hot_scan = Detections(detections=[det("textiles", 0.9), det("tobacco", 0.6)], scan_format="single-8bit")
    cool_scan = hot_scan.model_copy(update={"scan_format": "dual-16bit"})
    config = VerifierConfig.model_validate({**cfg.model_dump(), "by_format": {"single-8bit": {"yellow": 0.3, "red": 0.9},
                                                                              "dual-16bit": {"yellow": 0.2, "red": 0.3}}})
    assert verify(cool_scan, m, config=config).channel is Channel.RED
    assert verify(hot_scan, m, config=config).channel is not Channel.RED
    with pytest.raises(ValueError, match="formats"):
        calibrate(risks, labels, false_alarm=0.02, formats=formats[:-1])
    with pytest.raises(ConfigError, match="yellow"):
        VerifierConfig.from_card({"verifier": {"by_format": {"single-8bit": {"yellow": 0.9, "red": 0.5}}}})


def test_image_level_scores_count_as_evidence_only_with_their_weight():
    dets, m = [det("textiles", 0.95)], manifest("textiles")
    image = {"tobacco": 0.9, "textiles": 0.97}
    off = verdict_of(dets, m, image_scores=image, config=VerifierConfig(image_weight=0.0))
    on = verdict_of(dets, m, image_scores=image, config=VerifierConfig(image_weight=1.0))
    assert off.channel is Channel.GREEN and not off.findings and off.image_scores == image
    assert kinds(on) == [(FindingKind.UNDECLARED, "tobacco")] and on.findings[0].evidence == []
    assert on.risk > off.risk


def test_a_finding_from_the_image_head_cites_the_best_box_of_its_category():
    # Only faint tobacco boxes (below half the presence threshold): the image head carries the
    # finding, and the officer is shown the strongest of those boxes, not none and not all.
    dets = [det("textiles", 0.95), det("tobacco", 0.08, (5, 5, 50, 50)), det("tobacco", 0.15, (300, 40, 500, 200))]
    v = verdict_of(dets, manifest("textiles"), image_scores={"tobacco": 0.9, "textiles": 0.97},
               config=VerifierConfig(image_weight=1.0))
    assert kinds(v) == [(FindingKind.UNDECLARED, "tobacco")]
    assert v.findings[0].evidence == [(300, 40, 500, 200)]


def test_presence_maps_replace_the_raw_scores_of_their_categories():
    # A category whose boxes are unreliable: a 0.6 box means little once calibrated.
    noisy = PresenceMap(bias=-3.0, box=0.5, image=0.0)
    dets, m = [det("textiles", 0.95), det("tobacco", 0.6)], manifest("textiles")
    raw = verdict_of(dets, m)
    mapped = verdict_of(dets, m, config=VerifierConfig(presence={"tobacco": noisy}))
    assert kinds(raw) == [(FindingKind.UNDECLARED, "tobacco")] and kinds(mapped) == []
    assert mapped.risk == pytest.approx(category_weight(default_goods_table(), "tobacco") * noisy(0.6, 0.0))
    assert noisy(0.9, 0.0) > noisy(0.6, 0.0) > noisy(0.0, 0.0) > 0.0  # increasing, floored at no box
    # Stored with the card: the config round-trips through JSON.
    cfg = VerifierConfig(presence={"tobacco": noisy})
    assert VerifierConfig.model_validate_json(cfg.model_dump_json()) == cfg


def test_presence_maps_fitted_on_records_learn_which_scores_mean_loaded():
    import random

    from xray.calibration import fit_presence

    rnd = random.Random(0)
    records = []
    for i in range(200):
        loaded = i % 2 == 0
        box = rnd.uniform(0.5, 0.9) if loaded else rnd.uniform(0.05, 0.6)
        records.append({"detections": [det("tobacco", box)], "image_scores": {"tobacco": rnd.random()},
                        "loaded_truth": ["tobacco"] if loaded else []})
    maps = fit_presence(records)
    assert set(maps) == {"tobacco"}  # the others were never loaded: no map
    t = maps["tobacco"]
    assert t.box > 1.0 and abs(t.image) < t.box / 3  # the box score carries the information, the image score none
    assert t(0.85, 0.5) > 0.9 and t(0.1, 0.5) < 0.1


def test_a_red_or_yellow_verdict_always_names_what_drives_it():
    cfg = VerifierConfig(yellow=0.3, red=0.4)
    # Tobacco under the presence threshold (0.5), yet enough for red: the finding names it.
    v = verdict_of([det("textiles", 0.95), det("tobacco", 0.45)], manifest("textiles"), config=cfg)
    assert v.channel is Channel.RED and kinds(v) == [(FindingKind.UNDECLARED, "tobacco")]
    assert "suspected" in v.findings[0].detail and v.findings[0].confidence == pytest.approx(0.45)
    assert v.findings[0].evidence  # the weak box is still drawn
    # A declared line with weak evidence drives it instead.
    w = verdict_of([det("textiles", 0.95), det("paper", 0.45)], manifest("textiles", "paper"), config=cfg)
    assert w.channel is not Channel.GREEN and kinds(w) == [(FindingKind.NOT_SEEN, "paper")]
    # Green stays without findings.
    g = verdict_of([det("textiles", 0.95), det("tobacco", 0.1)], manifest("textiles"), config=cfg)
    assert g.channel is Channel.GREEN and g.findings == []


def test_the_overlay_draws_the_weak_boxes_a_finding_cites():
    import numpy as np

    from xray.overlay import UNDECLARED_BGR, draw_overlay
    from xray.scan import Scan, ScanKind

    scan = Scan(id="o", channels=np.full((2, 300, 600), 0.8, np.float32), kind=ScanKind.DUAL)
    cfg = VerifierConfig(yellow=0.3, red=0.4)
    v = verdict_of([det("textiles", 0.95, (20, 40, 200, 260)), det("tobacco", 0.45, (300, 40, 500, 260))],
               manifest("textiles"), config=cfg)
    assert v.findings[0].evidence == [(300.0, 40.0, 500.0, 260.0)]
    picture = draw_overlay(scan, v)
    legend = int(34 * max(0.5, 600 / 1800))  # the legend strip under the scan (overlay's layout)
    scan_rows = picture[-(300 + legend):-legend]
    red = np.all(scan_rows == np.array(UNDECLARED_BGR, np.uint8), axis=2)
    assert red[:, 300:505].any() and not red[:, :290].any()  # the weak tobacco box is drawn, in red


def test_the_overlay_does_not_draw_another_class_at_the_coordinates_a_finding_cites():
    import numpy as np

    from xray.overlay import DECLARED_BGR, draw_overlay
    from xray.scan import Scan, ScanKind

    # The head scores every class at one place: a weak firearms box with the very coordinates
    # of the cited tobacco box must not be drawn (nor in the "declared" colour).
    scan = Scan(id="o", channels=np.full((2, 300, 600), 0.8, np.float32), kind=ScanKind.DUAL)
    cfg = VerifierConfig(yellow=0.3, red=0.4)
    weak = (300, 40, 500, 260)
    v = verdict_of([det("textiles", 0.95, (20, 40, 200, 260)), det("tobacco", 0.45, weak), det("firearms", 0.3, weak)],
               manifest("textiles"), config=cfg)
    assert kinds(v) == [(FindingKind.UNDECLARED, "tobacco")]
    picture = draw_overlay(scan, v)
    legend = int(34 * max(0.5, 600 / 1800))
    scan_rows = picture[-(300 + legend):-legend]
    green = np.all(scan_rows == np.array(DECLARED_BGR, np.uint8), axis=2)
    assert green[:, :210].any() and not green[:, 290:].any()


def test_goods_table_shows_the_evidence_the_verifier_weighed():
    """Goods seen by the image-level head alone (no box) appear in the table as seen, with that evidence."""
    v = verdict_of([Detection(box=(0, 0, 10, 10), category="textiles", score=0.9)], manifest("textiles"),
                   image_scores={"tobacco": 0.8, "textiles": 0.95}, config=VerifierConfig(image_weight=1.0))
    rows = {g.category: g for g in v.goods}
    assert rows["textiles"].declared and rows["textiles"].seen and rows["textiles"].evidence == pytest.approx(0.95)
    assert rows["textiles"].best_score == pytest.approx(0.9) and rows["textiles"].boxes == [(0, 0, 10, 10)]
    assert not rows["tobacco"].declared and rows["tobacco"].seen and rows["tobacco"].best_score == 0.0
    assert rows["tobacco"].boxes == [] and rows["tobacco"].threshold == 0.5
    finding = next(f for f in v.findings if f.category == "tobacco")
    assert finding.confidence == pytest.approx(rows["tobacco"].evidence)


def old_declared_vs_found(v, present):
    """The goods table as the service derived it before the verdict carried it (kept as the reference)."""
    from xray.verify import best_scores, evidence

    table = default_goods_table()
    best = best_scores(v.detections, table)
    ev = {k: round(e, 4) for k, e in evidence(v.detections, table, v.image_scores, 0.0).items() if e > 0.0}
    shown = list(v.declared) + [c for c in sorted(ev, key=lambda c: -ev[c]) if c not in v.declared and ev[c] >= present / 2]
    return [(c, table[c].name, c in v.declared, ev.get(c, 0.0) >= present, round(ev.get(c, 0.0), 4),
             round(best.get(c, 0.0), 4)) for c in shown]


@pytest.mark.parametrize("dets, cats", [
    ([det("textiles", 0.95), det("tobacco", 0.8)], ("textiles",)),
    ([det("textiles", 0.95), det("tobacco", 0.3), det("paper", 0.24), det("tyres", 0.26)], ("textiles", "tyres")),
    ([det("machinery", 0.6), det("electronics", 0.55), det("electronics", 0.7)], ("machinery",)),
    ([], ("paper",)),
    ([det("machinery", 0.85)], ()),
    ([det("tobacco", 0.9), det("firearms", 0.49), det("textiles", 0.51)], ("textiles", "electronics")),
])
def test_verdict_goods_are_the_rows_the_service_used_to_derive(dets, cats):
    for present in (0.5, 0.3):
        v = verdict_of(dets, manifest(*cats), config=VerifierConfig(present=present, yellow=0.2, red=0.6))
        rows = [(g.category, g.name, g.declared, g.seen, g.evidence, g.best_score) for g in v.goods]
        assert rows == old_declared_vs_found(v, present)
        for g in v.goods:  # the boxes drawn are the distinct ones reaching the threshold
            assert set(g.boxes) == {d.box for d in dets if d.category == g.category and d.score >= present}
            assert len(g.boxes) == len(set(g.boxes))


def test_overlapping_weak_boxes_of_one_region_are_drawn_once():
    # what a dense 8-bit export gave: many overlapping tobacco boxes over one region, one elsewhere
    region = [det("tobacco", s, (100 + 12 * i, 20 + 8 * i, 300 + 12 * i, 220 + 8 * i)) for i, s in
              enumerate((0.56, 0.44, 0.36, 0.34, 0.27))]
    apart = det("tobacco", 0.32, (600, 20, 700, 220))
    v = verdict_of([*region, apart, det("textiles", 0.9)], manifest("textiles"), config=VerifierConfig(red=0.5))
    finding = next(f for f in v.findings if f.category == "tobacco")
    assert finding.evidence[0] == region[0].box and apart.box in finding.evidence
    assert len(finding.evidence) == 2
    # the risk is the same: only the picture is thinned
    assert v.risk == pytest.approx(verdict_of([region[0], det("textiles", 0.9)], manifest("textiles")).risk)


@pytest.mark.parametrize("cats", [("textiles",), ()])
def test_an_out_of_domain_scan_is_never_red_on_the_models_word(cats):
    dets = [det("textiles", 0.95), det("tobacco", 0.99), det("firearms", 0.99)]
    cfg = VerifierConfig(yellow=0.3, red=0.4)
    assert verdict_of(dets, manifest(*cats), config=cfg).channel is Channel.RED  # in domain: inspection
    far = DomainCheck(in_domain=False, distance=7.5, threshold=3.0, reason="scan unlike the training scans")
    v = verdict_of(dets, manifest(*cats), config=cfg, domain=far)
    assert v.verdict is Outcome.INCONCLUSIVE and v.channel is Channel.YELLOW and v.risk < cfg.red
    assert v.findings[0].kind is FindingKind.OUT_OF_DOMAIN and v.findings[0].detail == "scan unlike the training scans"
    assert v.domain == far
    near = DomainCheck(in_domain=True, distance=1.0, threshold=3.0)
    assert verdict_of(dets, manifest(*cats), config=cfg, domain=near).channel is Channel.RED


EMPTY_HOLD = HoldCheck(empty=True, load=0.17, walls=0.15, floor=3.2)
LOADED_HOLD = HoldCheck(empty=False, load=4.1, walls=2.5, floor=4.0)
FAR = DomainCheck(in_domain=False, distance=7.5, threshold=3.0, reason="scan unlike the training scans")


@pytest.mark.parametrize("domain", [None, FAR], ids=["in-domain", "out-of-domain"])
def test_goods_declared_in_an_empty_hold_the_model_sees_nothing_in_are_red(domain):
    cfg = VerifierConfig(yellow=0.3, red=0.4)
    # Weak evidence of tobacco only (below the presence threshold). Without the hold: red in the
    # model's domain (declared goods not seen), review out of it. With it: an empty container,
    # whatever the guard says.
    dets = [det("tobacco", 0.35), det("textiles", 0.2)]
    without = verdict_of(dets, manifest("textiles"), config=cfg, domain=domain)
    assert without.channel is (Channel.YELLOW if domain else Channel.RED) and without.risk < 1.0
    v = verdict_of(dets, manifest("textiles"), config=cfg, domain=domain, hold=EMPTY_HOLD)
    assert v.verdict is Outcome.MISMATCH and v.channel is Channel.RED and v.risk == 1.0
    expected = [(FindingKind.EMPTY, None)]
    assert kinds(v) == ([(FindingKind.OUT_OF_DOMAIN, None)] + expected if domain else expected)
    assert "empty by its attenuation" in v.findings[-1].detail and v.hold == EMPTY_HOLD
    # An unknown HS code still names the declaration, and is still its own finding.
    v = verdict_of([], manifest(extra_codes=["999999"]), config=cfg, domain=domain, hold=EMPTY_HOLD)
    assert v.channel is Channel.RED and "999999" in v.findings[int(domain is not None)].detail
    assert (FindingKind.UNKNOWN_HS, None) in kinds(v)


def test_a_model_that_sees_goods_is_not_overruled_by_an_empty_hold():
    # The measurement cannot see a thin layer on the floor or a narrow item; where the model sees
    # goods, declared or not, its findings stand, and the guard decides as for any scan.
    cfg = VerifierConfig(yellow=0.3, red=0.4)
    declared = [det("textiles", 0.95)]
    assert verdict_of(declared, manifest("textiles"), config=cfg, hold=EMPTY_HOLD).channel is Channel.GREEN
    v = verdict_of(declared, manifest("textiles"), config=cfg, domain=FAR, hold=EMPTY_HOLD)
    assert v.channel is Channel.YELLOW and (FindingKind.EMPTY, None) not in kinds(v)
    contraband = [det("tobacco", 0.98), det("firearms", 0.98)]
    v = verdict_of(contraband, manifest("textiles"), config=cfg, hold=EMPTY_HOLD)
    assert v.channel is Channel.RED and v.risk < 1.0
    assert {k for k, _ in kinds(v)} == {FindingKind.SUBSTITUTION}


def test_an_empty_hold_changes_nothing_without_goods_declared_or_when_loaded():
    cfg = VerifierConfig(yellow=0.3, red=0.4)
    # Declared empty and measured empty: the model's reading stands (out of domain: review).
    assert verdict_of([], manifest(), config=cfg, hold=EMPTY_HOLD).channel is Channel.GREEN
    assert verdict_of([], manifest(), config=cfg, domain=FAR, hold=EMPTY_HOLD).channel is Channel.YELLOW
    assert verdict_of([], None, config=cfg, hold=EMPTY_HOLD).channel is Channel.YELLOW
    # A loaded hold out of domain stays in review, never red.
    dets = [det("tobacco", 0.99)]
    assert verdict_of(dets, manifest("textiles"), config=cfg, domain=FAR, hold=LOADED_HOLD).channel is Channel.YELLOW
    assert verdict_of(dets, manifest("tobacco"), config=cfg, hold=LOADED_HOLD).channel is Channel.GREEN


def test_no_manifest_gives_a_review_verdict_with_the_detections():
    dets = [det("tobacco", 0.95)]
    cfg = VerifierConfig(yellow=0.25, red=0.4)
    v = verdict_of(dets, None, scan_id="s", config=cfg)
    assert v.verdict is Outcome.INCONCLUSIVE and v.channel is Channel.YELLOW and v.risk == cfg.yellow
    assert kinds(v) == [(FindingKind.NO_MANIFEST, None)] and v.detections == dets and v.declared == []
    assert [(g.category, g.declared, g.seen) for g in v.goods] == [("tobacco", False, True)]


def test_timings_hold_every_stage_and_their_one_total():
    found = Detections(detections=[det("textiles", 0.9)], timings_ms={"preprocess": 1.25, "model": 10.5,
                                                                      "postprocess": 0.25})
    v = verify(found, manifest("textiles"), decode_ms=3.0)
    t = v.timings_ms
    assert list(t) == ["decode", "preprocess", "model", "postprocess", "verify", "total"]
    assert t["verify"] > 0 and t["total"] == pytest.approx(sum(t[k] for k in list(t)[:-1]), abs=2e-3)
    assert t["total"] >= 15.0


def test_declared_rule_any_explains_a_declaration_by_its_best_seen_line():
    """"each": an unseen second line drives the risk; "any": the declaration is explained by the
    line that is seen, and the unseen one is still named as a finding."""
    dets, m = [det("textiles", 0.9), det("tyres", 0.2)], manifest("textiles", "tyres")
    each = verdict_of(dets, m, config=VerifierConfig(declared_rule="each"))
    anyone = verdict_of(dets, m, config=VerifierConfig(declared_rule="any"))
    assert each.risk == pytest.approx(0.7 * 0.8)  # missing_weight * (1 - 0.2)
    assert anyone.risk == pytest.approx(0.7 * 0.1)  # the seen textiles' 1 - 0.9
    assert kinds(anyone) == kinds(each) == [(FindingKind.NOT_SEEN, "tyres")]
    # Nothing declared seen: both rules flag it.
    none = verdict_of([det("machinery", 0.9)], m, config=VerifierConfig(declared_rule="any"))
    assert none.channel is Channel.RED
