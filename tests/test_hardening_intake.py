"""Folder intake under hostile files (issue 16, "Why" 2): a poisoned file is moved to rejected/ with a note,
counted, and never stops the scans behind it."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from xray.service.intake import REASON_SUFFIX, REJECTED_DIR, FolderIntake
from xray.service.metrics import Metrics
from xray.service.store import Store
from xray.verify import Inspector


def drop(src: Path | bytes, folder: Path, name: str) -> None:
    """Put a file (a copy of `src`, or these bytes) into the watched folder whole: the intake runs
    with `settle_s=0`, so a file written in place could be read while still empty."""
    tmp = folder / f".{name}.part"
    if isinstance(src, bytes):
        tmp.write_bytes(src)
    else:
        shutil.copyfile(src, tmp)
    tmp.rename(folder / name)


def wait_for(paths: list[Path], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.is_file() for p in paths):
        assert time.monotonic() < deadline, f"never appeared: {[p.name for p in paths if not p.is_file()]}"
        time.sleep(0.1)


@pytest.fixture
def running_intake(tmp_path, tiny_engine):
    watch = tmp_path / "drop"
    watch.mkdir()
    store = Store(tmp_path / "data")
    metrics = Metrics()
    intake = FolderIntake(
        watch,
        inspector=Inspector(tiny_engine),
        store=store,
        metrics=metrics,
        settle_s=0.0,
        pairing_timeout_s=0.5,
        poll_s=0.05,
    )
    intake.start()  # the real watcher thread, as the service runs it
    yield watch, store, metrics
    intake.stop()
    store.close()


def test_poisoned_manifest_never_stops_the_intake(running_intake, scan_files) -> None:
    watch, store, metrics = running_intake
    drop(('{"container_id": "C1", "lines": ' + "[" * 5000 + "]" * 5000 + "}").encode(), watch, "poison.json")
    drop(scan_files[0].high, watch, "poison_high.png")
    drop(scan_files[0].low, watch, "poison_low.png")
    for n, scan in enumerate(scan_files[1:3]):
        drop(scan.high, watch, f"ok{n}_high.png")
        drop(scan.low, watch, f"ok{n}_low.png")
        drop(scan.manifest, watch, f"ok{n}.json")
    wait_for([watch / "ok0.verdict.json", watch / "ok1.verdict.json", watch / "poison.verdict.json"])
    for n in range(2):
        assert json.loads((watch / f"ok{n}.verdict.json").read_text())["note"] == ""
    poisoned = json.loads((watch / "poison.verdict.json").read_text())
    assert poisoned["verdict"] == "inconclusive" and "unreadable" in poisoned["note"]
    rejected = watch / REJECTED_DIR
    assert (rejected / "poison.json").is_file() and not (watch / "poison.json").exists()
    note = json.loads((rejected / f"poison.json{REASON_SUFFIX}").read_text())
    assert note["file"] == "poison.json" and "nested" in note["reason"]
    assert metrics.intake_failures.labels(reason="manifest_unreadable")._value.get() == 1
    assert store.count() == 3


def test_undecodable_scan_is_moved_aside_and_the_next_one_inspected(running_intake, scan_files) -> None:
    watch, store, metrics = running_intake
    drop(b"\x89PNG\r\n\x1a\n" + b"\0" * 200, watch, "broken.png")
    drop(scan_files[3].high, watch, "next_high.png")
    drop(scan_files[3].low, watch, "next_low.png")
    drop(scan_files[3].manifest, watch, "next.json")
    wait_for([watch / "next.verdict.json", watch / REJECTED_DIR / f"broken.png{REASON_SUFFIX}"])
    note = json.loads((watch / REJECTED_DIR / f"broken.png{REASON_SUFFIX}").read_text())
    assert "PNG" in note["reason"] and note["kind"] == "scan_unreadable"
    assert (watch / REJECTED_DIR / "broken.png").is_file() and not (watch / "broken.png").exists()
    assert metrics.intake_failures.labels(reason="scan_unreadable")._value.get() == 1
    assert 'xray_intake_failures_total{reason="scan_unreadable"} 1.0' in metrics.render().decode()
