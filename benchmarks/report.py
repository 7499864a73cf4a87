"""The results of a benchmark run as files: JSON, a markdown table and a latency histogram PNG.

Every function here takes the results dict that `python -m benchmarks` builds and tolerates
sections that failed or were skipped (their rows say so instead of showing numbers).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

REFERENCE_MS = 5000.0  # Shanghai Yangshan's AI image reading: ~5 s per container image (DESIGN.md)
STAGES = ("decode", "preprocess", "model", "postprocess", "verify")
GPU_LABELS = {"cuda": "CUDA", "tensorrt": "TensorRT"}  # engine section keys of the GPU providers
# Issue 17's HTTP goals, as ratios to one stream of YOLO11n's raw network at this input (same run):
# inspections/s at concurrency 4 >= 1.5 x (1000 / its p50 ms); p99 at concurrency 4 <= 3 x p50 at concurrency 1.
YARDSTICK_INPUT = [512, 1536]
RATE_GOAL, TAIL_GOAL = 1.5, 3.0


def section(results: dict[str, Any], name: str) -> dict[str, Any] | None:
    """A section's results when it ran, else None."""
    s = results.get("sections", {}).get(name)
    return s if s and s.get("status") == "ok" else None


def _get(d: Any, *keys: Any) -> Any:
    for k in keys:
        if isinstance(d, dict):
            d = d.get(k)
        elif isinstance(d, list) and isinstance(k, int) and -len(d) <= k < len(d):
            d = d[k]
        else:
            return None
    return d


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def comparisons(results: dict[str, Any]) -> dict[str, Any]:
    """The headline ratios: to the 5 s reference, ONNX vs eager PyTorch, ours vs YOLO11n's raw network."""
    engine, http, models = section(results, "engine"), section(results, "http"), section(results, "models")
    out: dict[str, Any] = {"reference_ms": REFERENCE_MS}
    p50 = _get(engine, "cpu", "single_stream", "40ft", "stages_ms", "total", "p50")
    p99 = _get(engine, "cpu", "single_stream", "40ft", "stages_ms", "total", "p99")
    out["engine_40ft_p50_ms"], out["engine_40ft_p99_ms"] = p50, p99
    out["reference_over_engine_p50"] = _ratio(REFERENCE_MS, p50)
    out["reference_over_engine_p99"] = _ratio(REFERENCE_MS, p99)
    c1 = next((r for r in _get(http, "runs") or [] if r.get("concurrency") == 1), None)
    out["http_40ft_p50_ms"], out["http_40ft_p99_ms"] = _get(c1, "latency_ms", "p50"), _get(c1, "latency_ms", "p99")
    out["reference_over_http_p50"] = _ratio(REFERENCE_MS, out["http_40ft_p50_ms"])
    out["reference_over_http_p99"] = _ratio(REFERENCE_MS, out["http_40ft_p99_ms"])
    # The engine goal of issue 17: the whole 40-ft path, decode included, against YOLO11n's bare network.
    big = next((r for r in _get(models, "rows") or [] if list(r.get("input", [])) == [512, 1536]), None)
    out["engine_over_yolo11n_512x1536"] = _ratio(p50, _get(big, "yolo11n_onnx_ms", "p50"))
    out["by_input"] = []
    for row in _get(models, "rows") or []:
        ours = _get(row, "ours_onnx_ms", "p50")
        out["by_input"].append({
            "input": row["input"],
            "eager_over_onnx": _ratio(_get(row, "ours_eager_ms", "p50"), ours),
            "yolo11n_over_ours": _ratio(_get(row, "yolo11n_onnx_ms", "p50"), ours),
        })
    out["http_goals"] = http_goals(http, models)
    return out


def http_goals(http: dict[str, Any] | None, models: dict[str, Any] | None) -> dict[str, Any]:
    """Issue 17's HTTP throughput and tail goals, with micro-batching on (the service's defaults) and off."""
    yolo = next((_get(r, "yolo11n_onnx_ms", "p50") for r in _get(models, "rows") or []
                 if r.get("input") == YARDSTICK_INPUT), None)
    stream = round(1e3 / yolo, 3) if yolo else None
    out: dict[str, Any] = {"yolo11n_input": YARDSTICK_INPUT, "yolo11n_p50_ms": yolo, "yolo11n_stream_per_s": stream,
                           "rate_goal": RATE_GOAL, "tail_goal": TAIL_GOAL, "batching": _get(http, "batching")}
    for label, key in (("batching_on", "runs"), ("batching_off", "runs_batching_off")):
        runs = {r.get("concurrency"): r for r in _get(http, key) or []}
        rate = _get(runs.get(4), "inspections_per_second")
        p50, p99 = _get(runs.get(1), "latency_ms", "p50"), _get(runs.get(4), "latency_ms", "p99")
        out[label] = {"c4_per_s": rate, "c1_p50_ms": p50, "c4_p99_ms": p99,
                      "c4_over_yolo11n_stream": _ratio(rate, stream), "c4_p99_over_c1_p50": _ratio(p99, p50),
                      "c4_mean_batch_size": _get(runs.get(4), "mean_batch_size")}
    return out


def _ms(v: float | None) -> str:
    if v is None:
        return "–"
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 1 else f"{v:.2f}"


def _x(v: float | None) -> str:
    return "–" if v is None else f"{v:.1f}×"


def _x2(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}×"


def _f3(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def _status_line(results: dict[str, Any], name: str) -> str | None:
    s = results.get("sections", {}).get(name)
    if s is None:
        return f"*{name}: not run*"
    if s.get("status") != "ok":
        return f"*{name}: {s.get('status')} — {s.get('error') or s.get('reason')}*"
    return None


def markdown(results: dict[str, Any]) -> str:
    """The results as markdown: a header naming the machine and model, then one table per section."""
    m, model = results.get("machine", {}), results.get("model", {})
    v = m.get("versions", {})
    cmp_ = results.get("comparisons") or comparisons(results)
    lines = [
        f"### Benchmark {results.get('date', '')}{' (quick)' if results.get('quick') else ''}",
        "",
        f"Machine: {m.get('cores')} cores, {m.get('cpu')}, {m.get('memory_gb')} GiB"
        f"{''.join(f', {g}' for g in m.get('gpus') or [])}; onnxruntime "
        f"{v.get('onnxruntime', '?')} ({', '.join(m.get('onnxruntime_providers', []))}), torch {v.get('torch', '?')}. "
        f"Model: `{model.get('name')}` ({model.get('family')}, {model.get('params') or '?'} parameters, input "
        f"{'×'.join(map(str, model.get('input', [])))}). Inputs: "
        + ", ".join(f"{k} {i['width']}×{i['height']} px ×2 energies, 16-bit PNG ({i['png_bytes'] / 1e6:.1f} MB)"
                    for k, i in results.get("inputs", {}).items()) + ".",
        "",
    ]

    # latency
    engine, http = section(results, "engine"), section(results, "http")
    lines += ["| latency, 40-ft dual-energy scan | n | p50 ms | p95 ms | p99 ms | 5 s reference ÷ p50 |",
              "|---|---|---|---|---|---|"]
    ss = _get(engine, "cpu", "single_stream") or {}
    s40 = _get(ss, "40ft", "stages_ms") or {}
    for stage in STAGES:
        st = s40.get(stage) or {}
        lines.append(f"| engine (CPU), {stage} | {st.get('n', '–')} | {_ms(st.get('p50'))} | {_ms(st.get('p95'))} | "
                     f"{_ms(st.get('p99'))} | |")
    for name in ss:
        st = _get(ss, name, "stages_ms", "total") or {}
        lines.append(f"| **engine (CPU), total, {name}** | {st.get('n', '–')} | **{_ms(st.get('p50'))}** | "
                     f"{_ms(st.get('p95'))} | **{_ms(st.get('p99'))}** | {_x(_ratio(REFERENCE_MS, st.get('p50')))} |")
    for key, label in GPU_LABELS.items():
        g40 = _get(engine, key, "single_stream", "40ft", "stages_ms", "total")
        if g40:
            lines.append(f"| engine ({label}), total, 40ft | {g40['n']} | {_ms(g40['p50'])} | {_ms(g40['p95'])} | "
                         f"{_ms(g40['p99'])} | {_x(_ratio(REFERENCE_MS, g40['p50']))} |")

    for label, d in (_get(engine, "decode_formats") or {}).items():
        if isinstance(d, dict):
            st = d["decode_ms"]
            lines.append(f"| decode only, {label.replace('_', ' ')} ({d['bytes'] / 1e6:.1f} MB) | {st['n']} | "
                         f"{_ms(st['p50'])} | {_ms(st['p95'])} | {_ms(st['p99'])} | |")
    for r in _get(http, "runs") or []:
        lat = r.get("latency_ms") or {}
        lines.append(f"| **HTTP end to end, concurrency {r['concurrency']}** | {lat.get('n', 0)} | "
                     f"**{_ms(lat.get('p50'))}** | {_ms(lat.get('p95'))} | **{_ms(lat.get('p99'))}** | "
                     f"{_x(_ratio(REFERENCE_MS, lat.get('p50')))} |")
    lines += [x for x in (_status_line(results, "engine"), _status_line(results, "http")) if x]
    for key, label in GPU_LABELS.items():
        if engine and _get(engine, key, "skipped"):
            lines.append(f"\n{label}: skipped — {engine[key]['skipped']}.")
        elif engine and _get(engine, key, "model_batches", "skipped"):
            lines.append(f"\n{label} batches: skipped — {engine[key]['model_batches']['skipped']}.")
    lines.append("")

    # throughput
    thr = section(results, "throughput")
    lines += ["| throughput | value |", "|---|---|"]
    for c in _get(engine, "cpu", "concurrent") or []:
        lines.append(f"| engine, {c['streams']} concurrent stream(s), 40-ft | {c['scans_per_second']} scans/s "
                     f"(p50 {_ms(_get(c, 'latency_ms', 'p50'))} ms) |")
    for key, label in GPU_LABELS.items():
        for c in _get(engine, key, "concurrent") or []:
            lines.append(f"| engine ({label}), {c['streams']} concurrent stream(s), 40-ft | {c['scans_per_second']} "
                         f"scans/s (p50 {_ms(_get(c, 'latency_ms', 'p50'))} ms) |")
        for r in _get(engine, key, "model_batches", "rows") or []:
            lines.append(f"| model stage only ({label}), batch {r['batch']}, no decode | {r['scans_per_second']} "
                         f"scans/s (p50 {_ms(r['run_ms']['p50'])} ms per batch) |")
    for b in _get(engine, "cpu", "detect_batch") or []:
        lines.append(f"| engine detect_batch, batch {b['batch']}, 40-ft, decode excluded"
                     f"{'' if b.get('batched_graph') else ' (graph batch fixed at 1: one call per input)'} | "
                     f"{b['scans_per_second']} scans/s ({_ms(b['per_scan_ms'])} ms per scan) |")
    for r in _get(http, "runs") or []:
        lines.append(f"| HTTP, concurrency {r['concurrency']} | {r['inspections_per_second']} inspections/s; "
                     f"{r['ok']} ok, {r['rejected_503']} × 503, {r['errors']} errors of {r['requests']} |")
    c1 = next((r for r in _get(http, "runs") or [] if r.get("concurrency") == 1), None)
    if _get(c1, "server_decode_engine_ms", "p50") is not None:
        lines.append(f"| HTTP, concurrency 1: decode + engine inside the service, p50 | "
                     f"{_ms(c1['server_decode_engine_ms']['p50'])} ms of {_ms(c1['latency_ms']['p50'])} ms end to end |")
    if thr:
        sim, step, loader = thr.get("simulator") or {}, thr.get("training_step") or {}, thr.get("training_loader")
        lines.append(f"| simulator, 40-ft scans written ({sim.get('workers')} workers) | {sim.get('scans_per_second')} scans/s |")
        lines.append(f"| training step (fwd + bwd + AdamW), `{step.get('config')}` {'×'.join(map(str, step.get('input', [])))}, "
                     f"batch {step.get('batch_size')} | {step.get('images_per_second')} images/s |")
        if loader:
            lines.append(f"| training data pipeline (read + augment), per loader worker | "
                         f"{loader.get('images_per_second_per_worker')} images/s |")
        rescored = thr.get("rescore") or {}
        if rescored.get("ray"):
            same = rescored.get("comparison") or {}
            lines.append(f"| archive re-scoring (`xray rescore`), {rescored['scans']} scans: one process / local Ray "
                         f"(2 actors) | {_get(rescored, 'one_process', 'scans_per_s')} / "
                         f"{_get(rescored, 'ray', 'scans_per_s')} scans/s; {same.get('identical')} verdicts identical |")
        elif rescored.get("status"):
            lines.append(f"| archive re-scoring (`xray rescore`) | {rescored['status']} |")
    lines += [x for x in (_status_line(results, "throughput"),) if x]
    lines.append("")
    lines += _goal_rows(cmp_.get("http_goals") or http_goals(http, section(results, "models")))

    # model stage at equal input
    models = section(results, "models")
    if models:
        peer = models.get("peer") or {}
        lines += [(f"| model stage at equal input, p50 ms | ours, ONNX | ours, eager PyTorch | YOLO11n raw, ONNX "
                   f"({peer.get('params') or '?'} params) | YOLO11n ÷ ours |"), "|---|---|---|---|---|"]
        for row, c in zip(models.get("rows", []), cmp_.get("by_input", [])):
            lines.append(f"| {'×'.join(map(str, row['input']))} | {_ms(_get(row, 'ours_onnx_ms', 'p50'))} | "
                         f"{_ms(_get(row, 'ours_eager_ms', 'p50'))} | {_ms(_get(row, 'yolo11n_onnx_ms', 'p50'))} | "
                         f"{_x(c.get('yolo11n_over_ours'))} |")
        if cmp_.get("engine_over_yolo11n_512x1536") is not None:
            lines.append(f"| **engine total, 40-ft, decode included ÷ YOLO11n raw at 512×1536** | "
                         f"**{cmp_['engine_over_yolo11n_512x1536']:.2f}×** (goal ≤ 1.0×) | | | |")
        lines += [f"\n{models.get('scope')}."] + [f"Note: {n}." for n in models.get("notes", [])]
    else:
        lines.append(_status_line(results, "models") or "")
    lines.append("")

    # accuracy
    acc = section(results, "accuracy")
    if acc:
        b, vd = acc.get("boxes") or {}, acc.get("verdicts") or {}
        fa = vd.get("calibrated_false_alarm")
        lines += ["| accuracy | value |", "|---|---|",
                  f"| box mAP@0.5 ({b.get('source')}) | {_f3(b.get('mAP50'))} |",
                  f"| box mAP@0.5:0.95 | {_f3(b.get('mAP'))} |",
                  (f"| mismatch detection rate (red channel) at the calibrated false-alarm rate "
                   f"{_pct(fa) if fa is not None else '(not calibrated)'} | {_pct(vd.get('detection_rate'))} |"),
                  f"| false-alarm rate measured on the same scans | {_pct(vd.get('false_alarm_rate'))} |",
                  f"| ROC AUC of the scan risk | {_f3(vd.get('roc_auc'))} |",
                  f"| test scans (mismatches) | {vd.get('scans')} ({vd.get('mismatches')}); {acc.get('data')} |"]
        if acc.get("note"):
            lines.append(f"\nNote: {acc['note']}.")
    else:
        lines.append(_status_line(results, "accuracy") or "")
    lines.append("")

    # held-out scanner profile
    ho = section(results, "holdout")
    if ho:
        at = ho.get("at_5pct_false_alarms") or {}
        lines += [f"| held-out profile: {ho.get('holdout_profile')} | value |", "|---|---|",
                  f"| mismatch detection at 5 % false alarms | {_pct(at.get('detection_rate'))} |",
                  f"| ROC AUC of the scan risk (guard off) | {_f3(ho.get('roc_auc'))} |",
                  f"| flagged out of domain by the guard | {_pct(ho.get('ood_flagged'))} ({ho.get('guard')}) |",
                  f"| scans (mismatches) | {ho.get('scans')} ({ho.get('mismatches')}) |"]
        if ho.get("by_scenario"):
            lines += ["", "| held-out scans by scenario, at the 5 % operating point | scans | share flagged |",
                      "|---|---|---|"]
            lines += [f"| {name} | {row['scans']} | {_pct(row['flagged'])} |"
                      for name, row in ho["by_scenario"].items()]
    else:
        lines.append(_status_line(results, "holdout") or "")
    lines.append("")
    lines += int8_table(results)
    return "\n".join(lines)


def _goal_rows(g: dict[str, Any]) -> list[str]:
    """The table of issue 17's HTTP goals (empty when HTTP did not run)."""
    on, off = g.get("batching_on") or {}, g.get("batching_off") or {}
    if on.get("c4_per_s") is None and off.get("c4_per_s") is None:
        return []
    b = g.get("batching") or {}
    yolo = (f"one YOLO11n {'×'.join(map(str, g['yolo11n_input']))} stream: 1000 / {_ms(g['yolo11n_p50_ms'])} ms = "
            f"{g['yolo11n_stream_per_s']:.1f}/s" if g.get("yolo11n_stream_per_s") else "one YOLO11n stream (not measured)")

    def row(label: str, key: str, fmt: Any, goal: str = "") -> str:
        return f"| {label} | {fmt(on.get(key))} | {fmt(off.get(key))} | {goal} |"

    return [f"| HTTP goals, 40-ft | batching on (window {b.get('batch_window_ms', '?')} ms, max {b.get('max_batch', '?')}) "
            "| batching off | goal |", "|---|---|---|---|",
            row("inspections/s at concurrency 4", "c4_per_s", lambda v: "–" if v is None else f"{v:.1f}"),
            row(f"÷ {yolo}", "c4_over_yolo11n_stream", _x2, f"≥ {RATE_GOAL}×"),
            row("p50 at concurrency 1, ms", "c1_p50_ms", _ms),
            row("p99 at concurrency 4, ms", "c4_p99_ms", _ms),
            row("p99 at concurrency 4 ÷ p50 at concurrency 1", "c4_p99_over_c1_p50", _x2, f"≤ {TAIL_GOAL}×"),
            row("scans per engine batch at concurrency 4, mean", "c4_mean_batch_size",
                lambda v: "– (not batched)" if v is None else f"{v:.2f}"),
            ""]

def int8_table(results: dict[str, Any]) -> list[str]:
    """INT8 beside FP32: model-only and engine latency, and the verdict figures."""
    s = section(results, "int8")
    if not s or s.get("skipped"):
        return [_status_line(results, "int8") or f"*int8: skipped — {_get(s, 'skipped')}*", ""]
    one, many = _get(s, "model_only", "one_thread") or {}, _get(s, "model_only", "engine_threads") or {}
    e = s.get("engine_40ft") or {}
    lines = ["| INT8 vs FP32, 40-ft scan | FP32 | INT8 | FP32 ÷ INT8 |", "|---|---|---|---|"]
    for label, d, key in ((f"model only, {_get(many, 'fp32', 'threads')} threads, p50 ms", many, "median_ms"),
                          ("model only, 1 thread, p50 ms", one, "median_ms"),
                          ("model only, 1 thread, CPU ms", one, "cpu_median_ms")):
        a, b = _get(d, "fp32", key), _get(d, "int8", key)
        lines.append(f"| {label} | {_ms(a)} | {_ms(b)} | {_x2(_ratio(a, b))} |")
    for label, key in (("engine, model stage (both passes), p50 ms", "model_stage_ms"), ("engine total, p50 ms", "total_ms")):
        a, b = _get(e, "fp32", key, "p50"), _get(e, "int8", key, "p50")
        lines.append(f"| {label} | {_ms(a)} | {_ms(b)} | {_x2(_ratio(a, b))} |")
    acc = s.get("accuracy") or {}
    fp32 = acc.get("fp32") or _get(section(results, "accuracy"), "verdicts") or {}
    int8 = acc.get("int8") or {}
    for label, key in (("mismatch detection at the red threshold", "detection_rate"),
                       ("false alarms at the red threshold", "false_alarm_rate")):
        lines.append(f"| {label} | {_pct(fp32.get(key))} | {_pct(int8.get(key))} | |")
    lines.append(f"| ROC AUC of the scan risk | {_f3(fp32.get('roc_auc'))} | {_f3(int8.get('roc_auc'))} | |")
    cal = s.get("calibration") or {}
    lines += ["", f"INT8: {s.get('source')}; calibrated on {cal.get('scans')} {cal.get('split')} scans "
              f"({cal.get('inputs')} inputs, {cal.get('method')}); verdicts: "
              f"{acc.get('data') or 'not measured in a quick run'}.", ""]
    return lines


def histogram(results: dict[str, Any], path: str | Path) -> bool:
    """Latency histogram PNG: engine totals per canonical scan and HTTP at concurrency 1. False if no data."""
    series = []
    for name, s in (_get(section(results, "engine"), "cpu", "single_stream") or {}).items():
        if s.get("totals_ms"):
            series.append((f"engine, {name} (n={len(s['totals_ms'])})", s["totals_ms"]))
    for r in _get(section(results, "http"), "runs") or []:
        if r.get("concurrency") == 1 and r.get("latencies_ms"):
            series.append((f"HTTP end to end, 40ft, concurrency 1 (n={len(r['latencies_ms'])})", r["latencies_ms"]))
    if not series:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    hi = max(max(v) for _, v in series)
    bins = np.linspace(0, hi * 1.05, 60)
    for label, values in series:
        ax.hist(values, bins=bins, alpha=0.55, label=f"{label}: p50 {np.percentile(values, 50):.0f} ms, "
                                                      f"p99 {np.percentile(values, 99):.0f} ms")
    ax.set_xlabel("latency per scan (ms)")
    ax.set_ylabel("scans")
    m = results.get("machine", {})
    ax.set_title(f"xray latency, {m.get('cores')} cores {m.get('cpu', '')[:40]} — reference: 5000 ms", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def machine_slug(machine: dict[str, Any]) -> str:
    """A short file-name-safe machine name: `2core-amd-epyc-9654`."""
    cpu = re.sub(r"\(r\)|\(tm\)|processor|cpu|@.*|\d+-core", "", str(machine.get("cpu", "unknown")).lower())
    cpu = "-".join(re.findall(r"[a-z0-9]+", cpu)[:4]) or "unknown"
    return f"{machine.get('cores', 0)}core-{cpu}"


def write(results: dict[str, Any], out: str | Path) -> dict[str, Path]:
    """Write `<date>-<machine>[-quick].json`, `.md` and `-latency.png` into `out`; their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{results['date']}-{machine_slug(results.get('machine', {}))}{'-quick' if results.get('quick') else ''}"
    paths = {"json": out / f"{stem}.json", "markdown": out / f"{stem}.md"}
    paths["json"].write_text(json.dumps(results, indent=2, default=str))
    paths["markdown"].write_text(markdown(results) + "\n")
    png = out / f"{stem}-latency.png"
    if histogram(results, png):
        paths["histogram"] = png
    return paths
