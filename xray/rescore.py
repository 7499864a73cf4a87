"""`xray rescore`: re-score a whole archive with a model, on Ray Data across a cluster or in one process.

The archive is a dataset folder in the xray layout (datasets/FORMAT.md): that is what
`xray dataset import archive` makes of a network's scans and declarations tables, each scan
with its manifest, and `xray.data.format` is its one reader. Re-scoring needs no boxes.

Each scan gives one row (`SCHEMA`): its verdict, channel, risk, findings, model and timings,
or the error that kept it from being scored (named, never fatal). Rows are scored in batches
by `Rescorer` — the same class in one process and as Ray Data `map_batches` actors — and
committed a part at a time: each verdict is recorded in the audit store (client "rescore",
under a key unique to the run and scan), then the part is written to
OUT/parts/part-NNNNNN.parquet atomically.

A stopped run resumes from OUT: scans in a committed part are skipped, and scans the store
already holds for this run (stopped between the store and the part) get their row from the
store instead of being scored again. So each scan is scored, recorded and written once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select
from tqdm import tqdm

from xray.atomic import write_atomic
from xray.data.format import ScanRecord, load_coco, split_records, splits
from xray.errors import ConfigError, DatasetError, XrayError
from xray.manifest import Manifest
from xray.sources.files import ScanFile
from xray.verdict import Verdict

log = logging.getLogger(__name__)

CLIENT = "rescore"
RUN_FILE = "run.json"
PARTS_DIR = "parts"
FINDING = pa.struct([("kind", pa.string()), ("category", pa.string()), ("confidence", pa.float64())])
SCHEMA = pa.schema(
    [
        ("scan_id", pa.string()),
        ("split", pa.string()),
        ("container_id", pa.string()),
        ("verdict", pa.string()),
        ("channel", pa.string()),
        ("risk", pa.float64()),
        ("findings", pa.list_(FINDING)),
        ("model_id", pa.string()),
        ("model_version", pa.string()),
        ("timings_ms", pa.map_(pa.string(), pa.float64())),
        ("inspection_id", pa.string()),  # the audit store's record
        ("error", pa.string()),  # why the scan could not be scored (the other fields are null)
    ]
)
# Columns a scored batch carries to the committer beside SCHEMA's (not written to Parquet).
_CARRIED = [("verdict_json", pa.string()), ("manifest_json", pa.string()), ("files", pa.list_(pa.string()))]
SCORED = pa.schema(list(SCHEMA) + [pa.field(n, t) for n, t in _CARRIED])


@dataclass(frozen=True)
class Item:
    """One scan to score: its split and COCO image entry (the record is rebuilt from them where it is scored)."""

    scan_id: str
    split: str
    entry: str  # the COCO image entry, as JSON

    def record(self, root: Path) -> ScanRecord:
        return ScanRecord.from_entry(root, self.split, json.loads(self.entry))


def archive_items(root: str | Path, split: str | None = None) -> list[Item]:
    """Every scan of the archive (of `split`, when given), in split then annotation order.

    Raises:
        DatasetError: not a dataset folder, or a scan id in two places.
    """
    root = Path(root)
    names = [split] if split else splits(root)
    if not names:
        raise DatasetError(f"{root}: no annotations/<split>.json (not an xray dataset; see datasets/FORMAT.md)")
    items: list[Item] = []
    seen: dict[str, str] = {}
    for name in names:
        coco = load_coco(root, name)
        for record in split_records(root, name, coco=coco):
            if record.scan_id in seen:
                raise DatasetError(
                    f"{root}: scan {record.scan_id!r} is in splits {seen[record.scan_id]!r} and {name!r}"
                )
            seen[record.scan_id] = name
            items.append(Item(record.scan_id, name, json.dumps(record.entry)))
    return items


def _finding_rows(verdict: Verdict) -> list[dict[str, Any]]:
    return [{"kind": f.kind.value, "category": f.category, "confidence": f.confidence} for f in verdict.findings]


def verdict_row(verdict: Verdict, split: str, container_id: str | None) -> dict[str, Any]:
    """The Parquet row of a scored scan (without its inspection id)."""
    return {
        "scan_id": verdict.scan_id,
        "split": split,
        "container_id": container_id,
        "verdict": verdict.verdict.value,
        "channel": verdict.channel.value,
        "risk": verdict.risk,
        "findings": _finding_rows(verdict),
        "model_id": verdict.model_id,
        "model_version": verdict.model_version,
        "timings_ms": list(verdict.timings_ms.items()),
        "inspection_id": None,
        "error": None,
    }


def error_row(scan_id: str, split: str, error: str) -> dict[str, Any]:
    return {name: None for name in SCHEMA.names} | {"scan_id": scan_id, "split": split, "error": error}


class Rescorer:
    """Scores a batch of scans: columns `scan_id`, `split`, `entry` in, a `SCORED` table out.

    One per process, or one per Ray Data actor (`map_batches`), each with its engine loaded once.
    A scan that cannot be read, or whose manifest cannot, becomes an error row naming why.

    Args:
        root: The archive (dataset folder).
        model_dir: Exported model folder (default: the bundled model).
        threads: onnxruntime threads (default: all cores).
        tile: Let the engine tile scans much larger than the model input.
    """

    def __init__(
        self, root: str | Path, model_dir: str | Path | None = None, threads: int | None = None, tile: bool = False
    ):
        from xray.engine import Engine
        from xray.verify import Inspector

        self.root = Path(root)
        self.inspector = Inspector(Engine(model_dir, threads=threads, tile=tile))

    def __call__(self, batch: dict[str, Any]) -> pa.Table:
        items = [Item(str(i), str(s), str(e)) for i, s, e in zip(batch["scan_id"], batch["split"], batch["entry"])]
        rows: list[dict[str, Any] | None] = []
        scans, manifests, decode_ms, ready = [], [], [], []
        for item in items:
            try:
                record = item.record(self.root)
                t0 = time.perf_counter()
                scan = record.read()
                ms = (time.perf_counter() - t0) * 1e3
                manifest = record.manifest()
            except XrayError as e:  # DatasetError naming the file: a bad scan is a row, not the end of the run
                log.warning("scan %s (%s): %s", item.scan_id, item.split, e)
                rows.append(error_row(item.scan_id, item.split, str(e)))
                continue
            rows.append(None)
            scans.append(scan)
            manifests.append(manifest)
            decode_ms.append(ms)
            ready.append((len(rows) - 1, item, record))
        verdicts = self.inspector.inspect_batch(scans, manifests, decode_ms=decode_ms) if scans else []
        for (at, item, record), verdict, manifest in zip(ready, verdicts, manifests, strict=True):
            rows[at] = verdict_row(verdict, item.split, manifest.container_id) | {
                "verdict_json": verdict.model_dump_json(),
                "manifest_json": manifest.model_dump_json(exclude_none=True),
                "files": [str(p) for p in (record.high, record.low) if p is not None],
            }
        return pa.Table.from_pylist([r for r in rows if r is not None], schema=SCORED)


@dataclass
class Summary:
    """What a run did; `failed` names each scan that could not be scored and why."""

    out: str
    scans: int = 0
    already_done: int = 0
    recovered: int = 0
    scored: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    parts: int = 0
    seconds: float = 0.0
    complete: bool = False

    def as_dict(self) -> dict[str, Any]:
        rate = self.scored / self.seconds if self.seconds else 0.0
        return {**self.__dict__, "seconds": round(self.seconds, 2), "scans_per_s": round(rate, 2)}


def source_key(run_id: str, scan_id: str) -> str:
    """The store's key of a scan's record in a run (fits its 64 characters, whatever the scan id)."""
    return f"{CLIENT}:" + hashlib.blake2b(f"{run_id}/{scan_id}".encode(), digest_size=24).hexdigest()


class Output:
    """OUT: run.json (what is re-scored, with which model) and the committed Parquet parts."""

    def __init__(self, out: str | Path):
        self.dir = Path(out)
        self.parts = self.dir / PARTS_DIR

    def open_run(self, archive: Path, split: str | None, model_id: str, model_version: str) -> str:
        """The run id: a new one, or that of the run OUT holds when it re-scores the same archive with the same model.

        Raises:
            ConfigError: OUT holds a run of another archive, split or model.
        """
        wanted = {
            "archive": str(archive.resolve()),
            "split": split,
            "model_id": model_id,
            "model_version": model_version,
        }
        path = self.dir / RUN_FILE
        if path.is_file():
            run = json.loads(path.read_text())
            differ = [k for k, v in wanted.items() if run.get(k) != v]
            if differ:
                raise ConfigError(
                    f"{self.dir} holds a re-scoring of another {', '.join(differ)} "
                    f"({', '.join(f'{k}={run.get(k)!r}' for k in differ)}); use another --out"
                )
            return str(run["run_id"])
        self.parts.mkdir(parents=True, exist_ok=True)
        run_id = uuid.uuid4().hex
        write_atomic(path, json.dumps({"run_id": run_id, **wanted}, indent=2), fsync=True)
        return run_id

    def part_paths(self) -> list[Path]:
        return sorted(self.parts.glob("part-*.parquet"))

    def done_ids(self) -> set[str]:
        """Scan ids in committed parts (temporary files of a write cut short are hidden and ignored)."""
        return {i for p in self.part_paths() for i in pq.read_table(p, columns=["scan_id"]).column(0).to_pylist()}

    def commit(self, table: pa.Table) -> Path:
        """Write the next part atomically: a stop leaves it whole or absent."""
        number = max((int(p.stem.split("-")[1]) for p in self.part_paths()), default=0) + 1
        path = self.parts / f"part-{number:06d}.parquet"
        return write_atomic(path, lambda tmp: pq.write_table(table, tmp), fsync=True)

    def read(self) -> pa.Table:
        """Every committed row."""
        paths = self.part_paths()
        return pa.concat_tables([pq.read_table(p) for p in paths]) if paths else SCHEMA.empty_table()


def recover(store: Any, run_id: str, pending: Sequence[Item]) -> pa.Table:
    """Rows of pending scans the store already holds for this run (a stop between the store and the
    part): taken from their records, not scored again. Looked up 500 keys at a time."""
    from xray.service.store import InspectionRow

    keys = {source_key(run_id, i.scan_id): i for i in pending}
    names = list(keys)
    rows = []
    with store.session() as s:
        for at in range(0, len(names), 500):
            for r in s.scalars(select(InspectionRow).where(InspectionRow.source_key.in_(names[at : at + 500]))):
                item = keys[str(r.source_key)]
                rows.append(
                    verdict_row(Verdict.model_validate(r.verdict), item.split, r.container_id) | {"inspection_id": r.id}
                )
    return pa.Table.from_pylist(rows, schema=SCHEMA)


class Committer:
    """Records a part's verdicts in the audit store, then writes the part: the order that makes resuming exact."""

    def __init__(self, output: Output, store: Any, run_id: str, present: float, note: str, store_images: bool):
        self.output, self.store, self.run_id = output, store, run_id
        self.present, self.note, self.store_images = present, note, store_images

    def __call__(self, scored: pa.Table) -> pa.Table:
        rows = scored.to_pylist()
        for row in rows:
            verdict_json = row.pop("verdict_json", None)
            manifest_json = row.pop("manifest_json", None)
            files = row.pop("files", None) or []
            if row["error"] is not None or row["inspection_id"] is not None:
                continue
            verdict = Verdict.model_validate_json(verdict_json)
            record = self.store.record(
                client=CLIENT,
                verdict=verdict,
                files=[ScanFile.load(Path(f)) for f in files] if self.store_images else [],
                manifest=Manifest.model_validate_json(manifest_json) if manifest_json else None,
                present=self.present,
                note=self.note,
                source_key=source_key(self.run_id, row["scan_id"]),
            )
            row["inspection_id"] = record.id
        table = pa.Table.from_pylist(rows, schema=SCHEMA)
        self.output.commit(table)
        return table


def _batches(items: Sequence[Item], size: int) -> Iterator[dict[str, list[str]]]:
    for i in range(0, len(items), size):
        chunk = items[i : i + size]
        yield {
            "scan_id": [c.scan_id for c in chunk],
            "split": [c.split for c in chunk],
            "entry": [c.entry for c in chunk],
        }


def _score_local(items: Sequence[Item], scorer: Rescorer, batch_size: int, part_size: int) -> Iterator[pa.Table]:
    """Scored parts of `part_size` scans (the last may be smaller), one process."""
    pending = SCORED.empty_table()
    for batch in _batches(items, batch_size):
        pending = pa.concat_tables([pending, scorer(batch)])
        while pending.num_rows >= part_size:
            yield pending.slice(0, part_size)
            pending = pending.slice(part_size)
    if pending.num_rows:
        yield pending


def _score_ray(
    items: Sequence[Item],
    rescorer_args: dict[str, Any],
    batch_size: int,
    part_size: int,
    workers: int | None,
    threads: int,
) -> Iterator[pa.Table]:
    """Scored parts, from Ray Data actors (`map_batches`) on the cluster `ray.init` connected to."""
    import ray

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # ours counts committed scans
    if workers is None:
        workers = max(1, int(ray.cluster_resources().get("CPU", 1) // threads))
    ds = ray.data.from_items(
        [{"scan_id": i.scan_id, "split": i.split, "entry": i.entry} for i in items],
        override_num_blocks=max(1, min(len(items), (len(items) + batch_size - 1) // batch_size)),
    )
    scored = ds.map_batches(
        Rescorer,
        fn_constructor_kwargs=rescorer_args,
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=threads,
    )
    yield from scored.iter_batches(batch_size=part_size, batch_format="pyarrow")


def _scored_parts(
    pending: Sequence[Item],
    scorer: dict[str, Any],
    batch_size: int,
    part_size: int,
    *,
    use_ray: bool,
    workers: int | None,
) -> Iterable[pa.Table]:
    """The pending scans scored, a part at a time: on Ray Data actors or in this process, by the same `Rescorer`."""
    if not pending:
        return []
    if not use_ray:
        return _score_local(pending, Rescorer(**scorer), batch_size, part_size)
    import ray

    if not ray.is_initialized():
        ray.init(include_dashboard=False)
    return _score_ray(pending, scorer, batch_size, part_size, workers, scorer["threads"] or 1)


def rescore(
    archive: str | Path,
    out: str | Path,
    *,
    model_dir: str | Path | None = None,
    data_dir: str | Path = "data",
    db_url: str | None = None,
    split: str | None = None,
    use_ray: bool = False,
    workers: int | None = None,
    threads: int | None = None,
    batch_size: int = 8,
    part_size: int = 256,
    limit: int | None = None,
    store_images: bool = False,
    tile: bool = False,
    progress: bool = True,
) -> Summary:
    """Re-score every scan of `archive` not yet in `out`: Parquet parts in OUT, records in the audit store.

    Args:
        archive: Dataset folder (an imported archive).
        out: Output folder; a stopped run resumes from it.
        data_dir, db_url: The audit store (as `xray serve`'s).
        use_ray: Score on Ray Data actors (`ray.init` first; else a local cluster is started).
        workers: Ray actors (default: the cluster's CPUs / threads).
        threads: onnxruntime threads per scorer (default: all cores; 1 per actor on Ray).
        batch_size: Scans per `detect_batch` call.
        part_size: Scans per committed Parquet part.
        limit: Score at most this many scans in this run (the rest on the next).
        store_images: Also copy the scan files into the store (content-addressed), as the
            service does; without it the records name the archive's files in their note.

    Raises:
        DatasetError: the archive is not a dataset folder.
        ConfigError: OUT holds a run of another archive or model, or a size below 1.
    """
    from xray.engine import Engine
    from xray.service.store import Store
    from xray.verify import VerifierConfig

    if batch_size < 1 or part_size < 1 or (limit is not None and limit < 0) or (workers is not None and workers < 1):
        raise ConfigError("batch size, part size and workers must be at least 1, and the limit not negative")
    t0 = time.perf_counter()
    archive = Path(archive)
    items = archive_items(archive, split)
    output = Output(out)
    summary = Summary(out=str(output.dir), scans=len(items))
    engine = Engine(model_dir, threads=1)  # the model's identity and thresholds; scoring loads its own
    run_id = output.open_run(archive, split, engine.model_id, engine.model_version)
    done = output.done_ids()
    pending = [i for i in items if i.scan_id not in done]
    summary.already_done = len(items) - len(pending)
    store = Store(data_dir, db_url)
    committer = Committer(
        output,
        store,
        run_id,
        VerifierConfig.from_card(engine.card).present,
        f"rescore of archive {archive.resolve()} (run {run_id})",
        store_images,
    )
    bar = tqdm(total=len(items), initial=summary.already_done, unit="scan", disable=not progress, desc="rescore")

    def account(table: pa.Table) -> None:
        summary.parts += 1
        errors = [r for r in table.select(["scan_id", "error"]).to_pylist() if r["error"] is not None]
        summary.failed += [{"scan_id": r["scan_id"], "error": r["error"]} for r in errors]
        bar.update(table.num_rows)

    try:
        recovered = recover(store, run_id, pending)
        if recovered.num_rows:
            output.commit(recovered)
            summary.recovered = recovered.num_rows
            account(recovered)
            again = set(recovered.column("scan_id").to_pylist())
            pending = [i for i in pending if i.scan_id not in again]
        if limit is not None:
            pending = pending[: max(0, limit - summary.recovered)]
        threads = threads or (1 if use_ray else None)
        scorer = {
            "root": archive.resolve(),
            "model_dir": Path(engine.model_dir).resolve(),
            "threads": threads,
            "tile": tile,
        }
        parts = _scored_parts(pending, scorer, batch_size, part_size, use_ray=use_ray, workers=workers)
        for scored in parts:
            table = committer(scored)
            summary.scored += table.num_rows - sum(r is not None for r in table.column("error").to_pylist())
            account(table)
    finally:
        bar.close()
        store.close()
    summary.seconds = time.perf_counter() - t0
    summary.complete = len(output.done_ids()) == len(items)
    return summary
