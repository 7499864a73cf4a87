"""The inference engine: an exported ONNX detector and its card -> `Detections` for any `Scan`.

The engine only detects; `xray.verify` turns its detections and a manifest into a verdict.

One onnxruntime session is shared by all threads (`InferenceSession.run` is
thread-safe). Preprocessing is `xray.model.preprocess` — the very code training
used. A scan is letterboxed whole into the model input, as in training; with
`tile=True`, a scan that would be shrunk more than `max_shrink` is also cut into
overlapping tiles at the training scale (SAHI-style) and the tile and whole-image
detections are merged with class-wise NMS.

`detect_batch` runs the inputs of several scans (and their mirrored passes) that share a
shape as one batch when the graph's batch axis is dynamic, and one call each when it is
fixed at 1, as in the bundled graph, whose NMS is in the graph.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from xray.bundled import default_model_dir
from xray.config import ExecutionConfig
from xray.detection import Detection, Detections, DomainCheck, HoldCheck, box_iou
from xray.domain import FEATURE_OUTPUT, DomainGuard, look_group
from xray.errors import ConfigError
from xray.hold import UNREAD_WHEN_OFF, measure_hold, unread_if_display_off
from xray.model.preprocess import (
    InputSpec,
    Letterbox,
    base_channels,
    finish,
    fit,
    shrink,
)
from xray.runtime import create_session
from xray.scan import Scan


def fuse_mirror(
    out: dict[str, np.ndarray], mirrored: dict[str, np.ndarray], width: int, iou: float = 0.5
) -> dict[str, np.ndarray]:
    """Average a pass's outputs with those of its horizontally mirrored input.

    Each box keeps its place; its score becomes the mean of its own and that of the best
    same-class box of the mirrored pass it overlaps by `iou` or more (0 when none):
    goods seen both ways keep their score, a one-sided response is halved. Image-level
    scores are averaged. Measured on 600 validation scans (bundled model): ROC AUC
    0.986 -> 0.990, detection at 2 % false alarms 93.3 % -> 94.6 %.

    Args:
        out, mirrored: Model outputs (boxes in input pixels) of the input and of its
            mirror image.
        width: Width of the mirrored region (the letterboxed scan, without padding).
    """
    b = np.asarray(out["boxes"], np.float32).reshape(-1, 4)
    sc = np.asarray(out["scores"], np.float32).reshape(-1)
    lab = np.asarray(out["labels"]).reshape(-1)
    mb = np.asarray(mirrored["boxes"], np.float32).reshape(-1, 4)
    mb = np.stack([width - mb[:, 2], mb[:, 1], width - mb[:, 0], mb[:, 3]], axis=1)
    ms = np.asarray(mirrored["scores"], np.float32).reshape(-1)
    ml = np.asarray(mirrored["labels"]).reshape(-1)
    match = np.zeros_like(sc)
    if len(b) and len(mb):
        ok = (box_iou(b, mb) >= iou) & (lab[:, None] == ml[None, :])
        match = np.where(ok, ms[None, :], 0.0).max(axis=1)
    fused = {**out, "scores": ((sc + match) / 2).astype(np.float32)}
    if "image_scores" in out and "image_scores" in mirrored:
        fused["image_scores"] = (np.asarray(out["image_scores"]) + np.asarray(mirrored["image_scores"])) / 2
    return fused


def region_evidence(maps: np.ndarray, lb: Letterbox, classes: list[str], thresh: float) -> list[Detection]:
    """A box-free model's region maps -> evidence boxes in scan pixels.

    One `Detection` per connected region (8-connected cells) of a category's map at or above
    `thresh`, scored by the region's highest cell; cells map to model-input pixels by the map's
    stride and to scan pixels through the letterbox, so the verifier and the overlay treat
    them as boxes. Regions that lie wholly in the letterbox padding are dropped.

    Args:
        maps: (K, h, w) per-cell probabilities over the model input.
        lb: The letterbox the scan was fitted into the input with.
    """
    maps = np.asarray(maps, np.float32).reshape(len(classes), *np.asarray(maps).shape[-2:])
    sy, sx = lb.input_hw[0] / maps.shape[1], lb.input_hw[1] / maps.shape[2]
    dets = []
    for k, m in enumerate(maps):
        mask = (m >= thresh).astype(np.uint8)
        if not mask.any():
            continue
        n, comp, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        for i in range(1, n):
            x, y, w, h = (int(v) for v in stats[i, :4])
            box = lb.to_scan(np.array([[x * sx, y * sy, (x + w) * sx, (y + h) * sy]], np.float32))[0]
            if box[2] > box[0] and box[3] > box[1]:
                score = float(np.clip(m[comp == i].max(), 0.0, 1.0))
                dets.append(
                    Detection(
                        box=(float(box[0]), float(box[1]), float(box[2]), float(box[3])),
                        category=classes[k],
                        score=score,
                    )
                )
    dets.sort(key=lambda d: -d.score)
    return dets


@dataclass(frozen=True)
class Pass:
    """One model input: the whole scan (scale 1 here means 'as letterboxed') or a tile.

    Attributes:
        x: The model input (C, H, W).
        lb: Letterbox of this input (for a tile: its window, unscaled).
        x0, y0: The tile's offset in the resized scan.
        scale: Resized-scan pixels per scan pixel for tiles; 1.0 for the whole scan.
        inner: Which tile edges (left, top, right, bottom) lie inside the scan.
    """

    x: np.ndarray
    lb: Letterbox
    x0: int = 0
    y0: int = 0
    scale: float = 1.0
    inner: tuple[bool, bool, bool, bool] = (False, False, False, False)


def mirrored(p: Pass) -> np.ndarray:
    """The pass's input with the scan mirrored left-right and the padding left in place."""
    rw = p.lb.resized_hw[1]
    x = p.x.copy()
    x[:, :, :rw] = p.x[:, :, :rw][:, :, ::-1]
    return x


def unbatch(raw: dict[str, np.ndarray], k: int) -> dict[str, np.ndarray]:
    """Image `k`'s outputs of a batched run, in the single-image layout: every output's batch
    axis dropped and the detections padded with score 0 removed."""
    out = {name: np.asarray(v)[k] for name, v in raw.items()}
    if "scores" in out:
        keep = np.asarray(out["scores"]).reshape(-1) > 0
        for name in ("boxes", "scores", "labels"):
            if name in out:
                out[name] = out[name][keep]
    if "features" in out:
        out["features"] = out["features"][None]  # the single-image graph's (1, F)
    return out


# A tile detection this close (model-input px) to an inner tile edge is cut by the
# edge; the neighbouring tile or the whole-scan pass sees the object whole (SAHI).
EDGE_PX = 2.0


class Engine:
    """Runs an exported goods detector on scans.

    Args:
        model_dir: Folder with `model.onnx` and `model.json` (default: the bundled model).
        threads: onnxruntime intra-op threads (default: all cores).
        providers: Force onnxruntime execution providers by name (overrides `execution`).
        execution: Provider choice (auto, cpu, cuda, tensorrt) and its options (default: auto).
        tile: Add tiles at the training scale for scans much larger than the input.
        max_shrink: Tiling starts when the whole-scan letterbox shrinks more than this
            relative to the training scale.
        tile_overlap: Overlap between neighbouring tiles, as a fraction of a tile.
        flip: Test-time augmentation: also run the mirrored whole scan and average the
            scores of both (`fuse_mirror`). None: the model card's `engine.flip`, which
            `xray calibrate --flip` sets (the thresholds are calibrated with it).
    """

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        threads: int | None = None,
        providers: list[str] | None = None,
        execution: ExecutionConfig | None = None,
        tile: bool = False,
        max_shrink: float = 1.5,
        tile_overlap: float = 0.25,
        flip: bool | None = None,
    ):
        self.model_dir = Path(model_dir) if model_dir else default_model_dir()
        card_path, onnx_path = self.model_dir / "model.json", self.model_dir / "model.onnx"
        if not card_path.is_file() or not onnx_path.is_file():
            raise ConfigError(f"{self.model_dir}: not a model folder (needs model.onnx and model.json)")
        try:
            self.card = json.loads(card_path.read_text())
            self.classes: list[str] = list(self.card["classes"])
            self.spec = InputSpec.from_dict(self.card["input"], f"{card_path}: input")
            self.output_names = list(self.card["outputs"]["names"])
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ConfigError(f"{card_path}: malformed model card: {e}") from e
        self.min_score = float(self.card["outputs"].get("min_score", 0.05))
        self.train_scale = self.card["input"].get("train_scale")  # model-input px per scan px at training
        self.model_id = str(self.card.get("name", self.model_dir.name))
        self.model_version = str(self.card.get("sha256", ""))[:12]
        self.session = create_session(onnx_path, threads=threads, providers=providers, execution=execution)
        # The graph is the truth about its outputs (a guard-calibrated model has `features` too).
        self.output_names = [o.name for o in self.session.get_outputs()]
        # A symbolic first axis: the graph takes a batch and gives every output a batch axis
        # (detections padded with score 0). The bundled graph's is fixed at 1.
        self.batched = not isinstance(self.session.get_inputs()[0].shape[0], int)
        self.guard = DomainGuard.from_card(self.card)
        self.providers: list[str] = list(self.session.get_providers())
        self.tile, self.max_shrink, self.tile_overlap = tile, max_shrink, tile_overlap
        self.flip = bool((self.card.get("engine") or {}).get("flip", False)) if flip is None else flip
        if not 0 <= tile_overlap < 1:
            raise ConfigError(f"tile overlap must be in [0, 1), got {tile_overlap}")
        self.warmed = False
        # A box-free scan-level model (`scan_mil`): scores, embedding and region maps, no boxes.
        self.box_free = "region_maps" in self.output_names
        self.region_thresh = float(self.card["outputs"].get("region_thresh", 0.5))

    # -- the pieces -----------------------------------------------------------------

    def _run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        out = self.session.run(None, {"input": x[None]})
        return dict(zip(self.output_names, out))

    def run_many(self, xs: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Model outputs of several inputs (C, H, W): inputs of one shape go as one batch when
        the graph takes a batch, else one session call each."""
        outs: list[dict[str, np.ndarray] | None] = [None] * len(xs)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, x in enumerate(xs):
            groups.setdefault(tuple(x.shape), []).append(i)
        for idx in groups.values():
            if not self.batched:
                for i in idx:
                    outs[i] = self._run(xs[i])
                continue
            batch = np.stack([xs[i] for i in idx])
            raw = dict(zip(self.output_names, self.session.run(None, {"input": batch})))
            for k, i in enumerate(idx):
                outs[i] = unbatch(raw, k)
        return [o for o in outs if o is not None]

    def model_inputs(self, scan: Scan) -> list[Pass]:
        """The model inputs of a scan: first the whole scan letterboxed as in training, then
        (with tiling on, for scans much larger than the input) overlapping tiles at the
        training scale."""
        base = base_channels(scan, self.spec)
        lb = fit(base.shape[1:], self.spec.size)
        passes = [Pass(finish(shrink(base, lb.resized_hw, self.spec), self.spec), lb)]
        if not (self.tile and self.train_scale and lb.sy * self.max_shrink < float(self.train_scale)):
            return passes
        h, w = base.shape[1:]
        s = float(self.train_scale)
        big = shrink(base, (max(1, round(h * s)), max(1, round(w * s))), self.spec)
        H, W = self.spec.size
        bh, bw = big.shape[1:]

        def starts(n: int, size: int) -> list[int]:
            if n <= size:
                return [0]
            step = max(1, int(size * (1 - self.tile_overlap)))
            return sorted(set(list(range(0, n - size, step)) + [n - size]))

        for y0 in starts(bh, H):
            for x0 in starts(bw, W):
                th, tw = min(H, bh - y0), min(W, bw - x0)
                tlb = Letterbox(scan_hw=(th, tw), resized_hw=(th, tw), input_hw=(H, W))
                passes.append(
                    Pass(
                        finish(big[:, y0 : y0 + th, x0 : x0 + tw], self.spec),
                        tlb,
                        x0,
                        y0,
                        s,
                        (x0 > 0, y0 > 0, x0 + tw < bw, y0 + th < bh),
                    )
                )
        return passes

    def merge(self, raw: list[tuple[Pass, dict[str, np.ndarray]]], scan_hw: tuple[int, int]) -> list[Detection]:
        """Map each pass's detections to scan pixels, drop tile detections cut by an inner
        tile edge, and merge what several passes found (class-wise NMS)."""
        boxes: list[np.ndarray] = []
        scores: list[np.ndarray] = []
        labels: list[np.ndarray] = []
        for p, out in raw:
            b: np.ndarray = np.asarray(out["boxes"], np.float32).reshape(-1, 4)
            sc = np.asarray(out["scores"], np.float32).reshape(-1)
            lab = np.asarray(out["labels"]).reshape(-1).astype(int)
            if p.scale != 1.0:
                th, tw = p.lb.scan_hw
                cut = np.zeros(len(b), bool)
                for inner, coord, limit in zip(p.inner, (b[:, 0], b[:, 1], b[:, 2], b[:, 3]), (0, 0, tw, th)):
                    if inner:
                        cut |= np.abs(coord - limit) <= EDGE_PX
                b, sc, lab = b[~cut], sc[~cut], lab[~cut]
                b = (p.lb.to_scan(b) + np.array([p.x0, p.y0, p.x0, p.y0], np.float32)) / p.scale
            else:
                b = p.lb.to_scan(b)
            boxes.append(b.reshape(-1, 4))
            scores.append(sc)
            labels.append(lab)
        b, sc, lab = np.concatenate(boxes), np.concatenate(scores), np.concatenate(labels)
        if len(raw) > 1 and len(sc):
            kept = cv2.dnn.NMSBoxesBatched(
                [[float(x1), float(y1), float(x2 - x1), float(y2 - y1)] for x1, y1, x2, y2 in b],
                sc.astype(float).tolist(),
                lab.tolist(),
                self.min_score,
                float(self.card["outputs"].get("nms_iou", 0.5)),
            )
            keep = np.asarray(kept, int).reshape(-1)
            b, sc, lab = b[keep], sc[keep], lab[keep]
        h, w = scan_hw
        b = np.clip(b, 0, [w, h, w, h])
        dets = [
            Detection(
                box=(float(bb[0]), float(bb[1]), float(bb[2]), float(bb[3])),
                category=self.classes[k],
                score=float(np.clip(s_, 0.0, 1.0)),
            )
            for bb, s_, k in zip(b, sc, lab)
            if s_ >= self.min_score and bb[2] > bb[0] and bb[3] > bb[1]
        ]
        dets.sort(key=lambda d: -d.score)
        return dets

    def detect(self, scan: Scan) -> Detections:
        """Detections in scan pixels, the image-level presence score per category (empty when
        the model has no image head), and the time of each stage in ms."""
        return self.detect_batch([scan])[0]

    def detect_batch(self, scans: Sequence[Scan]) -> list[Detections]:
        """`detect` of several scans, with their model inputs of one shape run as one batch
        (`run_many`); the results equal those of `detect` one scan at a time.

        Each scan's `timings_ms` has its own preprocess and postprocess time, and as `model`
        the time of the batched model runs it waited for. A box-free model's scans run one
        by one (`detect_scan_level`).
        """
        if self.box_free:
            return [self.detect_scan_level(scan) for scan in scans]
        prepared: list[tuple[list[Pass], float]] = []
        for scan in scans:
            t0 = time.perf_counter()
            passes = self.model_inputs(scan)
            prepared.append((passes, (time.perf_counter() - t0) * 1e3))
        t1 = time.perf_counter()
        xs: list[np.ndarray] = []
        for passes, _ in prepared:
            xs.extend(p.x for p in passes)
            if self.flip:
                xs.append(mirrored(passes[0]))
        outs = self.run_many(xs)
        model_ms = (time.perf_counter() - t1) * 1e3
        results, k = [], 0
        for scan, (passes, pre_ms) in zip(scans, prepared, strict=True):
            t2 = time.perf_counter()
            raw = list(zip(passes, outs[k : k + len(passes)], strict=True))
            k += len(passes)
            if self.flip:
                p = passes[0]
                raw[0] = (p, fuse_mirror(raw[0][1], outs[k], p.lb.resized_hw[1]))
                k += 1
            results.append(self._detections(scan, passes, raw, pre_ms, model_ms, t2))
        return results

    def _detections(
        self,
        scan: Scan,
        passes: list[Pass],
        raw: list[tuple[Pass, dict[str, np.ndarray]]],
        pre_ms: float,
        model_ms: float,
        t2: float,
    ) -> Detections:
        dets = self.merge(raw, (scan.height, scan.width))
        whole = raw[0][1]
        image_scores = (
            {c: float(v) for c, v in zip(self.classes, np.asarray(whole["image_scores"]).reshape(-1))}
            if "image_scores" in whole
            else {}
        )
        domain = self.domain_check(passes[0], whole, scan)
        hold = self.hold_check(passes[0], scan, domain)
        t3 = time.perf_counter()
        return Detections(
            scan_id=scan.id,
            detections=dets,
            image_scores=image_scores,
            domain=domain,
            hold=hold,
            scan_format=look_group(scan),
            timings_ms={"preprocess": pre_ms, "model": model_ms, "postprocess": (t3 - t2) * 1e3},
            model_id=self.model_id,
            model_version=self.model_version,
        )

    def detect_scan_level(self, scan: Scan) -> Detections:
        """A box-free model's output: its scan-level scores, its embedding, and evidence boxes
        from its region maps (`region_evidence`). The whole scan is one pass (no tiles, no mirror)."""
        t0 = time.perf_counter()
        base = base_channels(scan, self.spec)
        lb = fit(base.shape[1:], self.spec.size)
        x = finish(shrink(base, lb.resized_hw, self.spec), self.spec)
        t1 = time.perf_counter()
        out = self._run(x)
        t2 = time.perf_counter()
        scores = np.asarray(out["image_scores"], np.float32).reshape(-1)
        dets = region_evidence(out["region_maps"], lb, self.classes, self.region_thresh)
        embedding = [float(v) for v in np.asarray(out["embedding"], np.float32).reshape(-1)]
        t3 = time.perf_counter()
        return Detections(
            scan_id=scan.id,
            detections=dets,
            image_scores={c: float(v) for c, v in zip(self.classes, scores)},
            embedding=embedding,
            scan_format=look_group(scan),
            timings_ms={"preprocess": (t1 - t0) * 1e3, "model": (t2 - t1) * 1e3, "postprocess": (t3 - t2) * 1e3},
            model_id=self.model_id,
            model_version=self.model_version,
        )

    def hold_check(self, whole: Pass, scan: Scan, domain: DomainCheck | None = None) -> HoldCheck | None:
        """Whether the hold is empty, from the whole-scan input's high-energy attenuation (`xray.hold`);
        None for a pseudo-colour scan or an RGB model, whose channels are not attenuation, and for a
        model whose guard does not compare the grey-level profile. Not empty when the guard found
        that profile off (`hold.UNREAD_WHEN_OFF`)."""
        if not scan.is_physical or self.spec.mode == "rgb":
            return None
        if self.guard is None or not UNREAD_WHEN_OFF & set(self.guard.references):
            return None  # nothing would tell an inverted display, whose dense loads show bright
        h, w = whole.lb.resized_hw
        # Channel 0 is A_high, normalised by `finish`: undone on the scan's part of the input only.
        a = whole.x[0, :h, :w] * np.float32(self.spec.std[0]) + np.float32(self.spec.mean[0])
        hold = measure_hold(a)
        if hold is not None and hold.region is not None:
            x1, y1, x2, y2 = (float(v) for v in whole.lb.to_scan(np.array([hold.region]))[0])
            hold = hold.model_copy(update={"region": (round(x1, 1), round(y1, 1), round(x2, 1), round(y2, 1))})
        return unread_if_display_off(hold, domain)

    def domain_check(self, whole: Pass, out: dict[str, np.ndarray], scan: Scan) -> DomainCheck | None:
        """How unlike the training scans this scan is (`xray.domain`); None when the card has no guard."""
        if self.guard is None:
            return None
        return self.guard.check(whole.x, whole.lb.resized_hw, scan, out.get(FEATURE_OUTPUT))

    def warm_up(self) -> None:
        """Run the model once so that the first real scan does not pay for allocations."""
        H, W = self.spec.size
        self._run(np.zeros((self.spec.channels, H, W), np.float32))
        self.warmed = True
