"""Start the inspection service: HTTP API, operator console at /, audit store, optional folder intake.

    python serve.py [--model DIR] [--host 127.0.0.1] [--port 8000] [--data-dir DIR] [--db URL]
                    [--watch DIR] [--no-auth] [--max-in-flight N] [--threads N]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from xray.engine import DEFAULT_MODEL_DIR
from xray.errors import ConfigError


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR,
                   help="exported model folder (model.onnx + model.json); default models/default")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--data-dir", type=Path, default=Path("data"), help="images, overlays and the default database")
    p.add_argument("--db", default=None, help="SQLAlchemy URL of the audit database (default: SQLite in --data-dir)")
    p.add_argument("--watch", type=Path, default=None, help="scanner drop folder to inspect scans from")
    p.add_argument("--no-auth", action="store_true", help="no API key (only allowed on a loopback --host)")
    p.add_argument("--api-key", action="append", default=[],
                   help="accept this API key (stored hashed; also from $XRAY_API_KEY); repeatable")
    p.add_argument("--max-in-flight", type=int, default=8, help="inspections admitted at once; more get 503")
    p.add_argument("--workers", type=int, default=2, help="threads running inspections")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime threads per inference (default: all cores)")
    p.add_argument("--tile", action="store_true", help="tile scans much larger than the model input")
    p.add_argument("--log-level", default="info")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    import uvicorn

    from xray.service import Settings, create_app

    if not (args.model / "model.onnx").is_file():
        print(f"error: {args.model} is not an exported model folder (no model.onnx); "
              "train and export one, or pass --model DIR", file=sys.stderr)
        return 2
    if args.max_in_flight < 1 or args.workers < 1:
        print("error: --max-in-flight and --workers must be at least 1", file=sys.stderr)
        return 2
    keys = tuple(args.api_key) + ((os.environ["XRAY_API_KEY"],) if os.environ.get("XRAY_API_KEY") else ())
    settings = Settings(model_dir=args.model, data_dir=args.data_dir, db_url=args.db, host=args.host,
                        auth=not args.no_auth, api_keys=keys, watch_dir=args.watch, max_in_flight=args.max_in_flight,
                        workers=args.workers, threads=args.threads, tile=args.tile)
    try:
        app = create_app(settings)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"xray console: http://{host}:{args.port}/   API docs: http://{host}:{args.port}/docs", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
