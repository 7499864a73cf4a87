"""The API contract with its resources swapped through `app.dependency_overrides` (no model, no server)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from xray.detection import Detection, Detections
from xray.scan import Scan
from xray.service import Settings, create_app
from xray.service.dependencies import get_inspector
from xray.verify import Inspector, VerifierConfig


class FakeEngine:
    """An engine that finds cigarettes at the given score in every scan, instantly."""

    card: dict = {}
    model_id, model_version = "fake", "0"

    def __init__(self, tobacco: float = 0.97, warmed: bool = True) -> None:
        self.tobacco, self.warmed = tobacco, warmed

    def warm_up(self) -> None:
        pass

    def detect(self, scan: Scan) -> Detections:
        dets = [Detection(box=(10, 10, 60, 40), category="textiles", score=0.95),
                Detection(box=(70, 10, 120, 40), category="tobacco", score=self.tobacco)]
        return Detections(scan_id=scan.id, detections=dets, timings_ms={"preprocess": 1.0, "model": 2.0,
                                                                        "postprocess": 0.5},
                          model_id=self.model_id, model_version=self.model_version)


@pytest.fixture
def client(tmp_path):
    with TestClient(create_app(Settings(data_dir=tmp_path, auth=False), engine=FakeEngine())) as client:
        yield client


def post(client: TestClient, scan) -> dict:
    r = client.post("/v1/inspections", files={"high": (scan.high.name, scan.high.read_bytes()),
                                              "low": (scan.low.name, scan.low.read_bytes())},
                    data={"manifest": '{"container_id": "MSKU1234565", "lines": [{"hs_code": "620342"}]}'})
    assert r.status_code == 201, r.text
    return r.json()


def test_the_response_renders_the_verdict_of_the_inspector_it_is_given(client, scan_files) -> None:
    app = client.app
    hidden = post(client, scan_files[0])
    assert hidden["channel"] == "red" and hidden["model_id"] == "fake"
    assert [(f["kind"], f["category"]) for f in hidden["findings"]] == [("undeclared", "tobacco")]
    goods = {g["category"]: g for g in hidden["goods"]}
    assert goods["textiles"]["declared"] and goods["textiles"]["seen"]
    assert not goods["tobacco"]["declared"] and goods["tobacco"]["seen"]
    assert goods["tobacco"]["boxes"] == [[70, 10, 120, 40]] and goods["tobacco"]["threshold"] == 0.5
    assert set(hidden["timings_ms"]) == {"decode", "preprocess", "model", "postprocess", "verify", "total"}
    assert client.get(hidden["links"]["self"]).json() == hidden  # what was recorded is what was answered

    # A stricter verifier and a weaker finding, swapped in for one request: the route takes what it is given.
    app.dependency_overrides[get_inspector] = lambda: Inspector(FakeEngine(tobacco=0.2),
                                                                VerifierConfig(yellow=0.9, red=0.95))
    calm = post(client, scan_files[0])
    assert calm["channel"] == "green" and calm["findings"] == []
    assert [g["category"] for g in calm["goods"]] == ["textiles"]
    app.dependency_overrides.clear()
    assert post(client, scan_files[0])["channel"] == "red"


def test_readiness_follows_the_engine_it_is_given(client) -> None:
    app = client.app
    assert client.get("/readyz").status_code == 200
    app.dependency_overrides[get_inspector] = lambda: Inspector(FakeEngine(warmed=False))
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json()["model_warmed"] is False and r.json()["status"] == "not ready"


def test_a_verdict_stored_before_the_goods_table_still_renders(client) -> None:
    from xray.service.store import InspectionRow
    from xray.verdict import Channel, Outcome, Verdict

    store = client.app.state.store
    row = store.add(client="test", verdict=Verdict(scan_id="old", verdict=Outcome.MATCH, channel=Channel.GREEN,
                                                   risk=0.1), images=[], manifest=None, container_id=None, present=0.5)
    old = {k: v for k, v in row.verdict.items() if k not in ("goods", "domain")}
    old["evidence"] = {"textiles": 0.9}  # a field the verdict no longer has
    with store.session() as s, s.begin():
        s.get(InspectionRow, row.id).verdict = old
    body = client.get(f"/v1/inspections/{row.id}").json()
    assert body["scan_id"] == "old" and body["goods"] == [] and body["domain"] is None and "evidence" not in body
