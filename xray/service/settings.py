"""How the service runs: one `Settings`, from keyword arguments (`serve.py`) or `XRAY_*` variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from xray.config import ExecutionConfig

MAX_UPLOAD_BYTES = 256 << 20
GIB = 1 << 30


class Settings(BaseSettings):
    """The service's settings; each default lives here only. Unknown keys are an error that names them.

    Attributes:
        model_dir: Exported model folder (default: the bundled models/default).
        data_dir: Images, overlays and, by default, the SQLite database.
        db_url: SQLAlchemy URL of the audit database (default SQLite in `data_dir`).
        host: The address served on; without auth it must be loopback.
        auth: Require an API key in `X-API-Key`.
        api_keys: Keys to accept besides those already in the database (stored hashed).
        watch_dir: A scanner drop folder to inspect from (see `xray.service.intake`).
        watch_settle_s, watch_pairing_timeout_s, watch_poll_s: FolderSource timing; the
            pairing timeout is also how long a scan waits for its manifest.
        max_in_flight: Inspections admitted at once; the next gets 503.
        workers: Threads running inspections (the rest of the admitted ones wait).
        batch_window_ms: Longest wait for concurrent scans to join one engine batch
            (`xray.service.batching`); 0 turns batching off.
        max_batch: Most scans per engine batch (also capped by the threads that can send
            scans: `workers`, plus the folder intake); 1 turns batching off.
        threads: onnxruntime threads per inference (default: all cores). Measured on 2 cores over
            HTTP (40-ft scans, idle threads asleep): 2 workers x 2 threads and 4 workers x 1 thread
            serve alike (12-14 inspections/s at concurrency 4), the former with the shorter tail.
        execution: onnxruntime execution provider and its options (`xray.config.ExecutionConfig`;
            from the environment as `XRAY_EXECUTION__PROVIDER=cuda`, `XRAY_EXECUTION__TRT_CACHE=DIR`).
        tile: Let the engine tile scans much larger than the model input.
        max_upload_bytes: Largest request body of an upload.
        retry_after_s: Retry-After of a 503.
        body_timeout_s: Longest wait for the next chunk of a request body; a stalled upload gets 408.
        body_deadline_s: Longest time to receive a whole upload (a trickle of bytes also ends in 408).
        request_memory_bytes: Most memory one scan may take to decode (from its header, before decoding).
        memory_limit_bytes: Memory all admitted decodes together may take; beyond it a request gets 503.
        min_free_bytes: Free disk space the data folder keeps; below it new inspections get 507.
        metrics_auth: `/metrics` needs an API key like the API (it counts verdicts per channel).
    """

    model_config = SettingsConfigDict(env_prefix="XRAY_", env_nested_delimiter="__", extra="forbid", frozen=True)

    model_dir: Path | None = None
    data_dir: Path = Path("data")
    db_url: str | None = None
    host: str = "127.0.0.1"
    auth: bool = True
    api_keys: tuple[str, ...] = ()
    watch_dir: Path | None = None
    watch_settle_s: float = Field(default=1.0, ge=0)
    watch_pairing_timeout_s: float = Field(default=30.0, ge=0)
    watch_poll_s: float = Field(default=0.5, gt=0)
    max_in_flight: int = Field(default=8, ge=1)
    workers: int = Field(default=2, ge=1)
    batch_window_ms: float = Field(default=5.0, ge=0, le=1000)
    max_batch: int = Field(default=8, ge=1)
    threads: int | None = Field(default=None, ge=1)
    execution: ExecutionConfig = ExecutionConfig()
    tile: bool = False
    max_upload_bytes: int = Field(default=MAX_UPLOAD_BYTES, ge=1)
    retry_after_s: int = Field(default=1, ge=0)
    body_timeout_s: float = Field(default=10.0, gt=0)
    body_deadline_s: float = Field(default=120.0, gt=0)
    request_memory_bytes: int = Field(default=GIB, ge=1)
    memory_limit_bytes: int = Field(default=3 * GIB // 2, ge=1)
    min_free_bytes: int = Field(default=GIB // 2, ge=0)
    metrics_auth: bool = True
