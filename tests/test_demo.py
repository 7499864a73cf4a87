"""The console demo (`make run`): it sends scans of each training profile as a scan centre would."""

from __future__ import annotations

from pathlib import Path

import cv2
import httpx
from conftest import serving

from xray.service import Settings, create_app
from xray.service.demo import main, trained_profiles


def test_the_demo_sends_each_profile_and_every_inspection_is_recorded(tiny_engine, tmp_path: Path, capsys) -> None:
    app = create_app(Settings(data_dir=tmp_path / "service", auth=False), engine=tiny_engine)
    out = tmp_path / "scans"
    with serving(app) as url:
        assert main(["--url", url, "--count", "4", "--size", "20ft", "--out", str(out)]) == 0
        listed = httpx.get(f"{url}/v1/inspections").json()["items"]
    assert len(listed) == 4
    printed = capsys.readouterr().out
    # by default, in turn, the profiles the bundled model's card names (four: 16-bit pair, 16-bit
    # single energy, 8-bit, colour)
    assert trained_profiles() == ["portal-dual-16bit", "portal-single-16bit", "export-8bit-jpeg", "pseudo-colour"]
    for profile in trained_profiles():
        assert profile in printed
    # dual energy: a 16-bit PNG pair; single energy, the 8-bit export and the pseudo-colour picture: one file each
    pictures = {p.name: cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in out.glob("*_*.*") if p.suffix != ".json"}
    assert len(pictures) == 5 and len(list(out.glob("*.json"))) == 4
    kinds = sorted((p.dtype.name, p.ndim) for p in pictures.values())
    assert kinds == [("uint16", 2), ("uint16", 2), ("uint16", 2), ("uint8", 2), ("uint8", 3)]


def test_the_demo_refuses_an_unknown_profile(tmp_path: Path, capsys) -> None:
    assert main(["--url", "http://127.0.0.1:9", "--profile", "portal-dual-16bit,nonesuch", "--out", str(tmp_path)]) == 2
    assert "nonesuch" in capsys.readouterr().err
