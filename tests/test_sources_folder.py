"""FolderSource: settled files only, energy pairing, a ledger that survives restarts, errors reported."""

from __future__ import annotations

import os
import queue
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from xray.errors import ConfigError, ScanReadError
from xray.scan import ScanKind
from xray.sources.dicos import write_dicos
from xray.sources.files import read_scan, write_png16
from xray.sources.folder import FolderSource

H, W = 32, 40
SETTLE = 1.0
PAIRING = 30.0


class Clock:
    """A wall clock that only moves when told to; starts at the real time so file mtimes compare."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    folder = tmp_path / "inbox"
    folder.mkdir()
    return folder


def levels16(seed: int) -> np.ndarray:
    values = np.random.default_rng(seed).integers(0, 65536, size=(H, W), dtype=np.uint16)
    values.flat[:3] = [0, 12345, 65535]
    return values


def png_bytes(tmp_path: Path, seed: int) -> bytes:
    return write_png16(tmp_path / f"_src{seed}.png", levels16(seed) / 65535.0).read_bytes()


def age(path: Path, clock: Clock, seconds: float = 10 * SETTLE) -> None:
    """Make a file look written `seconds` ago (no sleeping)."""
    t = clock.now - seconds
    os.utime(path, (t, t))


def drop(folder: Path, name: str, data: bytes, clock: Clock, *, seconds_ago: float = 10 * SETTLE) -> Path:
    path = folder / name
    path.write_bytes(data)
    age(path, clock, seconds_ago)
    return path


def source(folder: Path, clock: Clock, **options: object) -> FolderSource:
    return FolderSource(folder, settle_s=SETTLE, pairing_timeout_s=PAIRING, clock=clock, **options)


def as_u16(channels: np.ndarray) -> np.ndarray:
    return np.round(channels.astype(np.float64) * 65535).astype(np.uint16)


def test_settled_file_becomes_a_scan_once(inbox: Path, clock: Clock, tmp_path: Path) -> None:
    path = drop(inbox, "s1.png", png_bytes(tmp_path, 1), clock)
    with source(inbox, clock) as src:
        [scan] = src.poll()
        assert scan.id == "s1" and scan.kind is ScanKind.SINGLE
        np.testing.assert_array_equal(as_u16(scan.channels[0]), levels16(1))
        assert scan.meta["paths"] == [str(path)] and len(scan.meta["sha256"][0]) == 64
        assert src.poll() == []  # handed out once per process, even before the ack


def test_file_arriving_mid_write_is_taken_only_when_complete(inbox: Path, clock: Clock, tmp_path: Path) -> None:
    data = png_bytes(tmp_path, 2)
    path = inbox / "s2.png"
    path.write_bytes(data[: len(data) // 2])
    with source(inbox, clock) as src:
        assert src.poll() == []  # just written: not settled
        age(path, clock)  # looks old (say, a share with a lagging clock), but we have not watched it settle
        assert src.poll() == [] and not src.errors  # fails to parse: not consumed as an error
        with path.open("ab") as f:
            f.write(data[len(data) // 2 :])
        assert src.poll() == []  # just written again
        clock.advance(SETTLE)
        [scan] = src.poll()
        np.testing.assert_array_equal(as_u16(scan.channels[0]), levels16(2))
        assert not src.errors


def test_file_in_the_future_settles_by_watching(inbox: Path, clock: Clock, tmp_path: Path) -> None:
    drop(inbox, "s3.png", png_bytes(tmp_path, 3), clock, seconds_ago=-3600)  # mtime an hour ahead
    with source(inbox, clock) as src:
        assert src.poll() == []
        clock.advance(SETTLE)
        assert [s.id for s in src.poll()] == ["s3"]


@pytest.mark.parametrize("high, low", [("_high", "_low"), ("_he", "_le"), ("_H", "_L")])
def test_high_and_low_files_pair_into_a_dual_scan(
    inbox: Path, clock: Clock, tmp_path: Path, high: str, low: str
) -> None:
    drop(inbox, f"c9{low}.png", png_bytes(tmp_path, 5), clock)
    drop(inbox, f"c9{high}.png", png_bytes(tmp_path, 4), clock)
    with source(inbox, clock) as src:
        [scan] = src.poll()
    assert scan.id == "c9" and scan.kind is ScanKind.DUAL and scan.energies == ("high", "low")
    np.testing.assert_array_equal(as_u16(scan.channels), np.stack([levels16(4), levels16(5)]))
    assert scan.meta["paths"] == [str(inbox / f"c9{high}.png"), str(inbox / f"c9{low}.png")]


def test_lone_high_waits_for_its_partner(inbox: Path, clock: Clock, tmp_path: Path) -> None:
    drop(inbox, "p1_high.png", png_bytes(tmp_path, 1), clock)
    with source(inbox, clock) as src:
        assert src.poll() == []
        clock.advance(PAIRING / 2)
        assert src.poll() == []
        drop(inbox, "p1_low.png", png_bytes(tmp_path, 2), clock)
        [scan] = src.poll()
    assert scan.kind is ScanKind.DUAL and "missing_energy" not in scan.meta


def test_lone_high_after_pairing_timeout_is_single_energy(inbox: Path, clock: Clock, tmp_path: Path) -> None:
    drop(inbox, "p2_high.png", png_bytes(tmp_path, 1), clock)
    with source(inbox, clock) as src:
        assert src.poll() == []
        clock.advance(PAIRING)
        [scan] = src.poll()
        assert scan.id == "p2" and scan.kind is ScanKind.SINGLE
        assert scan.energies == ("high",) and scan.meta["missing_energy"] == "low"
        src.ack(scan)
        # A partner arriving after the timeout is a scan of its own, after its own wait.
        drop(inbox, "p2_low.png", png_bytes(tmp_path, 2), clock)
        assert src.poll() == []
        clock.advance(PAIRING)
        [late] = src.poll()
        assert late.kind is ScanKind.SINGLE and late.energies == ("low",) and late.meta["missing_energy"] == "high"


def test_dicos_file_is_self_contained(inbox: Path, clock: Clock, tmp_path: Path) -> None:
    high = write_png16(tmp_path / "h.png", levels16(1) / 65535.0)
    dual = read_scan(high, write_png16(tmp_path / "l.png", levels16(2) / 65535.0))
    path = write_dicos(inbox / "d1_high.dcm", dual)
    age(path, clock)
    with source(inbox, clock) as src:
        [scan] = src.poll()  # no wait for a "_low" partner
    assert scan.id == "d1_high" and scan.kind is ScanKind.DUAL
    np.testing.assert_array_equal(as_u16(scan.channels), np.stack([levels16(1), levels16(2)]))


def test_restart_redelivers_unacked_and_never_repeats_acked(inbox: Path, clock: Clock, tmp_path: Path) -> None:
    drop(inbox, "a.png", png_bytes(tmp_path, 1), clock)
    drop(inbox, "b_high.png", png_bytes(tmp_path, 2), clock)
    drop(inbox, "b_low.png", png_bytes(tmp_path, 3), clock)
    src = source(inbox, clock)
    scans = {s.id: s for s in src.poll()}
    assert set(scans) == {"a", "b"}
    assert src.ack(scans["a"])
    src.close()  # "crash" with b claimed but not acknowledged

    src = source(inbox, clock)
    [again] = src.poll()
    assert again.id == "b" and again.kind is ScanKind.DUAL
    assert again.meta["ledger_key"] == scans["b"].meta["ledger_key"]
    np.testing.assert_array_equal(again.channels, scans["b"].channels)
    assert src.poll() == []
    assert src.ack("b")
    src.close()

    for path in inbox.glob("*.png"):
        age(path, clock, 5 * SETTLE)  # touched, same content: still the same scans
    with source(inbox, clock) as src:
        assert src.poll() == []


def test_rewritten_file_with_new_content_is_a_new_scan(inbox: Path, clock: Clock, tmp_path: Path) -> None:
    path = drop(inbox, "s1.png", png_bytes(tmp_path, 1), clock)
    with source(inbox, clock) as src:
        [first] = src.poll()
        src.ack(first)
        path.rename(inbox / "s1.png.done")  # not a scan suffix: ignored
        drop(inbox, "s1.png", png_bytes(tmp_path, 2), clock)
        [second] = src.poll()
        assert second.id == "s1" and second.meta["sha256"] != first.meta["sha256"]
        np.testing.assert_array_equal(as_u16(second.channels[0]), levels16(2))
        src.ack(second)
        drop(inbox, "s1.png", png_bytes(tmp_path, 1), clock)  # the first content again: not redone
        assert src.poll() == []


def test_bad_file_is_reported_not_raised(inbox: Path, clock: Clock, tmp_path: Path) -> None:
    reported: list[ScanReadError] = []
    bad = drop(inbox, "junk.png", b"this is not a png" * 10, clock)
    drop(inbox, "ok.png", png_bytes(tmp_path, 1), clock)
    with source(inbox, clock, on_error=reported.append) as src:
        [ok] = src.poll()
        assert ok.id == "ok" and src.ack(ok)
        assert reported == []  # not yet watched for the settle time
        clock.advance(SETTLE)
        assert src.poll() == []
        [error] = reported
        assert error.path == str(bad) and "not PNG" in error.reason
        assert list(src.errors) == [error]
        clock.advance(SETTLE)
        assert src.poll() == [] and len(reported) == 1  # recorded as failed: reported once
    with source(inbox, clock, on_error=reported.append) as src:
        assert src.poll() == [] and len(reported) == 1  # not after a restart either


def test_bad_low_fails_alone_and_the_high_still_runs(inbox: Path, clock: Clock, tmp_path: Path) -> None:
    drop(inbox, "m1_high.png", png_bytes(tmp_path, 1), clock)
    drop(inbox, "m1_low.png", write_png16(tmp_path / "small.png", np.zeros((H - 2, W))).read_bytes(), clock)
    with source(inbox, clock) as src:
        assert src.poll() == []
        clock.advance(SETTLE)
        assert src.poll() == []
        [error] = src.errors
        assert error.path == str(inbox / "m1_low.png") and "pixels" in error.reason
        clock.advance(PAIRING)
        [scan] = src.poll()
        assert scan.kind is ScanKind.SINGLE and scan.meta["missing_energy"] == "low"
        np.testing.assert_array_equal(as_u16(scan.channels[0]), levels16(1))


def test_claimed_file_removed_before_ack_is_reported_on_restart(inbox: Path, clock: Clock, tmp_path: Path) -> None:
    path = drop(inbox, "gone.png", png_bytes(tmp_path, 1), clock)
    with source(inbox, clock) as src:
        assert len(src.poll()) == 1
    path.unlink()
    with source(inbox, clock) as src:
        assert src.poll() == []
        [error] = src.errors
        assert error.path == str(path) and "never acknowledged" in error.reason


def test_iteration_acks_after_the_loop_body(inbox: Path, clock: Clock, tmp_path: Path) -> None:
    drop(inbox, "i1.png", png_bytes(tmp_path, 1), clock)
    drop(inbox, "i2.png", png_bytes(tmp_path, 2), clock)
    seen = []
    with source(inbox, clock, poll_interval_s=0.01) as src:
        for scan in src:
            seen.append(scan.id)
            if len(seen) == 2:
                src.stop()
    assert seen == ["i1", "i2"]
    with source(inbox, clock) as src:
        assert src.poll() == []


def test_leaving_the_loop_early_leaves_the_scan_unacked(inbox: Path, clock: Clock, tmp_path: Path) -> None:
    drop(inbox, "e1.png", png_bytes(tmp_path, 1), clock)
    with source(inbox, clock, poll_interval_s=0.01) as src:
        for scan in src:
            assert scan.id == "e1"
            break  # the body did not finish: not acknowledged
        assert [s.id for s in src.poll()] == ["e1"]  # released, so delivered again
    with source(inbox, clock) as src:
        assert [s.id for s in src.poll()] == ["e1"]  # and after a restart


def test_source_runs_in_a_service_thread_until_stopped(inbox: Path, tmp_path: Path) -> None:
    src = FolderSource(inbox, settle_s=0.05, pairing_timeout_s=0.05, poll_interval_s=0.01)
    got: queue.Queue = queue.Queue()
    worker = threading.Thread(target=lambda: [got.put(s.id) for s in src], daemon=True)
    worker.start()
    (inbox / "t1.png").write_bytes(png_bytes(tmp_path, 1))
    assert got.get(timeout=10) == "t1"
    src.stop()
    worker.join(timeout=10)
    assert not worker.is_alive()
    src.close()


def test_one_source_per_state_directory(inbox: Path, clock: Clock) -> None:
    with source(inbox, clock), pytest.raises(ConfigError, match="in use"):
        source(inbox, clock)
    source(inbox, clock).close()  # free again once closed


def test_missing_folder_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a directory"):
        FolderSource(tmp_path / "nope")


def test_poll_hands_out_at_most_a_batch_oldest_first(inbox: Path, clock: Clock, tmp_path: Path) -> None:
    for i, name in enumerate(["c.png", "a.png", "b.png"]):
        drop(inbox, name, png_bytes(tmp_path, i), clock, seconds_ago=100 - i)  # c oldest, then a, b
    with source(inbox, clock, batch_size=2) as src:
        assert [s.id for s in src.poll()] == ["c", "a"]
        assert [s.id for s in src.poll()] == ["b"]
