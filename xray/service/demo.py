"""Fill a running service with a few simulated inspections, so that the console has something to show.

    python -m xray.service.demo --url http://127.0.0.1:8000 --key KEY [--count 6] [--size 40ft]

The scans come from the simulator, in turn from each scanner profile the bundled model was trained on
(dual-energy 16-bit PNGs, a single-energy 8-bit JPEG export, a pseudo-colour export), with their
manifests, some of them false declarations. They are written to a folder and sent to
`POST /v1/inspections` exactly as a scan centre would send them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

from xray.bundled import default_model_dir
from xray.errors import ConfigError
from xray.simulate.dataset import write_export
from xray.simulate.profile import parse_profile_list
from xray.simulate.scenarios import simulate_scan

# A mix a console should show: releases, a concealment, a substitution, an undeclared load, a false empty.
SCENARIOS = ("clean", "concealment", "clean", "undeclared", "substitution", "false_empty", "empty", "missing")


def trained_profiles() -> list[str | None]:
    """The scanner profiles the bundled model was trained on, as its card names them (the model
    `make run` serves); [None], the simulator's plain look, for a card that names none."""
    card = json.loads((default_model_dir() / "model.json").read_text())
    return list(((card.get("training") or {}).get("data") or {}).get("profiles") or [None])


def write_sample(seed: int, scenario: str, size: str, out: Path, profile: str | None) -> tuple[str, list[Path], Path]:
    """Simulate one scan with a scanner profile (None: the plain look); returns (scan id, its image
    files, manifest JSON). The files are the high energy first, then the low energy when there is one."""
    sim = simulate_scan(seed, size=size, scenario=scenario, profile=profile)
    files = write_export(sim, out)
    manifest = out / f"{sim.scan_id}.json"
    sim.manifest.save(manifest)
    return sim.scan_id, files, manifest


def upload_parts(files: list[Path]) -> dict[str, tuple[str, bytes]]:
    """The multipart file parts of an inspection: 'high' and 'low' for two energies, else 'scan'."""
    if len(files) == 2:
        return {"high": (files[0].name, files[0].read_bytes()), "low": (files[1].name, files[1].read_bytes())}
    return {"scan": (files[0].name, files[0].read_bytes())}


def wait_ready(client: httpx.Client, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if client.get("/readyz").status_code == 200:
                return True
        except httpx.TransportError:
            pass  # not listening yet
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Send a few simulated scans to a running inspection service.")
    p.add_argument("--url", default="http://127.0.0.1:8000", help="the service's base URL")
    p.add_argument("--key", default=os.environ.get("XRAY_API_KEY"), help="API key (default: $XRAY_API_KEY)")
    p.add_argument("--count", type=int, default=6, help="how many scans to send")
    p.add_argument("--seed", type=int, default=1000, help="seed of the first scan")
    p.add_argument("--size", default="40ft", choices=("20ft", "40ft", "mixed"))
    p.add_argument(
        "--profile",
        default=None,
        help="scanner profiles to send in turn, comma-separated (default: the bundled model's training profiles)",
    )
    p.add_argument("--out", type=Path, default=None, help="where to write the scans (default: a temporary folder)")
    p.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the service to become ready")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="xray-demo-"))
    out.mkdir(parents=True, exist_ok=True)
    try:
        profiles = trained_profiles() if args.profile is None else [p.name for p in parse_profile_list(args.profile)]
    except ConfigError as e:
        print(f"error: --profile: {e}", file=sys.stderr)
        return 2
    headers = {"X-API-Key": args.key} if args.key else {}
    with httpx.Client(base_url=args.url.rstrip("/"), headers=headers, timeout=120) as client:
        if not wait_ready(client, args.wait):
            print(f"error: the service at {args.url} is not ready after {args.wait:g} s", file=sys.stderr)
            return 1
        failed = 0
        for i in range(args.count):
            scenario = SCENARIOS[i % len(SCENARIOS)]
            profile = profiles[i % len(profiles)]
            scan_id, files, manifest = write_sample(args.seed + i, scenario, args.size, out, profile)
            look = profile or "plain look"
            t0 = time.perf_counter()
            r = client.post("/v1/inspections", files=upload_parts(files), data={"manifest": manifest.read_text()})
            ms = (time.perf_counter() - t0) * 1e3
            if r.status_code != 201:
                failed += 1
                detail = (
                    r.json().get("detail")
                    if r.headers.get("content-type", "").startswith("application/json")
                    else r.text[:200]
                )
                print(f"  {scan_id} ({scenario}, {look}): HTTP {r.status_code}: {detail}", file=sys.stderr)
                if r.status_code == 401:
                    return 1
                continue
            v = r.json()
            print(
                f"  {scan_id} ({scenario:>12}, {look:<17}): {v['channel']:<6} {v['verdict']:<12} risk {v['risk']:.2f}  "
                f"{ms:6.0f} ms  {v['links']['self']}"
            )
    print(f"\nconsole: {args.url.rstrip('/')}/")
    if args.key:
        print(f"API key: {args.key}")
    print(f"scans written to {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
