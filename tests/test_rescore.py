"""`xray rescore`: an archive re-scored in one process and on Ray Data gives the same verdicts; a stopped
run resumes with each scan scored, recorded and written once; bad scans are named, not fatal."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from fixtures_dataset import write_dataset
from sqlalchemy import select

from xray import cli
from xray.errors import ConfigError
from xray.rescore import CLIENT, Output, Rescorer, rescore
from xray.service.store import InspectionRow, Store

VERDICT_COLUMNS = [
    "scan_id",
    "split",
    "container_id",
    "verdict",
    "channel",
    "risk",
    "findings",
    "model_id",
    "model_version",
    "error",
]
BAD = {"s000002": "truncated", "s000005": "manifest"}  # scan id -> what is wrong with it


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """Nine small scans in two splits; one with a truncated image, one without its manifest."""
    root = write_dataset(tmp_path_factory.mktemp("archive") / "ds", splits={"test": 6, "val": 3}, seed=5)
    high = root / "images" / "test" / "s000002_high.png"
    high.write_bytes(high.read_bytes()[:2000])
    (root / "manifests" / "s000005.json").unlink()
    return root


def store_rows(data: Path) -> list[InspectionRow]:
    store = Store(data)
    try:
        with store.session() as s:
            return list(s.scalars(select(InspectionRow).where(InspectionRow.client == CLIENT)))
    finally:
        store.close()


def assert_each_scan_once(out: Path, data: Path, archive: Path) -> None:
    table = Output(out).read()
    ids = table.column("scan_id").to_pylist()
    assert sorted(ids) == [f"s{n:06d}" for n in range(1, 10)] and len(set(ids)) == len(ids)
    rows = store_rows(data)
    assert Counter(r.scan_id for r in rows) == Counter(i for i in ids if i not in BAD)
    # Each written row names its record, and the record holds the very verdict.
    recorded = {r.id: r for r in rows}
    for row in table.to_pylist():
        if row["error"] is None:
            record = recorded[row["inspection_id"]]
            assert (record.scan_id, record.channel, record.risk) == (row["scan_id"], row["channel"], row["risk"])
            assert str(archive.resolve()) in record.note


def test_ray_and_one_process_give_the_same_verdicts_and_ray_resumes(
    archive, tiny_model_dir, tmp_path, ray_cluster
) -> None:
    local = rescore(
        archive,
        tmp_path / "local",
        model_dir=tiny_model_dir,
        data_dir=tmp_path / "store-local",
        batch_size=2,
        part_size=4,
        progress=False,
    )
    assert local.complete and local.scored == 7 and local.parts == 3
    assert {f["scan_id"]: f["error"] for f in local.failed}.keys() == BAD.keys()
    errors = {f["scan_id"]: f["error"] for f in local.failed}
    assert "s000002_high.png" in errors["s000002"] and "s000005.json" in errors["s000005"]

    # On Ray: stopped after 4 scans, then resumed.
    kw = dict(
        model_dir=tiny_model_dir,
        data_dir=tmp_path / "store-ray",
        batch_size=2,
        part_size=3,
        progress=False,
        use_ray=True,
        workers=2,
    )
    first = rescore(archive, tmp_path / "ray", limit=4, **kw)
    assert not first.complete and first.scored + len(first.failed) == 4
    second = rescore(archive, tmp_path / "ray", **kw)
    assert second.complete and second.already_done == 4 and second.scored + len(second.failed) == 5
    assert_each_scan_once(tmp_path / "ray", tmp_path / "store-ray", archive)

    by_id = {r["scan_id"]: r for r in Output(tmp_path / "local").read().select(VERDICT_COLUMNS).to_pylist()}
    on_ray = {r["scan_id"]: r for r in Output(tmp_path / "ray").read().select(VERDICT_COLUMNS).to_pylist()}
    assert on_ray == by_id


def test_a_stop_between_the_store_and_the_part_resumes_without_scoring_again(
    archive, tiny_model_dir, tmp_path, monkeypatch
) -> None:
    out, data = tmp_path / "out", tmp_path / "store"
    kw = dict(model_dir=tiny_model_dir, data_dir=data, batch_size=2, part_size=4, progress=False)
    commit = Output.commit
    parts = []

    def stop_at_the_second_part(self, table):
        if parts:
            raise KeyboardInterrupt  # the process stopped after the store committed, before the part was written
        parts.append(table)
        return commit(self, table)

    monkeypatch.setattr(Output, "commit", stop_at_the_second_part)
    with pytest.raises(KeyboardInterrupt):
        rescore(archive, out, **kw)
    monkeypatch.setattr(Output, "commit", commit)
    # Part 1 (s1-s4, s2 bad) written; part 2 (s5-s8, s5 bad) recorded in the store only.
    assert len(Output(out).done_ids()) == 4 and len(store_rows(data)) == 6

    scored: list[str] = []
    call = Rescorer.__call__

    def counting(self, batch):
        scored.extend(str(i) for i in batch["scan_id"])
        return call(self, batch)

    monkeypatch.setattr(Rescorer, "__call__", counting)
    summary = rescore(archive, out, **kw)
    assert summary.complete and summary.already_done == 4 and summary.recovered == 3
    assert sorted(scored) == ["s000005", "s000009"]  # the bad scan is tried again; s6-s8 come from the store
    assert_each_scan_once(out, data, archive)


def test_the_command_names_bad_scans_and_refuses_another_runs_folder(archive, tiny_model_dir, tmp_path, capsys) -> None:
    argv = [
        "rescore",
        str(archive),
        "--out",
        str(tmp_path / "out"),
        "--model",
        str(tiny_model_dir),
        "--data-dir",
        str(tmp_path / "store"),
        "--split",
        "test",
        "--quiet",
    ]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["scans"] == 6 and summary["scored"] == 4 and summary["failed"] == 2 and summary["complete"]
    assert "scan s000002 not scored" in captured.err and "s000002_high.png" in captured.err
    assert cli.main(argv) == 0 and json.loads(capsys.readouterr().out)["already_done"] == 6  # nothing twice
    with pytest.raises(ConfigError, match="split"):
        rescore(archive, tmp_path / "out", model_dir=tiny_model_dir, data_dir=tmp_path / "store", progress=False)
    assert cli.main([*argv, "--workers", "2"]) == 2 and "--ray" in capsys.readouterr().err
