"""The audit store on both of its back ends: SQLite (the default) and a real PostgreSQL server.

The PostgreSQL tests start a throwaway cluster from the server binaries (initdb, pg_ctl) on a
private Unix socket, with a fresh database per test; without the binaries they skip.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import IntegrityError

from xray.manifest import Manifest
from xray.service.store import INSPECTION_ID_RE, InspectionRow, Store, as_utc
from xray.sources.files import ScanFile
from xray.verdict import Channel, Finding, FindingKind, Outcome, Verdict

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Not UTC on purpose: the server hands timestamps back in its own zone, and the store must not care.
SERVER_TIME_ZONE = "Asia/Kolkata"


# -- a throwaway PostgreSQL cluster --------------------------------------------------------------


def postgres_bin_dir() -> Path | None:
    """Where initdb and pg_ctl are: on PATH, or in Debian's versioned directory."""
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).resolve().parent
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(d) / "initdb").is_file() and (Path(d) / "pg_ctl").is_file():
            return Path(d)
    return None


def as_cluster_owner(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root; as root, run the command as the `postgres` user."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Cluster:
    url: str  # of its `postgres` database
    data: Path
    pg_ctl: Path

    def stop(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(as_cluster_owner([str(self.pg_ctl), "-D", str(self.data), "-m", "immediate", "stop"]),
                              check=False, capture_output=True, text=True)


@contextmanager
def postgres_cluster() -> Iterator[Cluster]:
    """Start a cluster that listens only on a private socket, and stop it after."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or in /usr/lib/postgresql")
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("running as root, and there is no `postgres` user to run the server as", pytrace=False)
    root = Path(tempfile.mkdtemp(prefix="xray-pg-"))  # short: a socket path must fit in 107 bytes
    data, sock, log = root / "pgdata", root / "sock", root / "server.log"
    sock.mkdir()
    if owner is not None:
        for p in (root, sock):
            os.chown(p, owner.pw_uid, owner.pw_gid)
    pg_ctl, port = bin_dir / "pg_ctl", free_port()
    try:
        run_or_fail([str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "xray", "--no-sync",
                     "-E", "UTF8", "--locale=C"], log)
        run_or_fail([str(pg_ctl), "-D", str(data), "-w", "-t", "60", "-l", str(log), "-o",
                     f"-k {sock} -c listen_addresses='' -p {port} -F -c TimeZone={SERVER_TIME_ZONE}", "start"], log)
        cluster = Cluster(f"postgresql+psycopg://xray@/postgres?host={sock}&port={port}", data, pg_ctl)
        try:
            yield cluster
        finally:
            cluster.stop()  # fails harmlessly where a test stopped it already
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run_or_fail(cmd: list[str], log: Path) -> None:
    done = subprocess.run(as_cluster_owner(cmd), check=False, capture_output=True, text=True)
    if done.returncode != 0:
        server_log = log.read_text(errors="replace") if log.exists() else "(no server log)"
        pytest.fail(f"{Path(cmd[0]).name} failed ({done.returncode}):\n{done.stdout}{done.stderr}\n"
                    f"server log:\n{server_log}", pytrace=False)


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[str]:
    with postgres_cluster() as cluster:
        yield cluster.url


def fresh_database(server_url: str) -> str:
    """A new, empty database on the server; returns its URL."""
    name = f"audit_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")  # CREATE DATABASE refuses transactions
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'audit.sqlite'}"
    return fresh_database(request.getfixturevalue("postgres_server"))


@pytest.fixture
def store(store_url: str, tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "data", store_url)
    yield s
    s.close()


# -- inspections -----------------------------------------------------------------------------


def verdict_for(scan_id: str, channel: Channel = Channel.GREEN) -> Verdict:
    outcome = {Channel.GREEN: Outcome.MATCH, Channel.YELLOW: Outcome.INCONCLUSIVE, Channel.RED: Outcome.MISMATCH}
    return Verdict(scan_id=scan_id, verdict=outcome[channel], channel=channel, risk=0.25, model_id="tiny",
                   model_version="1.0", timings_ms={"detect": 12.5, "total": 20.0})


def add_inspection(store: Store, scan_id: str, channel: Channel = Channel.GREEN,
                   source_key: str | None = None) -> InspectionRow:
    return store.add(client="test", verdict=verdict_for(scan_id, channel), images=[], manifest=None,
                     container_id=None, present=0.5, source_key=source_key)


def test_recorded_inspection_round_trips(store: Store) -> None:
    verdict = verdict_for("lane1-0001", Channel.RED).model_copy(update={
        "findings": [Finding(kind=FindingKind.UNDECLARED, category="tyres", confidence=0.875,
                             evidence=[(10.0, 20.0, 110.5, 220.25)], detail="not declared — «ü»")],
        "declared": ["textiles"], "evidence": {"tyres": 0.875}})
    manifest = Manifest(container_id="MSCU1234567", lines=[{"hs_code": "6109", "description": "T-shirts, 100 % coton",
                                                            "quantity": 400, "unit": "pcs", "weight_kg": 812.5}])
    files = [ScanFile(Path("lane1_high.png"), PNG_MAGIC + b"high"), ScanFile(Path("lane1_low.png"), PNG_MAGIC + b"low")]
    before = datetime.now(UTC)
    row = store.record(client="key-1", verdict=verdict, files=files, manifest=manifest, present=0.4,
                       note="manifest late", source_key="ledger-1")
    after = datetime.now(UTC)

    got = store.get(row.id)
    assert got is not None and INSPECTION_ID_RE.match(got.id)
    assert Verdict.model_validate(got.verdict) == verdict
    assert Manifest.model_validate(got.manifest) == manifest and got.container_id == "MSCU1234567"
    assert got.image_sha256 == [f.sha256 for f in files]
    for path, f in zip(got.image_paths, files, strict=True):
        assert path.endswith(".png") and store.image_path(path).read_bytes() == f.data
    assert (got.outcome, got.channel, got.risk, got.present) == ("mismatch", "red", 0.25, 0.4)
    assert (got.client, got.note, got.source_key, got.reviews) == ("key-1", "manifest late", "ledger-1", [])
    assert got.timings_ms == {"detect": 12.5, "total": 20.0}
    created = as_utc(got.created)
    assert created.utcoffset() == timedelta(0) and before <= created <= after
    assert created == row.created  # to the microsecond
    assert store.by_source_key("ledger-1").id == row.id  # type: ignore[union-attr]
    assert store.get("01H00000000000000000000000") is None


def test_page_is_newest_first_filtered_and_walks_every_row_once(store: Store) -> None:
    channels = [Channel.RED, Channel.GREEN, Channel.RED, Channel.YELLOW, Channel.RED, Channel.GREEN, Channel.RED]
    added = [add_inspection(store, f"scan-{n}", ch) for n, ch in enumerate(channels)]
    newest_first = [r.id for r in reversed(added)]

    assert [r.id for r in store.page(limit=100).rows] == newest_first
    first = store.page(limit=3)
    assert [r.id for r in first.rows] == newest_first[:3] and first.next_cursor == newest_first[2]
    reds = store.page(channel=Channel.RED, limit=100).rows
    assert [r.id for r in reds] == [r.id for r in reversed(added) if r.channel == "red"]
    assert len(reds) == 4

    walked: list[str] = []
    cursor: str | None = None
    while True:
        page = store.page(limit=3, cursor=cursor)
        assert len(page.rows) <= 3
        walked += [r.id for r in page.rows]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert walked == newest_first

    # `since` compares instants, whatever zone the database answers in.
    assert [r.id for r in store.page(since=added[4].created, limit=100).rows] == newest_first[:3]
    in_india = added[4].created.astimezone(ZoneInfo("Asia/Kolkata"))
    assert [r.id for r in store.page(since=in_india, limit=100).rows] == newest_first[:3]


def test_reviews_append_to_the_trail_and_the_latest_is_current(store: Store) -> None:
    row = add_inspection(store, "scan-r", Channel.RED)
    first = store.review(row.id, decision="confirm", channel=Channel.RED, note="seals broken", reviewer="ana",
                         client="key-1")
    assert first is not None and [r.reviewer for r in first.reviews] == ["ana"]
    second = store.review(row.id, decision="override", channel=Channel.GREEN, note="tyres declared late",
                          reviewer="ben", client="key-2")
    assert second is not None
    assert [(r.decision, r.channel, r.reviewer) for r in second.reviews] == [("confirm", "red", "ana"),
                                                                              ("override", "green", "ben")]
    assert (second.review_decision, second.review_channel, second.review_note, second.reviewer) == (
        "override", "green", "tyres declared late", "ben")
    assert as_utc(second.reviewed_at) == as_utc(second.reviews[-1].created)  # type: ignore[arg-type]
    assert second.channel == "red"  # the model's verdict stays as it was
    assert store.get(row.id).review_decision == "override"  # type: ignore[union-attr]
    assert store.review("01H00000000000000000000000", decision="confirm", channel=Channel.RED, note="",
                        reviewer="ana", client="key-1") is None


def test_a_source_key_is_recorded_once(store: Store) -> None:
    first = add_inspection(store, "scan-a", source_key="lane2/0001")
    with pytest.raises(IntegrityError):
        add_inspection(store, "scan-a-again", source_key="lane2/0001")
    assert store.count() == 1 and store.by_source_key("lane2/0001").id == first.id  # type: ignore[union-attr]
    add_inspection(store, "scan-b", source_key=None)
    add_inspection(store, "scan-c", source_key=None)  # many rows may have no key
    assert store.count() == 3


def test_concurrent_adds_are_all_stored_with_unique_ids(store: Store) -> None:
    threads, each = 8, 10

    def add_batch(t: int) -> list[str]:
        return [add_inspection(store, f"scan-{t}-{n}").id for n in range(each)]

    with ThreadPoolExecutor(threads) as pool:  # result() re-raises a worker's exception here
        ids = [i for batch in pool.map(add_batch, range(threads)) for i in batch]
    assert len(ids) == len(set(ids)) == threads * each
    assert store.count() == threads * each
    assert [r.id for r in store.page(limit=1000).rows] == sorted(ids, reverse=True)


def test_a_restarted_store_sees_the_history_and_the_api_keys(store: Store, store_url: str, tmp_path: Path) -> None:
    row = add_inspection(store, "scan-before-restart")
    store.review(row.id, decision="confirm", channel=Channel.GREEN, note="", reviewer="ana", client="key-1")
    store.add_key("k1", salt="00" * 16, scrypt="a" * 64, label="lane 1")
    store.add_key("k2", salt="11" * 16, scrypt="b" * 64)
    assert store.revoke_key("k2") and not store.revoke_key("nope")
    store.close()

    again = Store(tmp_path / "data", store_url)
    try:
        assert again.ping()
        assert again.count() == 1
        got = again.get(row.id)
        assert got is not None and got.scan_id == "scan-before-restart" and len(got.reviews) == 1
        assert [(k.key_id, k.scrypt, k.revoked_at is not None) for k in again.keys()] == [
            ("k1", "a" * 64, False), ("k2", "b" * 64, True)]
        assert [r.id for r in again.page().rows] == [row.id]
    finally:
        again.close()


def test_ping_answers_false_once_postgresql_is_down(tmp_path: Path) -> None:
    with postgres_cluster() as cluster:
        store = Store(tmp_path / "data", cluster.url)
        try:
            assert store.ping() is True
            stopped = cluster.stop()
            assert stopped.returncode == 0, stopped.stderr
            assert store.ping() is False
        finally:
            store.close()


def test_a_scan_named_by_a_long_file_name_is_stored(store: Store) -> None:
    # A folder scan's id is its file's stem, and a file name may have 255 bytes; SQLite never
    # checks a column's length, PostgreSQL refuses the insert.
    scan_id = "x" * (255 - len("_high.png"))
    row = add_inspection(store, scan_id)
    assert store.get(row.id).scan_id == scan_id  # type: ignore[union-attr]
