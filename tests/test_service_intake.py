"""Folder intake: scans dropped into a watched folder are inspected, recorded and answered beside them."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import httpx
import pytest

from xray.service import Settings, create_app
from xray.service.intake import FolderIntake
from xray.service.metrics import Metrics
from xray.service.store import Store
from xray.verify import Inspector


def drop(src: Path, folder: Path, name: str) -> Path:
    """Copy a file in the way scanners do: under a temporary name, then renamed."""
    tmp = folder / f"{name}.part"
    shutil.copyfile(src, tmp)
    os.replace(tmp, folder / name)
    return folder / name


def wait_for(path: Path, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.05)
    return json.loads(path.read_text())


def test_watched_folder_scan_is_inspected_recorded_and_answered(tmp_path, tiny_engine, live_server,
                                                                scan_files) -> None:
    watch = tmp_path / "drop"
    watch.mkdir()
    settings = Settings(data_dir=tmp_path / "data", auth=False, watch_dir=watch, watch_settle_s=0.1,
                        watch_pairing_timeout_s=5.0, watch_poll_s=0.1)
    scan = scan_files[0]
    app = create_app(settings, engine=tiny_engine)
    with live_server(app) as url:
        drop(scan.high, watch, "lane2-0001_high.png")
        drop(scan.low, watch, "lane2-0001_low.png")
        time.sleep(0.3)  # the manifest comes a little after the images: the scan waits for it
        drop(scan.manifest, watch, "lane2-0001.json")
        answer = wait_for(watch / "lane2-0001.verdict.json")
        assert answer["scan_id"] == "lane2-0001" and answer["client"] == "folder"
        assert answer["verdict"] in ("match", "mismatch", "inconclusive") and answer["note"] == ""
        assert answer["container_id"] == json.loads(scan.manifest.read_text())["container_id"]
        recorded = httpx.get(f"{url}/v1/inspections/{answer['inspection_id']}").json()
        assert recorded["client"] == "folder" and recorded["channel"] == answer["channel"]
        assert len(recorded["image_sha256"]) == 2
        assert httpx.get(f"{url}/v1/inspections/{answer['inspection_id']}/overlay.png").status_code == 200
        assert 'source="folder"' in httpx.get(f"{url}/metrics").text


@pytest.fixture
def intake_parts(tmp_path, tiny_engine):
    watch = tmp_path / "drop"
    watch.mkdir()
    store = Store(tmp_path / "data")
    made: list[FolderIntake] = []

    def make() -> FolderIntake:
        intake = FolderIntake(watch, inspector=Inspector(tiny_engine), store=store, metrics=Metrics(), settle_s=0.0,
                              pairing_timeout_s=0.5, poll_s=0.05)
        made.append(intake)
        return intake

    yield watch, store, make
    for intake in made:
        intake.source.close()
    store.close()


def run_until(intake: FolderIntake, done: int, timeout: float = 20) -> None:
    deadline, total = time.monotonic() + timeout, 0
    while total < done:
        assert time.monotonic() < deadline, "the intake did not handle the scans"
        total += intake.run_once()
        time.sleep(0.05)


def test_scan_without_manifest_is_recorded_not_lost(intake_parts, scan_files) -> None:
    watch, store, make = intake_parts
    intake = make()
    drop(scan_files[1].high, watch, "orphan_high.png")
    drop(scan_files[1].low, watch, "orphan_low.png")
    assert intake.run_once() == 0  # waits for the manifest first
    run_until(intake, 1)
    answer = json.loads((watch / "orphan.verdict.json").read_text())
    assert answer["verdict"] == "inconclusive" and answer["channel"] == "yellow"
    assert "no manifest orphan.json" in answer["note"]
    assert [f["kind"] for f in answer["findings"]] == ["no_manifest"]  # the verifier's rule, not the intake's
    row = store.get(answer["inspection_id"])
    assert row.client == "folder" and row.manifest is None and len(row.image_paths) == 2
    assert (store.data_dir / row.image_paths[0]).is_file()


def test_unreadable_manifest_is_recorded_with_the_reason(intake_parts, scan_files) -> None:
    watch, store, make = intake_parts
    intake = make()
    (watch / "bad.json").write_text('{"container_id": "C1", "lines": [{"hs_code": "tea"}]}')
    drop(scan_files[2].high, watch, "bad_high.png")
    drop(scan_files[2].low, watch, "bad_low.png")
    run_until(intake, 1)
    answer = json.loads((watch / "bad.verdict.json").read_text())
    assert answer["verdict"] == "inconclusive" and "unreadable" in answer["note"] and "hs_code" in answer["note"]


def test_crash_before_ack_does_not_record_twice(intake_parts, scan_files) -> None:
    watch, store, make = intake_parts
    first = make()
    drop(scan_files[3].high, watch, "c1_high.png")
    drop(scan_files[3].low, watch, "c1_low.png")
    drop(scan_files[3].manifest, watch, "c1.json")

    def crash(_scan):
        raise RuntimeError("power cut")

    first.source.ack = crash  # the record is committed, the acknowledgement never happens
    deadline = time.monotonic() + 20
    while store.count() == 0:
        assert time.monotonic() < deadline, "the intake did not record the scan"
        assert first.run_once() == 0  # the failed acknowledgement: not done, retried later
        time.sleep(0.05)
    assert store.count() == 1
    first.source.close()
    (watch / "c1.verdict.json").unlink()

    second = make()  # the restarted service: the source delivers the unacknowledged scan again
    run_until(second, 1)
    assert store.count() == 1  # found by its ledger key, not inspected again
    assert json.loads((watch / "c1.verdict.json").read_text())["inspection_id"] == store.page().rows[0].id
    assert second.run_once() == 0 and store.count() == 1  # acknowledged now: never again
