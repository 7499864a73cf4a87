"""The audit store: every inspection, its images, its verdict and the officers' reviews.

SQLAlchemy 2.x over SQLite (WAL, synchronous=FULL) by default, any other database
(PostgreSQL) by URL. Scan images are stored content-addressed under the data
directory (``images/ab/abcdef....png`` by sha256), written and fsynced before the
row that names them is committed, so a committed record always has its evidence.

Inspection ids are ULID-like: 26 Crockford base32 characters, a millisecond
timestamp then randomness, monotonic within the process — sorting by id is sorting
by creation time, which is what pagination relies on.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    create_engine,
    event,
    func,
    select,
    text,
)
from sqlalchemy.engine import Engine as SqlEngine
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    mapped_column,
    relationship,
    sessionmaker,
)

from xray.atomic import write_atomic
from xray.errors import ConfigError
from xray.manifest import Manifest
from xray.sources.files import ScanFile
from xray.verdict import Channel, Verdict

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
INSPECTION_ID_RE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
# Stored image suffix by the format `ScanFile.format` detects (the suffix lets DICOS without preamble decode).
IMAGE_SUFFIX = {"png": ".png", "tiff": ".tif", "jpeg": ".jpg", "dicom": ".dcm"}


class _IdClock:
    """ULID-like ids, strictly increasing within the process even inside one millisecond."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = 0
        self._last_rand = 0

    def new(self) -> str:
        with self._lock:
            ms = time.time_ns() // 1_000_000
            if ms <= self._last_ms:  # same millisecond (or the clock stepped back): count up
                ms, rand = self._last_ms, self._last_rand + 1
            else:
                rand = secrets.randbits(80)
            self._last_ms, self._last_rand = ms, rand
        n = (ms << 80) | rand
        return "".join(_CROCKFORD[(n >> (5 * i)) & 31] for i in reversed(range(26)))


new_inspection_id = _IdClock().new


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(t: datetime) -> datetime:
    """SQLite returns naive datetimes; everything stored is UTC."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class InspectionRow(Base):
    __tablename__ = "inspections"

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    client: Mapped[str] = mapped_column(String(64))  # API key id, "anonymous" or "folder"
    scan_id: Mapped[str] = mapped_column(Text)  # a file stem: up to 255 bytes, and PostgreSQL enforces lengths
    container_id: Mapped[str | None] = mapped_column(String(64))
    image_sha256: Mapped[list[str]] = mapped_column(JSON)  # high first for a dual-energy pair
    image_paths: Mapped[list[str]] = mapped_column(JSON)  # relative to the data directory
    manifest: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # None: no manifest arrived
    model_id: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[str] = mapped_column(String(64))
    present: Mapped[float] = mapped_column(Float)  # the model's "seen" score, for the goods table
    verdict: Mapped[dict[str, Any]] = mapped_column(JSON)
    outcome: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(8), index=True)
    risk: Mapped[float] = mapped_column(Float)
    timings_ms: Mapped[dict[str, float]] = mapped_column(JSON)
    note: Mapped[str] = mapped_column(Text, default="")  # why a verdict is not a normal one
    source_key: Mapped[str | None] = mapped_column(String(64), unique=True)  # folder ledger key: no double records
    # The latest review (all of them are in `reviews`).
    review_decision: Mapped[str | None] = mapped_column(String(16))
    review_channel: Mapped[str | None] = mapped_column(String(8))
    review_note: Mapped[str | None] = mapped_column(Text)
    reviewer: Mapped[str | None] = mapped_column(String(100))
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    reviews: Mapped[list[ReviewRow]] = relationship(
        back_populates="inspection", order_by="ReviewRow.id", lazy="selectin"
    )


class ReviewRow(Base):
    """One officer decision; append-only, so the trail shows every change of mind."""

    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    inspection_id: Mapped[str] = mapped_column(ForeignKey("inspections.id"), index=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    decision: Mapped[str] = mapped_column(String(16))  # confirm | override
    channel: Mapped[str] = mapped_column(String(8))  # the channel the officer settled on
    note: Mapped[str] = mapped_column(Text, default="")
    reviewer: Mapped[str] = mapped_column(String(100))
    client: Mapped[str] = mapped_column(String(64))

    inspection: Mapped[InspectionRow] = relationship(back_populates="reviews")


class ApiKeyRow(Base):
    """An API key as stored: its public id and a salted scrypt hash of the whole key, never the key."""

    __tablename__ = "service_keys"  # not "api_keys": that table held unsalted sha256 hashes

    key_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    salt: Mapped[str] = mapped_column(String(32))
    scrypt: Mapped[str] = mapped_column(String(128))
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    label: Mapped[str] = mapped_column(String(100), default="")
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


@dataclass(frozen=True)
class StoredImage:
    sha256: str
    path: str  # relative to the data directory


@dataclass(frozen=True)
class Page:
    rows: list[InspectionRow]
    next_cursor: str | None


class Store:
    """The audit database plus the content-addressed image folder.

    Args:
        data_dir: Holds ``images/``, ``overlays/`` and, by default, ``xray.sqlite``.
        url: SQLAlchemy database URL (default: SQLite in the data directory), e.g.
            ``postgresql+psycopg://user@host/dbname`` (needs the ``postgres`` extra).
    """

    def __init__(self, data_dir: str | Path, url: str | None = None):
        self.data_dir = Path(data_dir)
        db_file = self.data_dir / "xray.sqlite"
        try:
            # Inspections, images and key hashes are for the service's user only: folders 0700, files 0600.
            for d in (self.data_dir, self.data_dir / "images", self.data_dir / "overlays"):
                d.mkdir(mode=0o700, parents=True, exist_ok=True)
                os.chmod(d, 0o700)
            if url is None:
                # SQLite gives its -wal and -shm files the database file's mode: create it 0600 first.
                os.close(os.open(db_file, os.O_CREAT | os.O_RDWR, 0o600))
                os.chmod(db_file, 0o600)
        except OSError as e:
            raise ConfigError(f"cannot create data directory {self.data_dir}: {e}") from e
        self.url = url or f"sqlite:///{db_file.resolve()}"
        self.db = self._connect(self.url)
        Base.metadata.create_all(self.db)
        self.session = sessionmaker(self.db, expire_on_commit=False)

    @staticmethod
    def _connect(url: str) -> SqlEngine:
        if url.startswith("sqlite"):
            # Threads of the inference pool and the folder watcher share the file; a writer
            # waits up to 30 s for another's lock instead of failing.
            db = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

            @event.listens_for(db, "connect")
            def _pragmas(conn: Any, _record: Any) -> None:
                cur = conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=FULL")  # a committed inspection survives a power cut
                cur.execute("PRAGMA foreign_keys=ON")
                cur.close()

            return db
        return create_engine(url, pool_pre_ping=True)

    def close(self) -> None:
        self.db.dispose()

    def ping(self) -> bool:
        """True when the database answers."""
        try:
            with self.db.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:  # any driver error means "not ready"
            return False

    # -- images ----------------------------------------------------------------------

    def put_image(self, data: bytes, fmt: str, sha256: str | None = None) -> StoredImage:
        """Store image bytes under their sha256 (once; the same content is not written twice)."""
        digest = sha256 or hashlib.sha256(data).hexdigest()
        rel = Path("images") / digest[:2] / f"{digest}{IMAGE_SUFFIX.get(fmt, '.bin')}"
        path = self.data_dir / rel
        if not path.is_file():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_atomic(path, data, fsync=True, mode=0o600)  # a reader never sees half an image
        return StoredImage(digest, rel.as_posix())

    def image_path(self, rel: str) -> Path:
        return self.data_dir / rel

    def overlay_path(self, inspection_id: str) -> Path:
        return self.data_dir / "overlays" / f"{inspection_id}.png"

    # -- inspections -----------------------------------------------------------------

    def add(
        self,
        *,
        client: str,
        verdict: Verdict,
        images: list[StoredImage],
        manifest: dict[str, Any] | None,
        container_id: str | None,
        present: float,
        note: str = "",
        source_key: str | None = None,
    ) -> InspectionRow:
        """Record an inspection; returns the committed row."""
        row = InspectionRow(
            id=new_inspection_id(),
            created=utcnow(),
            client=client,
            scan_id=verdict.scan_id,
            container_id=container_id,
            image_sha256=[i.sha256 for i in images],
            image_paths=[i.path for i in images],
            manifest=manifest,
            model_id=verdict.model_id,
            model_version=verdict.model_version,
            present=present,
            verdict=verdict.model_dump(mode="json"),
            outcome=verdict.verdict.value,
            channel=verdict.channel.value,
            risk=verdict.risk,
            timings_ms=dict(verdict.timings_ms),
            note=note,
            source_key=source_key,
            reviews=[],  # loaded (empty), so the row can be read after its session closes
        )
        with self.session() as s, s.begin():
            s.add(row)
        return row

    def record(
        self,
        *,
        client: str,
        verdict: Verdict,
        files: list[ScanFile],
        manifest: Manifest | None,
        present: float,
        note: str = "",
        source_key: str | None = None,
    ) -> InspectionRow:
        """Store the scan files (content-addressed) and then commit the inspection that names them."""
        images = [self.put_image(f.data, f.format, f.sha256) for f in files]
        return self.add(
            client=client,
            verdict=verdict,
            images=images,
            manifest=manifest.model_dump(mode="json", exclude_none=True) if manifest else None,
            container_id=manifest.container_id if manifest else None,
            present=present,
            note=note,
            source_key=source_key,
        )

    def get(self, inspection_id: str) -> InspectionRow | None:
        with self.session() as s:
            return s.get(InspectionRow, inspection_id)

    def by_source_key(self, key: str) -> InspectionRow | None:
        with self.session() as s:
            return s.scalars(select(InspectionRow).where(InspectionRow.source_key == key)).first()

    def page(
        self,
        *,
        channel: Channel | None = None,
        since: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """Inspections newest first; `cursor` is the last id of the previous page."""
        q = select(InspectionRow).order_by(InspectionRow.id.desc()).limit(limit + 1)
        if channel is not None:
            q = q.where(InspectionRow.channel == Channel(channel).value)
        if since is not None:
            q = q.where(InspectionRow.created >= as_utc(since))
        if cursor is not None:
            q = q.where(InspectionRow.id < cursor)
        with self.session() as s:
            rows = list(s.scalars(q))
        more = len(rows) > limit
        rows = rows[:limit]
        return Page(rows, rows[-1].id if more and rows else None)

    def count(self) -> int:
        with self.session() as s:
            return int(s.scalar(select(func.count()).select_from(InspectionRow)) or 0)

    def review(
        self, inspection_id: str, *, decision: str, channel: Channel, note: str, reviewer: str, client: str
    ) -> InspectionRow | None:
        """Append a review and make it the inspection's current one; None if there is no such inspection."""
        now = utcnow()
        with self.session() as s, s.begin():
            row = s.get(InspectionRow, inspection_id, with_for_update=True)
            if row is None:
                return None
            s.add(
                ReviewRow(
                    inspection_id=row.id,
                    created=now,
                    decision=decision,
                    channel=channel.value,
                    note=note,
                    reviewer=reviewer,
                    client=client,
                )
            )
            row.review_decision, row.review_channel, row.review_note = decision, channel.value, note
            row.reviewer, row.reviewed_at = reviewer, now
        return self.get(inspection_id)

    # -- API keys --------------------------------------------------------------------

    def keys(self) -> list[ApiKeyRow]:
        """Every key ever added (revoked ones too), oldest first."""
        with self.session() as s:
            return list(s.scalars(select(ApiKeyRow).order_by(ApiKeyRow.created, ApiKeyRow.key_id)))

    def key(self, key_id: str) -> ApiKeyRow | None:
        with self.session() as s:
            return s.get(ApiKeyRow, key_id)

    def add_key(self, key_id: str, *, salt: str, scrypt: str, label: str = "") -> None:
        with self.session() as s, s.begin():
            s.add(ApiKeyRow(key_id=key_id, salt=salt, scrypt=scrypt, created=utcnow(), label=label))

    def revoke_key(self, key_id: str) -> bool:
        """Mark a key revoked (kept, for the audit trail); False when there is no such key."""
        with self.session() as s, s.begin():
            row = s.get(ApiKeyRow, key_id, with_for_update=True)
            if row is None:
                return False
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            return True
