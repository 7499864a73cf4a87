"""The inspection API contract: every endpoint, auth on and off, every error path, reviews, pagination."""

from __future__ import annotations

import hashlib
import json
import random
import struct
import zlib

import cv2
import httpx
import numpy as np
import pytest

import serve
from xray.errors import ConfigError
from xray.scan import Scan, ScanKind
from xray.service import Settings, create_app
from xray.service.store import INSPECTION_ID_RE
from xray.sources.dicos import write_dicos
from xray.sources.files import write_tiff
from xray.verdict import Channel, Outcome, Verdict

UPLOAD_LIMIT = 2 << 20  # small, so that the 413 path is cheap to test


@pytest.fixture(scope="module")
def service(tmp_path_factory, tiny_engine, live_server):
    """A running service with auth on; yields (base URL, API key, app, data dir)."""
    data = tmp_path_factory.mktemp("api-data")
    app = create_app(Settings(data_dir=data, max_upload_bytes=UPLOAD_LIMIT), engine=tiny_engine)
    with live_server(app) as url:
        yield url, app.state.new_api_key, app, data


@pytest.fixture
def client(service):
    url, key, _, _ = service
    with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=30) as c:
        yield c


def dual_parts(scan) -> dict:
    return {"high": (scan.high.name, scan.high.read_bytes(), "image/png"),
            "low": (scan.low.name, scan.low.read_bytes(), "image/png")}


def inspect(client: httpx.Client, scan, **extra) -> httpx.Response:
    return client.post("/v1/inspections", files=dual_parts(scan), data={"manifest": scan.manifest.read_text(), **extra})


def png_bytes(pixels: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", pixels)
    assert ok
    return buf.tobytes()


def assert_error(r: httpx.Response, status: int, *words: str) -> None:
    assert r.status_code == status, r.text
    detail = json.dumps(r.json()["detail"]).lower()
    for w in words:
        assert w.lower() in detail, (w, detail)


# -- operations ------------------------------------------------------------------------


def test_health_ready_metrics_docs_and_console(service) -> None:
    url, key, _, _ = service
    with httpx.Client(base_url=url) as c:  # none of these needs a key, but /metrics
        assert c.get("/healthz").json() == {"status": "ok"}
        ready = c.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["status"] == "ready" and ready.json()["model_id"] == "tiny"
        assert c.get("/docs").status_code == 200
        paths = c.get("/openapi.json").json()["paths"]
        assert {"/v1/inspections", "/v1/inspections/{inspection_id}", "/v1/inspections/{inspection_id}/overlay.png",
                "/v1/inspections/{inspection_id}/review", "/healthz", "/readyz", "/metrics"} <= set(paths)
        assert "multipart/form-data" in paths["/v1/inspections"]["post"]["requestBody"]["content"]
        page = c.get("/")
        assert page.status_code == 200 and "inspection console" in page.text
        assert c.get("/app.js").status_code == 200 and c.get("/style.css").status_code == 200
        assert c.get("/metrics").status_code == 401  # verdict counts per channel are not public
        metrics = c.get("/metrics", headers={"X-API-Key": key})
        assert metrics.status_code == 200
        assert 'xray_http_requests_total{method="GET",route="/healthz",status="200"}' in metrics.text
        assert "xray_inspections_in_flight" in metrics.text


def test_metrics_count_verdicts_and_stage_latency(service, client, scan_files) -> None:
    assert inspect(client, scan_files[0]).status_code == 201
    text = client.get("/metrics").text
    assert 'xray_verdicts_total{channel=' in text and 'source="http"' in text
    for stage in ("decode", "preprocess", "model", "postprocess", "verify", "total", "end_to_end"):
        assert f'xray_stage_seconds_count{{stage="{stage}"}}' in text
    assert 'route="/v1/inspections",status="201"' in text


# -- auth ----------------------------------------------------------------------------------


@pytest.mark.parametrize("method,path", [
    ("POST", "/v1/inspections"), ("GET", "/v1/inspections"), ("GET", "/v1/inspections/01H00000000000000000000000"),
    ("GET", "/v1/inspections/01H00000000000000000000000/overlay.png"),
    ("POST", "/v1/inspections/01H00000000000000000000000/review"),
])
def test_api_needs_a_valid_key(service, method, path) -> None:
    url, _, _, _ = service
    with httpx.Client(base_url=url) as c:
        assert_error(c.request(method, path), 401, "missing", "X-API-Key")
        assert_error(c.request(method, path, headers={"X-API-Key": "xr_wrong"}), 401, "not valid")


def test_key_is_stored_as_a_salted_slow_hash_only(service) -> None:
    _, key, app, data = service
    assert key and key.startswith("xr_")
    rows = app.state.store.keys()
    assert len(rows) == 1 and len(rows[0].salt) == 32
    assert rows[0].scrypt == hashlib.scrypt(key.encode(), salt=bytes.fromhex(rows[0].salt), n=1 << 14, r=8, p=1,
                                            maxmem=64 << 20, dklen=32).hex()
    database = (data / "xray.sqlite").read_bytes()
    assert key.encode() not in database and hashlib.sha256(key.encode()).hexdigest().encode() not in database


def test_auth_off_on_loopback(tmp_path, tiny_engine, live_server, scan_files) -> None:
    app = create_app(Settings(data_dir=tmp_path, auth=False, host="127.0.0.1"), engine=tiny_engine)
    with live_server(app) as url, httpx.Client(base_url=url, timeout=30) as c:
        assert app.state.new_api_key is None  # no key is made when none is needed
        r = inspect(c, scan_files[1])
        assert r.status_code == 201 and r.json()["client"] == "anonymous"
        assert c.get("/v1/inspections").json()["items"][0]["inspection_id"] == r.json()["inspection_id"]


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "scanner-gw.example"])
def test_auth_off_refused_off_loopback(tmp_path, host) -> None:
    with pytest.raises(ConfigError, match="loopback"):
        create_app(Settings(data_dir=tmp_path, auth=False, host=host))


def test_serve_refuses_no_auth_on_public_address(tiny_model_dir, tmp_path, capsys) -> None:
    assert serve.main(["--model", str(tiny_model_dir), "--no-auth", "--host", "0.0.0.0",
                       "--data-dir", str(tmp_path)]) == 2
    assert "loopback" in capsys.readouterr().err
    assert serve.main(["--model", str(tmp_path / "nope"), "--data-dir", str(tmp_path)]) == 2
    assert "not an exported model folder" in capsys.readouterr().err


# -- inspections ------------------------------------------------------------------------------


def test_inspect_dual_energy_pair(service, client, scan_files) -> None:
    _, _, _, data = service
    scan = scan_files[0]
    r = inspect(client, scan)
    assert r.status_code == 201, r.text
    body = r.json()
    assert INSPECTION_ID_RE.match(body["inspection_id"])
    assert r.headers["location"] == body["links"]["self"] == f"/v1/inspections/{body['inspection_id']}"
    assert body["scan_id"] == scan.scan_id
    assert body["container_id"] == json.loads(scan.manifest.read_text())["container_id"]
    assert body["channel"] in ("green", "yellow", "red") and 0 <= body["risk"] <= 1
    assert body["model_id"] == "tiny" and body["client"].startswith("key:")
    assert {"decode", "preprocess", "model", "postprocess", "verify", "total"} <= set(body["timings_ms"])
    declared = json.loads(scan.manifest.read_text())["lines"]
    assert [g["declared"] for g in body["goods"]][: len(declared)] == [True] * len(declared)
    assert body["review"] is None and body["reviews"] == []
    # Images are content-addressed under the data dir, high then low.
    for path, digest in zip((scan.high, scan.low), body["image_sha256"], strict=True):
        assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
        assert (data / "images" / digest[:2] / f"{digest}.png").read_bytes() == path.read_bytes()
    again = client.get(body["links"]["self"])
    assert again.status_code == 200 and again.json() == body


def _dual_scan(scan, scan_id: str) -> Scan:
    high = cv2.imread(str(scan.high), cv2.IMREAD_UNCHANGED)
    low = cv2.imread(str(scan.low), cv2.IMREAD_UNCHANGED)
    channels = (np.stack([high, low]).astype(np.float32) / 65535).astype(np.float32)
    return Scan(id=scan_id, channels=channels, kind=ScanKind.DUAL, energies=("6MV", "4MV"))


def test_inspect_one_dual_energy_tiff_with_manifest_file_and_scan_id(client, scan_files, tmp_path) -> None:
    scan = scan_files[1]
    tif = write_tiff(tmp_path / "x.tif", _dual_scan(scan, "x"))
    r = client.post("/v1/inspections", data={"scan_id": "lane3-000123"},
                    files={"scan": ("x.tif", tif.read_bytes(), "image/tiff"),
                           "manifest": ("m.json", scan.manifest.read_bytes(), "application/json")})
    assert r.status_code == 201, r.text
    assert r.json()["scan_id"] == "lane3-000123" and len(r.json()["image_sha256"]) == 1


def test_single_energy_scan_still_gets_a_verdict_from_a_dual_energy_model(client, scan_files) -> None:
    r = client.post("/v1/inspections", files={"scan": ("x.png", scan_files[1].high.read_bytes(), "image/png")},
                    data={"manifest": scan_files[1].manifest.read_text()})
    assert r.status_code == 201, r.text
    assert r.json()["channel"] in ("green", "yellow", "red")


def test_inspect_dicos_file(client, scan_files, tmp_path) -> None:
    dcm = write_dicos(tmp_path / "lane1.dcm", _dual_scan(scan_files[2], "lane1"))
    r = client.post("/v1/inspections", files={"scan": ("lane1.dcm", dcm.read_bytes(), "application/dicom")},
                    data={"manifest": scan_files[2].manifest.read_text()})
    assert r.status_code == 201, r.text
    assert r.json()["scan_id"] == "lane1"
    assert client.get(r.json()["links"]["overlay"]).status_code == 200  # the stored .dcm decodes again


def test_overlay_is_a_png_of_the_scan_width_and_cached(service, client, scan_files) -> None:
    _, _, _, data = service
    body = inspect(client, scan_files[0]).json()
    r = client.get(body["links"]["overlay"])
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    picture = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape[1] == 384 and picture.shape[0] > 128  # scan width; banner and legend added
    cached = data / "overlays" / f"{body['inspection_id']}.png"
    assert cached.read_bytes() == r.content
    assert client.get(body["links"]["overlay"]).content == r.content


def test_review_round_trip(client, scan_files) -> None:
    body = inspect(client, scan_files[3]).json()
    link = body["links"]["review"]
    r = client.post(link, json={"decision": "confirm", "reviewer": "officer 17"})
    assert r.status_code == 200, r.text
    assert r.json()["review"]["decision"] == "confirm" and r.json()["review"]["channel"] == body["channel"]
    r = client.post(link, json={"decision": "override", "channel": "red", "note": "dense block behind the bales",
                                "reviewer": "officer 17"})
    assert r.status_code == 200
    got = client.get(body["links"]["self"]).json()
    assert got["review"]["decision"] == "override" and got["review"]["channel"] == "red"
    assert got["review"]["note"] == "dense block behind the bales" and got["review"]["reviewer"] == "officer 17"
    assert [x["decision"] for x in got["reviews"]] == ["confirm", "override"]  # the trail keeps both
    assert got["channel"] == body["channel"]  # the model's verdict itself is never rewritten
    listed = {i["inspection_id"]: i for i in client.get("/v1/inspections", params={"limit": 500}).json()["items"]}
    assert listed[body["inspection_id"]]["review"]["channel"] == "red"


@pytest.mark.parametrize("payload,words", [
    ({"decision": "override", "reviewer": "a"}, ["override needs the channel"]),
    ({"decision": "approve", "reviewer": "a"}, ["decision"]),
    ({"decision": "confirm"}, ["reviewer"]),
    ({"decision": "override", "channel": "purple", "reviewer": "a"}, ["channel"]),
    ({"decision": "confirm", "reviewer": "a", "extra": 1}, ["extra"]),
])
def test_review_rejects_bad_bodies(client, scan_files, payload, words) -> None:
    body = inspect(client, scan_files[0]).json()
    assert_error(client.post(body["links"]["review"], json=payload), 422, *words)


def test_review_confirm_with_another_channel_is_refused(client, scan_files) -> None:
    body = inspect(client, scan_files[0]).json()
    other = next(c for c in ("green", "yellow", "red") if c != body["channel"])
    assert_error(client.post(body["links"]["review"], json={"decision": "confirm", "channel": other, "reviewer": "a"}),
                 422, "override")


def test_unknown_inspection_is_404(client) -> None:
    for path in ("/v1/inspections/01H00000000000000000000000", "/v1/inspections/not-an-id",
                 "/v1/inspections/01H00000000000000000000000/overlay.png"):
        assert_error(client.get(path), 404, "no inspection")
    assert_error(client.post("/v1/inspections/01H00000000000000000000000/review",
                             json={"decision": "confirm", "reviewer": "a"}), 404, "no inspection")


def _record(app, channel: Channel) -> str:
    verdict = Verdict(scan_id=f"seeded-{channel.value}", verdict=Outcome.MATCH, channel=channel, risk=0.1,
                      model_id="tiny", model_version="x")
    return app.state.store.add(client="test", verdict=verdict, images=[], manifest=None, container_id=None,
                               present=0.5).id


def test_list_is_newest_first_paginated_and_filtered(service, client) -> None:
    _, _, app, _ = service
    channels = [Channel.RED, Channel.GREEN, Channel.RED, Channel.YELLOW, Channel.RED]
    seeded = {_record(app, ch): ch.value for ch in channels}
    everything = client.get("/v1/inspections", params={"limit": 500}).json()["items"]
    ids = [i["inspection_id"] for i in everything]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids)
    created = [i["created"] for i in everything]
    assert created == sorted(created, reverse=True)
    # Walking pages of 2 gives every inspection once, in the same order.
    walked, cursor = [], None
    while True:
        page = client.get("/v1/inspections", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        assert len(page["items"]) <= 2
        walked += [i["inspection_id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert walked == ids
    # A channel filter returns exactly that channel's inspections.
    for ch in ("red", "green", "yellow"):
        got = client.get("/v1/inspections", params={"channel": ch, "limit": 500}).json()["items"]
        assert {i["channel"] for i in got} <= {ch}
        assert [i["inspection_id"] for i in got] == [i["inspection_id"] for i in everything if i["channel"] == ch]
        assert {k for k, v in seeded.items() if v == ch} <= {i["inspection_id"] for i in got}
    # since= keeps those created at or after the time.
    middle = everything[len(everything) // 2]
    since = client.get("/v1/inspections", params={"since": middle["created"], "limit": 500}).json()["items"]
    assert [i["inspection_id"] for i in since] == [
        i["inspection_id"] for i in everything if i["created"] >= middle["created"]]


@pytest.mark.parametrize("params,word", [
    ({"channel": "purple"}, "channel"), ({"limit": 0}, "limit"), ({"limit": 501}, "limit"),
    ({"cursor": "bad"}, "cursor"), ({"since": "yesterday"}, "since"),
])
def test_list_rejects_bad_queries(client, params, word) -> None:
    assert_error(client.get("/v1/inspections", params=params), 422, word)


# -- bad uploads ---------------------------------------------------------------------------


def _bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge image."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_upload_errors_are_4xx_with_a_message(client, scan_files) -> None:
    scan = scan_files[0]
    manifest = scan.manifest.read_text()
    high = ("h.png", scan.high.read_bytes(), "image/png")
    low = ("l.png", scan.low.read_bytes(), "image/png")
    post = client.post
    assert_error(post("/v1/inspections", files={"high": high, "low": low}), 422, "missing part", "manifest")
    assert_error(post("/v1/inspections", data={"manifest": manifest}), 422, "missing part", "scan")
    assert_error(post("/v1/inspections", files={"scan": high, "high": high}, data={"manifest": manifest}), 422,
                 "not both")
    assert_error(post("/v1/inspections", files={"low": low}, data={"manifest": manifest}), 422, "'high'")
    assert_error(post("/v1/inspections", data={"scan": "hello", "manifest": manifest}), 422, "must be a file")
    # Manifests: not JSON, a bad field, too large.
    assert_error(post("/v1/inspections", files={"scan": high}, data={"manifest": "{not json"}), 422, "not valid JSON")
    bad_field = json.dumps({"container_id": "C1", "lines": [{"hs_code": "tobacco"}]})
    assert_error(post("/v1/inspections", files={"scan": high}, data={"manifest": bad_field}), 422, "lines.0.hs_code")
    assert_error(post("/v1/inspections", files={"scan": high}, data={"manifest": json.dumps({"lines": []})}), 422,
                 "container_id")
    huge = json.dumps({"container_id": "C1", "lines": [], "pad": "x" * 1_100_000})
    assert_error(post("/v1/inspections", files={"scan": high, "manifest": ("m.json", huge.encode())}), 413, "manifest")
    # Images: not an image, truncated, a decompression bomb, a pair of different sizes.
    assert_error(post("/v1/inspections", files={"scan": ("x.png", b"GIF89a not a scan")}, data={"manifest": manifest}),
                 422, "x.png", "not PNG")
    assert_error(post("/v1/inspections", files={"scan": ("t.png", scan.high.read_bytes()[:3000])},
                      data={"manifest": manifest}), 422, "t.png", "truncated")
    assert_error(post("/v1/inspections", files={"scan": ("bomb.png", _bomb_png(100_000, 100_000))},
                      data={"manifest": manifest}), 422, "bomb.png", "decompression bomb")
    small = ("s.png", png_bytes(np.full((64, 64), 30000, np.uint16)), "image/png")
    assert_error(post("/v1/inspections", files={"high": high, "low": small}, data={"manifest": manifest}), 422,
                 "low-energy image is 64x64")
    assert_error(post("/v1/inspections", files={"scan": ("e.png", b"")}, data={"manifest": manifest}), 422, "empty")


def test_a_body_that_is_not_a_form_is_415_and_parts_stream_in_any_chunking(client, scan_files) -> None:
    assert_error(client.post("/v1/inspections", content=b"{}", headers={"Content-Type": "application/json"}), 415,
                 "multipart/form-data", "application/json")
    assert_error(client.post("/v1/inspections", content=b"x", headers={"Content-Type": "multipart/form-data"}), 415,
                 "boundary")
    # The same form sent whole and in 997-byte chunks: the same parts, so the same record.
    scan = scan_files[0]
    request = httpx.Request("POST", "http://x/", files=dual_parts(scan), data={"manifest": scan.manifest.read_text()})
    body, ctype = request.read(), request.headers["Content-Type"]
    answers = []
    for size in (len(body), 997):
        r = client.post("/v1/inspections", content=(body[i:i + size] for i in range(0, len(body), size)),
                        headers={"Content-Type": ctype})
        assert r.status_code == 201, r.text
        answers.append((r.json()["channel"], r.json()["image_sha256"]))
    assert answers[0] == answers[1]
    assert answers[0][1] == [hashlib.sha256(p.read_bytes()).hexdigest() for p in (scan.high, scan.low)]


def test_form_reader_keeps_parts_whole_across_any_chunking() -> None:
    from xray.service.upload import FormReader, MalformedForm

    request = httpx.Request("POST", "http://x/", files={"high": ("h.png", bytes(range(256)) * 40, "image/png")},
                            data={"manifest": '{"container_id": "C1"}', "scan_id": "s-1"})
    body = request.read()
    boundary = request.headers["Content-Type"].split("boundary=")[1].encode()
    for size in (1, 3, 64, len(body)):
        reader = FormReader(boundary)
        for i in range(0, len(body), size):
            reader.write(body[i:i + size])
        parts = {p.name: p for p in reader.finish()}
        assert parts["high"].filename == "h.png" and parts["high"].data == bytes(range(256)) * 40
        assert parts["manifest"].filename is None and parts["manifest"].data == b'{"container_id": "C1"}'
        assert parts["scan_id"].data == b"s-1"
    reader = FormReader(b"xx")
    with pytest.raises(MalformedForm, match="exceeds"):
        reader.write(b'--xx\r\nContent-Disposition: form-data; name="manifest"\r\n\r\n' + b"x" * 4_000_001)


def test_form_limits_are_400(client, scan_files) -> None:
    high = ("h.png", scan_files[0].high.read_bytes(), "image/png")
    five = {f"f{i}": high for i in range(5)}
    assert_error(client.post("/v1/inspections", files=five), 400, "more than 4 files")
    fields = {f"x{i}": "1" for i in range(9)}
    assert_error(client.post("/v1/inspections", files={"scan": high}, data=fields), 400, "more than 8 fields")


def test_upload_over_the_limit_is_413(client, scan_files) -> None:
    manifest = scan_files[0].manifest.read_text()
    big = ("big.png", b"\0" * (UPLOAD_LIMIT + 1), "image/png")
    assert_error(client.post("/v1/inspections", files={"scan": big}, data={"manifest": manifest}), 413, "limit")

    def chunks():  # no Content-Length: the limit must hold while the body streams in
        boundary = b"--xx\r\n"
        yield boundary + b'Content-Disposition: form-data; name="scan"; filename="big.png"\r\n\r\n'
        for _ in range(UPLOAD_LIMIT // 65536 + 2):
            yield b"\0" * 65536
        yield b"\r\n--xx--\r\n"

    r = client.post("/v1/inspections", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=xx"})
    assert_error(r, 413, "limit")


def test_fuzzed_bodies_never_give_5xx(client, scan_files) -> None:
    rng = random.Random(7)
    png = scan_files[0].high.read_bytes()
    manifest = scan_files[0].manifest.read_bytes()
    bodies: list[tuple[bytes, str]] = [
        (b"", "multipart/form-data; boundary=xx"),
        (b"{}", "application/json"),
        (b"scan=1&manifest=2", "application/x-www-form-urlencoded"),
        (b"--xx\r\nContent-Disposition: form-data; name=\"scan\"\r\n\r\nabc", "multipart/form-data; boundary=xx"),
        (b"--xx\r\ngarbage\r\n--xx--", "multipart/form-data; boundary=xx"),
        (b"\xff" * 100, "multipart/form-data"),
        (png, "image/png"),
    ]
    for _ in range(30):
        n = rng.randrange(0, 4000)
        kind = rng.choice(["random", "mutated_png", "mutated_manifest"])
        if kind == "random":
            body = rng.randbytes(n)
        elif kind == "mutated_png":
            body = bytearray(png[: rng.randrange(8, len(png))])
            for _ in range(rng.randrange(1, 20)):
                body[rng.randrange(len(body))] = rng.randrange(256)
            body = bytes(body)
        else:
            body = bytearray(manifest)
            body[rng.randrange(len(body))] = rng.randrange(256)
            body = bytes(body)
        ctype = rng.choice(["multipart/form-data; boundary=xx", "application/octet-stream", "text/plain"])
        bodies.append((body, ctype))
    for body, ctype in bodies:
        r = client.post("/v1/inspections", content=body, headers={"Content-Type": ctype})
        assert 400 <= r.status_code < 500, (r.status_code, r.text[:200], body[:60])
    # Mutated images and manifests inside well-formed multipart requests.
    for _ in range(25):
        data = bytearray(png)
        for _ in range(rng.randrange(1, 40)):
            data[rng.randrange(8, len(data))] = rng.randrange(256)
        text = bytearray(manifest)
        if rng.random() < 0.5:
            text[rng.randrange(len(text))] = rng.randrange(256)
        r = client.post("/v1/inspections", files={"scan": ("f.png", bytes(data)), "manifest": ("m.json", bytes(text))})
        assert r.status_code < 500, (r.status_code, r.text[:200])
