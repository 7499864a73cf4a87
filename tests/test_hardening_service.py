"""The service as an attacker or a careless client would test it (issue 16): every item of its "Why" that
concerns the HTTP service, each a test that fails on the code before the hardening."""

from __future__ import annotations

import json
import os
import socket
import stat
from collections import namedtuple
from pathlib import Path

import httpx
import numpy as np
import pytest

from xray.cli import main as xray_main
from xray.service import Settings, create_app
from xray.service import admission as admission_module
from xray.sources.files import write_png16

Service = namedtuple("Service", "url key app data")


@pytest.fixture(scope="module")
def service(tmp_path_factory, tiny_engine, live_server):
    data = tmp_path_factory.mktemp("hardening") / "data"
    app = create_app(Settings(data_dir=data, body_timeout_s=1.0, max_in_flight=4), engine=tiny_engine)
    with live_server(app) as url:
        yield Service(url, app.state.new_api_key, app, data)


@pytest.fixture
def client(service):
    with httpx.Client(base_url=service.url, headers={"X-API-Key": service.key}, timeout=30) as c:
        yield c


def parts(scan) -> dict:
    return {
        "high": (scan.high.name, scan.high.read_bytes(), "image/png"),
        "low": (scan.low.name, scan.low.read_bytes(), "image/png"),
    }


def inspect(client: httpx.Client, scan, manifest: str | None = None, **extra: str) -> httpx.Response:
    return client.post(
        "/v1/inspections",
        files=parts(scan),
        data={"manifest": scan.manifest.read_text() if manifest is None else manifest, **extra},
    )


def text_error(r: httpx.Response, status: int, *words: str) -> str:
    """The response is `status` with a JSON `detail` that is text (the one error shape) holding `words`."""
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str), detail
    for w in words:
        assert w.lower() in detail.lower(), (w, detail)
    return detail


# -- 1. no 500s from bad bodies --------------------------------------------------------------


def test_deep_and_long_number_manifests_are_4xx_not_500(client, scan_files) -> None:
    deep = '{"container_id": "C1", "lines": ' + "[" * 5000 + "]" * 5000 + "}"
    text_error(inspect(client, scan_files[0], deep), 422, "nested")
    digits = '{"container_id": "C1", "lines": [{"hs_code": "8703", "quantity": ' + "9" * 5000 + "}]}"
    text_error(inspect(client, scan_files[0], digits), 422, "too long")
    assert client.get("/healthz").status_code == 200  # the same connection still answers


def test_review_bodies_that_crashed_the_422_handler(client, scan_files) -> None:
    made = inspect(client, scan_files[0])
    assert made.status_code == 201
    review = made.json()["links"]["review"]
    lone = b'{"decision": "confirm", "reviewer": "\\ud800"}'
    text_error(client.post(review, content=lone, headers={"Content-Type": "application/json"}), 422, "surrogate")
    r = client.post(review, content=b"\xff\xfe decision=confirm \x80", headers={"Content-Type": "text/plain"})
    assert r.status_code == 422 and isinstance(r.json()["detail"], str)
    assert "\\x" not in r.text and "\xff" not in r.json()["detail"]  # the input is never echoed
    deep = b'{"decision": "confirm", "reviewer": "a", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    text_error(client.post(review, content=deep, headers={"Content-Type": "application/json"}), 422, "nested")
    fine = client.post(review, json={"decision": "confirm", "reviewer": "ana"})
    assert fine.status_code == 200  # and the connection is still usable


def test_unexpected_error_is_a_logged_500_with_an_error_id(service, client, monkeypatch, caplog) -> None:
    def broken(_inspection_id: str) -> None:
        raise RuntimeError("database exploded")

    monkeypatch.setattr(service.app.state.store, "get", broken)
    r = client.get("/v1/inspections/01H00000000000000000000000")
    detail = text_error(r, 500, "internal error")
    error_id = detail.split()[2].rstrip(";")
    assert any(error_id in rec.getMessage() for rec in caplog.records)  # the log says which request
    assert "database exploded" not in r.text
    monkeypatch.undo()
    assert client.get("/healthz").json() == {"status": "ok"}  # the connection was not dropped


def test_validation_errors_are_text_naming_the_field(client) -> None:
    text_error(client.get("/v1/inspections", params={"limit": "x"}), 422, "limit")


# -- 3. memory budgets; overlays under admission ----------------------------------------------


def test_overlay_is_drawn_under_the_memory_budget(service, client, scan_files) -> None:
    made = inspect(client, scan_files[1]).json()
    memory = service.app.state.memory
    taken = memory.limit
    memory._reserved += taken  # every byte of the decode budget in use
    try:
        busy = client.get(made["links"]["overlay"])
        assert busy.status_code == 503 and busy.headers["retry-after"]
    finally:
        memory._reserved -= taken
    assert client.get(made["links"]["overlay"]).status_code == 200


def test_scan_beyond_the_request_memory_budget_is_413(tmp_path, tiny_engine, live_server, scan_files) -> None:
    app = create_app(Settings(data_dir=tmp_path, auth=False, request_memory_bytes=1 << 20), engine=tiny_engine)
    with live_server(app) as url, httpx.Client(base_url=url, timeout=30) as c:
        text_error(inspect(c, scan_files[0]), 413, "MiB")
        assert app.state.store.count() == 0


# -- 4. slow uploads hold nothing ---------------------------------------------------------------


def _stalled_upload(url: str, key: str) -> socket.socket:
    """A client that sends the headers and a first piece of a multipart body, then nothing."""
    host, port = url.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=10)
    head = (
        f"POST /v1/inspections HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {key}\r\nContent-Length: 100000\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\n\r\n"
    )
    s.sendall(head.encode() + b'--b\r\nContent-Disposition: form-data; name="manifest"\r\n\r\n{"contai')
    return s


def test_slow_uploads_get_408_and_block_no_one(tmp_path, tiny_engine, live_server, scan_files) -> None:
    app = create_app(Settings(data_dir=tmp_path, max_in_flight=1, body_timeout_s=1.5), engine=tiny_engine)
    with live_server(app) as url:
        key = app.state.new_api_key
        stalled = [_stalled_upload(url, key) for _ in range(8)]
        try:
            with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=30) as c:
                assert inspect(c, scan_files[2]).status_code == 201  # the one slot was free all along
            for s in stalled:
                answer = s.recv(4096).decode("latin-1")
                assert answer.startswith("HTTP/1.1 408"), answer[:200]
        finally:
            for s in stalled:
                s.close()


# -- 5. keys and data at rest -------------------------------------------------------------------


def test_generated_key_goes_to_a_private_file_never_to_stdout_or_the_log(
    tmp_path, tiny_engine, live_server, capfd, caplog
) -> None:
    app = create_app(Settings(data_dir=tmp_path / "d"), engine=tiny_engine)
    with live_server(app):
        key = app.state.new_api_key
    assert key
    key_file = tmp_path / "d" / "api-key"
    assert key_file.read_text().strip() == key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    out, err = capfd.readouterr()
    assert key not in out + err
    assert not any(key in rec.getMessage() for rec in caplog.records)
    assert any(str(key_file) in rec.getMessage() for rec in caplog.records)  # says where it is


def test_data_dir_is_private(service, client, scan_files) -> None:
    assert inspect(client, scan_files[3]).status_code == 201
    assert stat.S_IMODE(service.data.stat().st_mode) == 0o700
    assert stat.S_IMODE((service.data / "xray.sqlite").stat().st_mode) == 0o600
    images = [p for p in (service.data / "images").rglob("*") if p.is_file()]
    assert images and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in images)
    assert all(stat.S_IMODE(d.stat().st_mode) == 0o700 for d in (service.data / "images").iterdir())


def test_keys_made_and_revoked_on_the_command_line_work_at_once(service, client, capsys) -> None:
    assert xray_main(["keys", "create", "--data-dir", str(service.data), "--label", "lane 7"]) == 0
    new_key = capsys.readouterr().out.strip()
    with httpx.Client(base_url=service.url, headers={"X-API-Key": new_key}, timeout=30) as c:
        assert c.get("/v1/inspections").status_code == 200
        assert xray_main(["keys", "list", "--data-dir", str(service.data)]) == 0
        listing = capsys.readouterr().out
        assert "lane 7" in listing and new_key not in listing
        key_id = new_key.split("_")[1]
        assert xray_main(["keys", "revoke", key_id, "--data-dir", str(service.data)]) == 0
        text_error(c.get("/v1/inspections"), 401, "revoked")  # the running service, no restart
    assert client.get("/v1/inspections").status_code == 200  # the other keys still work


def test_a_configured_key_once_revoked_stays_revoked(tmp_path, tiny_engine, live_server) -> None:
    settings = Settings(data_dir=tmp_path, api_keys=("lane-key-given-once",))
    app = create_app(settings, engine=tiny_engine)
    with live_server(app) as url:
        assert httpx.get(f"{url}/v1/inspections", headers={"X-API-Key": "lane-key-given-once"}).status_code == 200
    key_id = app.state.store.keys()[0].key_id
    assert xray_main(["keys", "revoke", key_id, "--data-dir", str(tmp_path)]) == 0
    for again in (Settings(data_dir=tmp_path), settings):  # restarted without it, and with it again
        app = create_app(again, engine=tiny_engine)
        with live_server(app) as url:
            r = httpx.get(f"{url}/v1/inspections", headers={"X-API-Key": "lane-key-given-once"})
            assert r.status_code == 401


# -- 6. exposed without a key; docs; headers --------------------------------------------------------


def test_metrics_need_the_key(service, client) -> None:
    assert httpx.get(f"{service.url}/metrics").status_code == 401
    assert "xray_verdicts_total" in client.get("/metrics").text


def test_docs_are_served_from_local_files_under_security_headers(service) -> None:
    with httpx.Client(base_url=service.url) as c:
        page = c.get("/docs")
        assert page.status_code == 200
        assert "http://" not in page.text and "https://" not in page.text  # no CDN
        for asset in ("/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css", "/docs/init.js"):
            assert c.get(asset).status_code == 200, asset
        for path in ("/", "/docs", "/healthz", "/v1/inspections"):
            headers = c.get(path).headers
            assert "default-src 'self'" in headers["content-security-policy"]
            assert headers["x-content-type-options"] == "nosniff"
            assert headers["x-frame-options"] == "DENY"
            assert headers["referrer-policy"] == "no-referrer"


# -- 7. smaller issues ------------------------------------------------------------------------------


def test_infinite_numbers_and_non_ascii_hs_codes_are_refused(client, scan_files) -> None:
    manifest = json.loads(scan_files[0].manifest.read_text())
    line = manifest["lines"][0] if manifest["lines"] else {"hs_code": "8703"}
    for bad in ({**line, "quantity": "Infinity"}, {**line, "hs_code": "８７０３"}, {**line, "hs_code": "²³⁴⁵"}):
        body = json.dumps({**manifest, "lines": [bad]}).replace('"Infinity"', "Infinity")
        assert inspect(client, scan_files[0], body).status_code == 422, bad


def test_control_characters_in_ids_are_refused(client, scan_files) -> None:
    text_error(inspect(client, scan_files[0], scan_id="lane\x00one"), 422, "scan_id")
    made = inspect(client, scan_files[0]).json()
    r = client.post(made["links"]["review"], json={"decision": "confirm", "reviewer": "ana\x00"})
    text_error(r, 422, "reviewer")


def test_since_is_read_strictly(client) -> None:
    text_error(client.get("/v1/inspections", params={"since": "1700000000"}), 422, "since")
    text_error(client.get("/v1/inspections", params={"since": "2026-02-30"}), 422, "since")
    assert client.get("/v1/inspections", params={"since": "2026-01-31"}).status_code == 200
    assert client.get("/v1/inspections", params={"since": "2026-01-31T08:00:00+02:00"}).status_code == 200


def test_full_disk_gives_507_before_anything_is_written(service, client, scan_files, monkeypatch) -> None:
    before = service.app.state.store.count()
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(admission_module.shutil, "disk_usage", lambda _p: usage(10 << 30, 10 << 30, 1 << 20))
    text_error(inspect(client, scan_files[0]), 507, "free")
    assert service.app.state.store.count() == before


def test_png_with_120_mb_of_trailing_bytes_is_refused_not_stored(service, client, scan_files, tmp_path) -> None:
    png = write_png16(tmp_path / "s.png", np.random.default_rng(1).random((128, 384))).read_bytes()
    files = {"scan": ("padded.png", png + b"\0" * (4 << 20), "image/png")}  # the bytes, not the size, matter
    r = client.post("/v1/inspections", files=files, data={"manifest": scan_files[0].manifest.read_text()})
    text_error(r, 422, "after the PNG")
    stored = [p for p in (service.data / "images").rglob("*") if p.is_file()]
    assert all(p.stat().st_size < (4 << 20) for p in stored)


def test_key_file_survives_restart_and_is_reused(tmp_path, tiny_engine, live_server) -> None:
    app = create_app(Settings(data_dir=tmp_path), engine=tiny_engine)
    with live_server(app):
        key = app.state.new_api_key
    again = create_app(Settings(data_dir=tmp_path), engine=tiny_engine)
    with live_server(again) as url:
        assert again.state.new_api_key is None  # a key exists: none generated, the file untouched
        assert httpx.get(f"{url}/v1/inspections", headers={"X-API-Key": key}).status_code == 200
    assert (Path(tmp_path) / "api-key").read_text().strip() == key
    assert os.stat(tmp_path / "api-key").st_mode & 0o077 == 0
