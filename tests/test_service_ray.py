"""`xray serve --ray`: the Ray Serve deployment passes the HTTP API contract tests of test_service_api.

The tests are those of test_service_api (imported, so they run here too), against the service
deployed on a local Ray cluster and reached over loopback HTTP through Ray Serve's proxy. The
audit database is shared: the test process opens it where a test reads or seeds the store.
"""

from __future__ import annotations

import concurrent.futures
from types import SimpleNamespace

import pytest
from conftest import _free_port
from test_service_api import (  # noqa: F401 - the imported tests and fixtures run against Ray here
    UPLOAD_LIMIT,
    client,
    inspect,
    test_api_needs_a_valid_key,
    test_fuzzed_bodies_never_give_5xx,
    test_health_ready_metrics_docs_and_console,
    test_inspect_dicos_file,
    test_inspect_dual_energy_pair,
    test_inspect_one_dual_energy_tiff_with_manifest_file_and_scan_id,
    test_key_is_stored_as_a_salted_slow_hash_only,
    test_list_is_newest_first_paginated_and_filtered,
    test_list_rejects_bad_queries,
    test_metrics_count_verdicts_and_stage_latency,
    test_overlay_is_a_png_of_the_scan_width_and_cached,
    test_review_confirm_with_another_channel_is_refused,
    test_review_rejects_bad_bodies,
    test_review_round_trip,
    test_single_energy_scan_still_gets_a_verdict_from_a_dual_energy_model,
    test_unknown_inspection_is_404,
    test_upload_errors_are_4xx_with_a_message,
    test_upload_over_the_limit_is_413,
)

from xray.errors import ConfigError
from xray.service import Settings
from xray.service.store import Store

pytest.importorskip("ray")
# Ray Serve's own pydantic models warn on import; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray")


@pytest.fixture(scope="module")
def service(tmp_path_factory, tiny_model_dir, ray_cluster):
    """The service on Ray Serve with auth on; yields (base URL, API key, the shared store as `app.state.store`, data dir)."""
    from ray import serve

    from xray.service.ray_serve import deploy

    data = tmp_path_factory.mktemp("ray-api-data")
    port = _free_port()
    key = deploy(
        Settings(model_dir=tiny_model_dir, data_dir=data, max_upload_bytes=UPLOAD_LIMIT, threads=1),
        port=port,
        replicas=1,
        max_batch=4,
    )
    store = Store(data)
    try:
        yield f"http://127.0.0.1:{port}", key, SimpleNamespace(state=SimpleNamespace(store=store)), data
    finally:
        store.close()
        serve.shutdown()


def test_concurrent_inspections_share_batches_and_keep_their_verdicts(client, scan_files) -> None:  # noqa: F811
    alone = {s.scan_id: inspect(client, s).json() for s in scan_files}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda s: inspect(client, s), scan_files * 2))
    for s, r in zip(scan_files * 2, together):
        assert r.status_code == 201, r.text
        body, first = r.json(), alone[s.scan_id]
        assert (body["scan_id"], body["channel"], body["risk"], body["findings"]) == (
            first["scan_id"],
            first["channel"],
            first["risk"],
            first["findings"],
        )
        assert body["inspection_id"] != first["inspection_id"]


def test_the_folder_intake_is_refused_under_ray(tmp_path) -> None:
    from xray.service.ray_serve import deploy

    with pytest.raises(ConfigError, match="--watch"):
        deploy(Settings(data_dir=tmp_path, watch_dir=tmp_path), port=_free_port())
    with pytest.raises(ConfigError, match="loopback"):
        deploy(Settings(data_dir=tmp_path, auth=False, host="0.0.0.0"), port=_free_port())


def test_the_command_refuses_ray_options_without_ray_and_the_intake_under_ray(tiny_model_dir, tmp_path, capsys) -> None:
    from xray import cli

    base = ["serve", "--model", str(tiny_model_dir), "--data-dir", str(tmp_path)]
    assert cli.main([*base, "--replicas", "2"]) == 2 and "options of --ray" in capsys.readouterr().err
    assert cli.main([*base, "--ray", "--watch", str(tmp_path)]) == 2 and "--watch" in capsys.readouterr().err
