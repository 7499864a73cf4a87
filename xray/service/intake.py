"""Folder intake: scans a scanner drops into a folder, inspected and recorded like HTTP ones.

A thread polls a `FolderSource` (its ledger makes delivery crash-safe). Each scan
``<id>`` (one file, or ``<id>_high`` + ``<id>_low``) waits for its manifest
``<id>.json`` beside it, the way a lone energy file waits for its partner: up to
the pairing timeout. A scan whose manifest never arrives (or stays unreadable) is
still inspected and recorded — the verifier's no-manifest verdict (detections only,
"inconclusive", yellow), with a note saying why — never dropped.

For each scan: inspect, commit the record (client "folder"), write
``<id>.verdict.json`` beside the scan, and only then acknowledge it to the source.
A crash in between makes the source deliver the scan again; the record is found
by the source's ledger key and not made twice.

A file that fails (a scan that cannot be decoded, a manifest that cannot be read) is moved
to ``rejected/`` beside a ``<name>.reason.json`` note saying why, counted in
``xray_intake_failures_total{reason}``, and the intake goes on with the next file. A scan
whose handling keeps failing for another reason is retried, then rejected the same way
after `MAX_ATTEMPTS` passes: one bad file never stops the intake.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from xray.atomic import write_atomic
from xray.detection import Detections, DomainCheck
from xray.errors import ManifestError, ScanReadError
from xray.manifest import Manifest
from xray.scan import Scan
from xray.service.metrics import Metrics
from xray.service.schemas import inspection_of
from xray.service.store import InspectionRow, Store
from xray.sources.files import ScanFile
from xray.sources.folder import FolderSource
from xray.verdict import Verdict
from xray.verify import Inspector, verify

log = logging.getLogger("xray.service.intake")

FOLDER_CLIENT = "folder"
VERDICT_SUFFIX = ".verdict.json"
REJECTED_DIR = "rejected"
REASON_SUFFIX = ".reason.json"
# Passes a scan may fail in (a database hiccup clears up) before it is rejected.
MAX_ATTEMPTS = 3


@dataclass
class _Waiting:
    scan: Scan
    since: float  # monotonic time the source handed the scan out


class FolderIntake:
    """Runs folder intake in a background thread.

    Args:
        directory: The scanner's drop folder.
        inspector: The shared inspector (engine and verifier thresholds).
        store: The audit store.
        metrics: Where verdicts are counted.
        settle_s: How long a file must stand still before it is read.
        pairing_timeout_s: How long a lone energy file waits for its partner, and a scan for its manifest.
        poll_s: Pause between passes over the folder.
        state_dir: The source's ledger folder (default ``<directory>/.xray-state``).
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        inspector: Inspector,
        store: Store,
        metrics: Metrics,
        settle_s: float = 1.0,
        pairing_timeout_s: float = 30.0,
        poll_s: float = 0.5,
        state_dir: str | Path | None = None,
    ):
        self.directory = Path(directory)
        self.inspector, self.store, self.metrics = inspector, store, metrics
        self.manifest_timeout_s = pairing_timeout_s
        self.poll_s = poll_s
        self.source = FolderSource(
            self.directory,
            state_dir=state_dir,
            settle_s=settle_s,
            pairing_timeout_s=pairing_timeout_s,
            poll_interval_s=poll_s,
            auto_ack=False,
            on_error=self._scan_failed,
        )
        self.settle_s = settle_s
        self._waiting: dict[str, _Waiting] = {}
        self._attempts: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="folder-intake", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Finish the scan in hand, then stop; unacknowledged scans are delivered again on the next start."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        self.source.close()

    def _run(self) -> None:
        log.info("watching %s for scans", self.directory)
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # a database hiccup must not end the watcher: what is unacked comes back
                log.exception("folder intake pass failed; retrying")
            self._stop.wait(self.poll_s)

    def run_once(self) -> int:
        """One pass: take new scans, handle those whose manifest is there (or overdue). Returns how many."""
        for scan in self.source.poll():
            key = scan.meta.get("ledger_key") or scan.id
            self._waiting.setdefault(key, _Waiting(scan, time.monotonic()))
        done = 0
        for key, waiting in list(self._waiting.items()):
            if self._stop.is_set():
                break
            try:
                handled = self._handle(waiting)
            except Exception as e:  # this scan only: the others in the pass go on
                handled = self._failed_attempt(key, waiting.scan, e)
            if handled:
                del self._waiting[key]
                self._attempts.pop(key, None)
                done += 1
        return done

    def _failed_attempt(self, key: str, scan: Scan, error: Exception) -> bool:
        """Count a failed attempt at a scan; after `MAX_ATTEMPTS`, reject it (True: it is dealt with)."""
        self._attempts[key] = attempts = self._attempts.get(key, 0) + 1
        log.exception("folder scan %s failed (attempt %d of %d)", scan.id, attempts, MAX_ATTEMPTS)
        if attempts < MAX_ATTEMPTS:
            return False
        reason = f"failed {attempts} times: {type(error).__name__}: {error}"
        for path in scan.meta.get("paths", []):
            self.reject(Path(path), reason, "inspection_error")
        try:
            self.source.ack(scan)
        except Exception:  # the files are gone from the folder: the scan cannot come back anyway
            log.exception("cannot acknowledge rejected scan %s", scan.id)
        return True

    def _scan_failed(self, error: ScanReadError) -> None:
        """The source could not decode a scan file: move it aside with the reason."""
        self.reject(Path(error.path), error.reason, "scan_unreadable")

    def reject(self, path: Path, reason: str, kind: str) -> None:
        """Move a failed file to ``rejected/`` with a note saying why, and count it."""
        self.metrics.intake_failures.labels(reason=kind).inc()
        folder = self.directory / REJECTED_DIR
        try:
            folder.mkdir(exist_ok=True)
            target = folder / path.name
            if path.exists():
                os.replace(path, target)
            note = {
                "file": path.name,
                "reason": reason,
                "kind": kind,
                "rejected_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            write_atomic(folder / f"{path.name}{REASON_SUFFIX}", json.dumps(note, indent=2, ensure_ascii=True))
        except OSError as e:  # a read-only share: the failure is still logged and counted
            log.error("cannot move %s to %s: %s", path, folder, e)
        log.warning("rejected %s: %s", path.name, reason)

    def _handle(self, waiting: _Waiting) -> bool:
        """Inspect and record a scan if its manifest is ready or overdue; False to wait longer."""
        scan = waiting.scan
        path = self.directory / f"{scan.id}.json"
        manifest, note = None, ""
        try:
            manifest = Manifest.load(path)
        except Exception as e:  # ManifestError, or anything a hostile file makes escape: never the whole intake
            if time.monotonic() - waiting.since < self.manifest_timeout_s:
                return False  # not there yet, or still being written
            if not path.exists():
                note = f"no manifest {path.name} arrived within {self.manifest_timeout_s:g} s; detections only"
            else:
                reason = str(e) if isinstance(e, ManifestError) else f"{type(e).__name__}: {e}"
                note = f"manifest {path.name} unreadable ({reason}); detections only"
                self.reject(path, reason, "manifest_unreadable")
        key = scan.meta.get("ledger_key")
        row = self.store.by_source_key(key) if key else None
        if row is None:  # not recorded by an earlier run that crashed before acknowledging
            row = self._inspect_and_record(scan, manifest, note, key)
        self._write_verdict(scan, row)
        self.source.ack(scan)
        return True

    def _inspect_and_record(self, scan: Scan, manifest: Manifest | None, note: str, key: str | None) -> InspectionRow:
        notes = [note] if note else []
        if scan.meta.get("missing_energy"):
            notes.append(f"{scan.meta['missing_energy']}-energy image never arrived; inspected as single energy")
        try:
            verdict = self.inspector.inspect(scan, manifest)
        except Exception as e:  # a scan the model cannot handle is recorded, not retried forever
            log.exception("inspection of %s failed", scan.id)
            notes.append(f"inspection failed: {e}")
            verdict = self._unreadable(scan, manifest, f"the model could not read the scan: {e}")
        files = self._files(scan, notes)
        row = self.store.record(
            client=FOLDER_CLIENT,
            verdict=verdict,
            files=files,
            manifest=manifest,
            present=self.inspector.config.present,
            note="; ".join(notes),
            source_key=key,
        )
        self.metrics.observe_verdict(row.channel, verdict.timings_ms, FOLDER_CLIENT)
        log.info("folder scan %s: %s (%s)", scan.id, row.channel, row.id)
        return row

    def _unreadable(self, scan: Scan, manifest: Manifest | None, reason: str) -> Verdict:
        """The verifier's verdict on a scan the engine failed on: nothing detected, and out of
        the model's domain (so review, never red)."""
        engine = self.inspector.engine
        found = Detections(
            scan_id=scan.id,
            domain=DomainCheck(in_domain=False, reason=reason),
            model_id=str(getattr(engine, "model_id", "")),
            model_version=str(getattr(engine, "model_version", "")),
        )
        return verify(found, manifest, config=self.inspector.config)

    def _files(self, scan: Scan, notes: list[str]) -> list[ScanFile]:
        """The scan's files again, for the image store — only if they still hold what was inspected."""
        paths, digests = scan.meta.get("paths", []), scan.meta.get("sha256", [])
        try:
            files = [ScanFile.load(p) for p in paths]
        except ScanReadError as e:
            notes.append(f"scan file gone before it was stored: {e}")
            return []
        if [f.sha256 for f in files] != list(digests):
            notes.append("scan file changed after it was inspected; image not stored")
            return []
        return files

    def _write_verdict(self, scan: Scan, row: InspectionRow) -> None:
        # write_atomic's temporary name is hidden: the source ignores it.
        write_atomic(self.directory / f"{scan.id}{VERDICT_SUFFIX}", inspection_of(row).model_dump_json(indent=2))
