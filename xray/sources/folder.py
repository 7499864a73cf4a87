"""`FolderSource`: scans that a scanner drops into a directory.

How a file becomes a scan:

* **Ready.** A scan file (PNG, TIFF, JPEG, DICOS/DICOM by suffix; hidden files and
  other suffixes such as ``.part`` are ignored) is read only once its size and
  mtime have stood still for `settle_s`: either its mtime is that old, or this
  source has itself seen it unchanged that long (which also copes with mtimes in
  the future from a share with a skewed clock). It must then also decode
  completely. A file that fails to decode is retried silently until this source
  has watched it unchanged for `settle_s`; only then is it reported as failed,
  so a half-written file is never consumed as an error.
* **Pairing.** ``<id>_high`` + ``<id>_low`` (also ``_he``/``_le``, ``_h``/``_l``) make
  one dual-energy scan with id ``<id>``; a file without such a suffix, and every
  ``.dcm``/``.dicos`` file, is a scan on its own. A lone high (or low) file waits
  up to `pairing_timeout_s` (counted from when it was last seen to change) for its
  partner, then is processed **as a single-energy scan** with
  ``meta["missing_energy"]`` naming the absent energy: the scan is analysed late
  rather than lost. A partner arriving after that is, in turn, a scan of its own.
  If a pair fails because one file is bad, only that file is marked failed; the
  good one goes on waiting for a good partner, then runs single-energy.
* **Order.** Oldest files first, at most `batch_size` scans per pass (each is
  decoded in memory), so a backlog after downtime drains in bounded memory.
* **Identity.** A scan is its id plus the sha256 of its files' content, so a
  file rewritten under a reused name is a new scan, and the same content dropped
  again is not processed twice.
* **Ledger.** An SQLite database (WAL) in `state_dir` records each scan as
  ``claimed`` (handed out), ``done`` (acknowledged) or ``failed`` (with the reason).
  Nothing is marked done until the consumer acknowledges it, so a crash never
  loses a scan: on restart, claimed-but-unacknowledged scans are delivered again
  first; done and failed ones never are. One `FolderSource` at a time may use a
  state directory (a lock file enforces it where the OS supports `fcntl`).

Acknowledgement:

* ``for scan in source:`` acknowledges each scan when the loop asks for the next
  one, i.e. after the loop body finished without an exception (``auto_ack=True``,
  the default). If the body raises or ``break``s, that scan stays unacknowledged
  and is delivered again (``ack`` it yourself before ``break`` if it was handled).
* `poll` hands out each new scan once per process and never acknowledges:
  call `ack` when the scan's result is safely stored, or `release` to have it
  delivered again.

Unreadable files never stop the loop: they are recorded as failed, appended to
`errors` and passed to `on_error`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import sqlite3
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xray.errors import ConfigError, ScanReadError
from xray.scan import Scan
from xray.sources.base import ImageSource
from xray.sources.files import SCAN_SUFFIXES, ScanFile, decode_scan, split_energy_suffix

try:  # POSIX: one FolderSource per state directory
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

_SELF_CONTAINED = frozenset({".dcm", ".dicos"})
_SCHEMA = """
CREATE TABLE IF NOT EXISTS scans (
    key      TEXT PRIMARY KEY,  -- sha256 of the scan id and its files' sha256
    scan_id  TEXT NOT NULL,
    state    TEXT NOT NULL CHECK (state IN ('claimed', 'done', 'failed')),
    recipe   TEXT NOT NULL,     -- JSON: how to read it again (file names, sha256, energies)
    reason   TEXT,              -- why it failed
    updated  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS scans_by_state ON scans (state, scan_id);
-- Files already part of a scan, by name and stat signature, so that later passes
-- skip them without reading and hashing them again.
CREATE TABLE IF NOT EXISTS files (
    name      TEXT NOT NULL,
    signature TEXT NOT NULL,    -- size:mtime_ns:ctime_ns:inode
    key       TEXT NOT NULL,
    PRIMARY KEY (name, signature)
);
"""


# (size, mtime_ns, ctime_ns, inode): a file replaced by another of the same size, even with
# its mtime copied over (cp -p, rsync -t), gets a new inode or ctime, so it is read again.
_Signature = tuple[int, int, int, int]


@dataclass
class _Seen:
    signature: _Signature
    since: float  # clock time this signature was first seen


@dataclass(frozen=True)
class _Candidate:
    """A scan file in the folder that no scan has consumed yet."""

    path: Path
    scan_id: str
    energy: str | None  # "high", "low", or None for a self-contained file
    signature: _Signature
    settled: bool  # unchanged for settle_s by its mtime or by our own watching: try to read it
    watched_stable: bool  # we watched it unchanged for settle_s: a read failure is real
    since: float


class _Ledger:
    """The SQLite record of every scan handed out, acknowledged or failed."""

    def __init__(self, path: Path):
        # The source may be polled in one thread and acked from another; a lock serialises use.
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # a lost 'done' would mean a scan processed twice
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    def state(self, key: str) -> str | None:
        row = self.db.execute("SELECT state FROM scans WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def knows_file(self, name: str, signature: _Signature) -> bool:
        row = self.db.execute(
            "SELECT 1 FROM files WHERE name = ? AND signature = ?", (name, _signature_text(signature))
        ).fetchone()
        return row is not None

    def record(
        self,
        key: str,
        scan_id: str,
        state: str,
        recipe: dict[str, Any],
        files: list[_Candidate],
        *,
        reason: str | None = None,
        now: float,
    ) -> None:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute(
                "INSERT INTO scans (key, scan_id, state, recipe, reason, updated) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET state = excluded.state, reason = excluded.reason, "
                "updated = excluded.updated",
                (key, scan_id, state, json.dumps(recipe), reason, now),
            )
            self.remember_files(key, files)

    def remember_files(self, key: str, files: list[_Candidate]) -> None:
        self.db.executemany(
            "INSERT OR REPLACE INTO files (name, signature, key) VALUES (?, ?, ?)",
            [(c.path.name, _signature_text(c.signature), key) for c in files],
        )

    def set_state(self, keys: list[str], state: str, *, reason: str | None = None, now: float) -> int:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            return sum(
                self.db.execute(
                    "UPDATE scans SET state = ?, reason = ?, updated = ? WHERE key = ? AND state = 'claimed'",
                    (state, reason, now, key),
                ).rowcount
                for key in keys
            )

    def claimed(self) -> list[tuple[str, str, dict[str, Any]]]:
        rows = self.db.execute("SELECT key, scan_id, recipe FROM scans WHERE state = 'claimed' ORDER BY updated")
        return [(key, scan_id, json.loads(recipe)) for key, scan_id, recipe in rows]

    def claimed_keys_of(self, scan_id: str) -> list[str]:
        rows = self.db.execute("SELECT key FROM scans WHERE scan_id = ? AND state = 'claimed'", (scan_id,))
        return [key for (key,) in rows]


def _signature(st: os.stat_result) -> _Signature:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def _signature_text(signature: _Signature) -> str:
    return ":".join(map(str, signature))


def _scan_key(scan_id: str, digests: list[str]) -> str:
    return hashlib.sha256(json.dumps([scan_id, digests]).encode()).hexdigest()


class FolderSource(ImageSource):
    """Watches a directory a scanner writes scans into (see the module docstring for the rules).

    Args:
        directory: The watched directory (not recursive).
        state_dir: Where the ledger lives; default ``<directory>/.xray-state``.
        settle_s: How long a file must stand still before it is read.
        pairing_timeout_s: How long a lone high/low file waits for its partner.
        poll_interval_s: Sleep between passes when iterating.
        batch_size: At most this many scans per `poll` (each is decoded in memory), oldest first.
        pixel_mm: Pixel spacing for every scan instead of what the files say.
        auto_ack: Iteration acknowledges each scan after the loop body (see module docstring).
        on_error: Called with the error of each file recorded as failed.
        clock: Wall-clock time in seconds (comparable with file mtimes); injectable for tests.

    Raises:
        ConfigError: `directory` is not a directory, or another source holds `state_dir`.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        state_dir: str | Path | None = None,
        settle_s: float = 1.0,
        pairing_timeout_s: float = 30.0,
        poll_interval_s: float = 0.5,
        batch_size: int = 8,
        pixel_mm: tuple[float, float] | None = None,
        auto_ack: bool = True,
        on_error: Callable[[ScanReadError], None] | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise ConfigError(f"watched folder {self.directory} is not a directory")
        if settle_s < 0 or pairing_timeout_s < 0 or poll_interval_s <= 0 or batch_size < 1:
            raise ConfigError("settle_s and pairing_timeout_s must be >= 0, poll_interval_s > 0, batch_size >= 1")
        self.state_dir = Path(state_dir) if state_dir is not None else self.directory / ".xray-state"
        self.settle_s = settle_s
        self.pairing_timeout_s = pairing_timeout_s
        self.poll_interval_s = poll_interval_s
        self.batch_size = batch_size
        self.pixel_mm = pixel_mm
        self.auto_ack = auto_ack
        self.on_error = on_error
        self.errors: deque[ScanReadError] = deque(maxlen=1000)  # the most recent failures
        self._clock = clock
        self._stop = threading.Event()
        self._lock = threading.RLock()
        self._seen: dict[str, _Seen] = {}
        self._outstanding: dict[str, str] = {}  # ledger key -> scan id, handed out by this process
        self._redeliver = True  # claims from a previous run (or released ones) go out first

        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot create state directory {self.state_dir}: {e}") from e
        self._lock_file = self._take_lock()
        self._ledger = _Ledger(self.state_dir / "ledger.sqlite")

    def _take_lock(self) -> Any:
        if fcntl is None:
            return None
        handle = open(self.state_dir / "lock", "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            handle.close()
            raise ConfigError(f"state directory {self.state_dir} is in use by another FolderSource") from e
        return handle

    # -- consumer API ---------------------------------------------------------------

    def poll(self) -> list[Scan]:
        """One pass over the folder: the scans ready now, each claimed in the ledger.

        Claimed scans from a previous run (or released ones) come first, then new
        scans oldest first, at most `batch_size` in all. Each scan is handed out once
        per process; `ack` it when done.
        """
        with self._lock:
            now = self._clock()
            scans = self._redeliver_claims(now) if self._redeliver else []
            if len(scans) < self.batch_size:
                for group in self._groups(self._survey(now)):
                    scan = self._take(group, now)
                    if scan is not None:
                        scans.append(scan)
                        if len(scans) == self.batch_size:
                            break
            return scans

    def ack(self, scan: Scan | str) -> bool:
        """Mark a scan done (by the scan, or all claimed scans with this id); False if none was claimed."""
        with self._lock:
            keys = self._keys_of(scan)
            for key in keys:
                self._outstanding.pop(key, None)
            return self._ledger.set_state(keys, "done", now=self._clock()) > 0

    def release(self, scan: Scan | str) -> None:
        """Give a claimed scan back unacknowledged: the next `poll` delivers it again."""
        with self._lock:
            for key in self._keys_of(scan):
                self._outstanding.pop(key, None)
            self._redeliver = True

    def __iter__(self) -> Iterator[Scan]:
        """Poll until `stop`; see the module docstring for when scans are acknowledged."""
        while not self._stop.is_set():
            batch = self.poll()
            for i, scan in enumerate(batch):
                if self._stop.is_set():
                    self._release_all(batch[i:])
                    return
                try:
                    yield scan
                except BaseException:  # GeneratorExit (break, close) or an error thrown in
                    self._release_all(batch[i + 1 :] + ([scan] if self.auto_ack else []))
                    raise
                if self.auto_ack:
                    self.ack(scan)
            if len(batch) < self.batch_size:  # a full batch means a backlog: go on at once
                self._stop.wait(self.poll_interval_s)

    def stop(self) -> None:
        """Make iteration end after the current scan (safe from another thread); final for this source."""
        self._stop.set()

    def close(self) -> None:
        """Stop, close the ledger and free the state directory (join an iterating thread first)."""
        self.stop()
        with self._lock:
            self._ledger.close()
            if self._lock_file is not None:
                self._lock_file.close()
                self._lock_file = None

    # -- internals -------------------------------------------------------------------

    def _keys_of(self, scan: Scan | str) -> list[str]:
        if isinstance(scan, Scan):
            key = scan.meta.get("ledger_key")
            return [key] if key else self._ledger.claimed_keys_of(scan.id)
        return self._ledger.claimed_keys_of(scan)

    def _release_all(self, scans: list[Scan]) -> None:
        for scan in scans:
            self.release(scan)

    def _report(self, error: ScanReadError) -> None:
        log.warning("scan file failed: %s", error)
        self.errors.append(error)
        if self.on_error is not None:
            try:
                self.on_error(error)
            except Exception:  # a broken callback must not stop the watcher
                log.exception("on_error callback failed for %s", error)

    def _survey(self, now: float) -> list[_Candidate]:
        """Stat the folder's scan files, skipping those already part of a scan."""
        try:
            entries = list(os.scandir(self.directory))
        except OSError as e:  # e.g. a network share that dropped out: try again next pass
            log.warning("cannot list %s: %s", self.directory, e)
            return []
        candidates, present = [], set()
        for entry in entries:
            name = entry.name
            if name.startswith(".") or Path(name).suffix.lower() not in SCAN_SUFFIXES:
                continue
            try:
                st = entry.stat()
            except OSError:  # removed between listing and stat
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            present.add(name)
            signature = _signature(st)
            seen = self._seen.get(name)
            if seen is None or seen.signature != signature:
                seen = self._seen[name] = _Seen(signature, now)
            if self._ledger.knows_file(name, signature):
                continue
            watched = now - seen.since >= self.settle_s
            aged = now - st.st_mtime_ns / 1e9 >= self.settle_s
            path = Path(entry.path)
            if path.suffix.lower() in _SELF_CONTAINED:
                scan_id, energy = path.stem, None
            else:
                scan_id, energy = split_energy_suffix(path.stem)
            candidates.append(_Candidate(path, scan_id, energy, signature, aged or watched, watched, seen.since))
        for name in set(self._seen) - present:
            del self._seen[name]
        return candidates

    def _groups(self, candidates: list[_Candidate]) -> list[list[_Candidate]]:
        """Self-contained files alone, energy files by scan id (high first); oldest group first."""
        groups: list[list[_Candidate]] = []
        by_id: dict[str, dict[str, _Candidate]] = {}
        for c in sorted(candidates, key=lambda c: c.path.name):
            if c.energy is None:
                groups.append([c])
            else:
                # Two files for one energy (s1_high.png and s1_h.png): the first pairs, the
                # other is left for a later pass, where it is a lone file.
                by_id.setdefault(c.scan_id, {}).setdefault(c.energy, c)
        for energies in by_id.values():
            groups.append([energies[e] for e in ("high", "low") if e in energies])
        return sorted(groups, key=lambda g: (min(c.signature[1] for c in g), g[0].path.name))

    def _take(self, group: list[_Candidate], now: float) -> Scan | None:
        if not all(c.settled for c in group):
            return None
        lone = group[0] if len(group) == 1 and group[0].energy is not None else None
        if lone is not None and now - lone.since < self.pairing_timeout_s:
            return None  # its partner may still come
        try:
            files = [ScanFile.load(c.path) for c in group]
            changed = any(_signature(os.stat(c.path)) != c.signature for c in group)
        except (ScanReadError, OSError) as e:  # removed or unreadable right now
            log.debug("cannot read %s now: %s", [str(c.path) for c in group], e)
            return None
        if changed:
            return None  # written to while we read it: not settled after all
        scan_id = group[0].scan_id
        digests = [f.sha256 for f in files]
        key = _scan_key(scan_id, digests)
        state = self._ledger.state(key)
        if state in ("done", "failed") or (state == "claimed" and key in self._outstanding):
            with self._ledger.db:  # same content again (e.g. touched): remember, never redo
                self._ledger.remember_files(key, group)
            return None
        recipe = {
            "files": [c.path.name for c in group],
            "sha256": digests,
            "energies": [lone.energy] if lone else None,
            "missing_energy": ({"high": "low", "low": "high"}[lone.energy] if lone and lone.energy else None),
        }
        try:
            scan = self._decode(scan_id, files, key, recipe)
        except ScanReadError as error:
            if not all(c.watched_stable for c in group):
                return None  # maybe still being written: retry until we watched it stand still
            # Mark only the bad file failed: a good partner goes on to wait for a good one.
            bad = [c for c in group if str(c.path) == error.path] or group
            self._ledger.record(key, scan_id, "failed", recipe, bad, reason=error.reason, now=now)
            self._report(error)
            return None
        self._ledger.record(key, scan_id, "claimed", recipe, group, now=now)
        self._outstanding[key] = scan.id
        return scan

    def _decode(self, scan_id: str, files: list[ScanFile], key: str, recipe: dict[str, Any]) -> Scan:
        energies = tuple(recipe["energies"]) if recipe["energies"] else None
        scan = decode_scan(
            files[0], files[1] if len(files) > 1 else None, scan_id=scan_id, pixel_mm=self.pixel_mm, energies=energies
        )
        meta = {**scan.meta, "sha256": recipe["sha256"], "ledger_key": key}
        if recipe["missing_energy"]:
            meta["missing_energy"] = recipe["missing_energy"]
        return dataclasses.replace(scan, meta=meta)

    def _redeliver_claims(self, now: float) -> list[Scan]:
        """Claimed scans not handed out by this process: read them again from their files."""
        scans: list[Scan] = []
        pending = [claim for claim in self._ledger.claimed() if claim[0] not in self._outstanding]
        self._redeliver = len(pending) > self.batch_size  # the rest go out with the next polls
        for key, scan_id, recipe in pending[: self.batch_size]:
            try:
                files = [ScanFile.load(self.directory / name) for name in recipe["files"]]
                for f, digest in zip(files, recipe["sha256"], strict=True):
                    if f.sha256 != digest:
                        raise ScanReadError(f.path, "changed")
                scan = self._decode(scan_id, files, key, recipe)
            except ScanReadError as error:
                # The claimed content is gone; new content under the same names is a new scan.
                error = ScanReadError(error.path, f"{error.reason}; scan {scan_id!r} was claimed, never acknowledged")
                self._ledger.set_state([key], "failed", reason=error.reason, now=now)
                self._report(error)
                continue
            self._outstanding[key] = scan.id
            scans.append(scan)
        return scans
