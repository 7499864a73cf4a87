"""Augmentation of attenuation images: albumentations, bbox-aware, plus threat-image projection.

Everything works on float32 attenuation A = -ln T (C, H, W), where physics is simple:
thicker or denser goods scale A (gain), stacking matter adds A, quantum noise grows as
exp(A / 2) (fewer photons behind dense matter). Albumentations clips float images to
[0, 1] in some transforms, so the pipeline runs on A / A_MAX, which lies in [0, 1] by
construction (A_MAX is the attenuation of one count out of 65535).

Threat-image projection (TIP) is the standard way to teach concealment from few
examples: a goods patch cut from another scan (its own background removed) is added
in attenuation — multiplied in transmission — at a random place, and its box joins
the targets.
"""

from __future__ import annotations

import math
from typing import Any

import albumentations as A
import cv2
import numpy as np

from xray.config import AugmentConfig, validate_section
from xray.model.preprocess import A_MAX, SINGLE_ENERGY_RATIO, resize
from xray.scan import MIN_TRANSMISSION


class AttenuationGain(A.ImageOnlyTransform):
    """Scale attenuation by a random gain (shared), with a small per-channel jitter."""

    def __init__(self, gain: tuple[float, float], channel_jitter: float, p: float = 1.0) -> None:
        super().__init__(p=p)
        self.gain = tuple(gain)
        self.channel_jitter = channel_jitter

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        c = data["image"].shape[-1]
        g = self.py_random.uniform(*self.gain)
        jitter = [1.0 + self.py_random.uniform(-self.channel_jitter, self.channel_jitter) for _ in range(c)]
        return {"factors": np.asarray(jitter, np.float32) * g}

    def apply(self, img: np.ndarray, factors: np.ndarray, **params: Any) -> np.ndarray:
        out = np.multiply(img, factors, dtype=np.float32)
        return np.clip(out, 0.0, 1.0, out=out)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("gain", "channel_jitter")


class AttenuationGamma(A.ImageOnlyTransform):
    """Contrast in attenuation: u ** gamma with u = A / A_MAX."""

    def __init__(self, gamma: tuple[float, float], p: float = 1.0) -> None:
        super().__init__(p=p)
        self.gamma = tuple(gamma)

    def get_params(self) -> dict[str, Any]:
        return {"g": self.py_random.uniform(*self.gamma)}

    def apply(self, img: np.ndarray, g: float = 1.0, **params: Any) -> np.ndarray:
        return np.power(img, g, dtype=np.float32)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("gamma",)


class QuantumNoise(A.ImageOnlyTransform):
    """Photon noise: sigma_A = exp(A / 2) / sqrt(N0), for N0 photons per pixel in air."""

    def __init__(self, counts: tuple[float, float], p: float = 1.0) -> None:
        super().__init__(p=p)
        self.counts = tuple(counts)

    def get_params(self) -> dict[str, Any]:
        lo, hi = np.log(self.counts[0]), np.log(self.counts[1])
        return {"n0": float(np.exp(self.py_random.uniform(lo, hi))), "seed": self.py_random.randrange(2**31)}

    def apply(self, img: np.ndarray, n0: float = 1e6, seed: int = 0, **params: Any) -> np.ndarray:
        # In float32 throughout, in place: a numpy float64 scalar (np.sqrt(n0)) once made every
        # step float64: 127 -> 81 ms of CPU on a 40-ft scan's three channels.
        att = np.asarray(img, np.float32) * np.float32(A_MAX)
        sigma = np.exp(att * np.float32(0.5))
        sigma *= np.float32(1.0 / math.sqrt(n0))
        # Capped: at the dark end the real detector floor, not Gaussian noise, dominates.
        np.minimum(sigma, np.float32(0.5), out=sigma)
        noise = np.random.default_rng(seed).standard_normal(img.shape, dtype=np.float32)
        noise *= sigma
        noise += att
        noise *= np.float32(1.0 / A_MAX)
        return np.clip(noise, 0.0, 1.0, out=noise)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("counts",)


def extract_patch(att: np.ndarray, box: np.ndarray, *, margin: int = 8) -> np.ndarray:
    """Cut the goods inside `box` out of a scan, without the background around them.

    The background inside the box (container walls, roof, floor) is estimated per row
    from thin strips left and right of the box (the median of each row) and
    subtracted; what remains is the attenuation of the goods alone.

    Args:
        att: (C, H, W) attenuation.
        box: (x1, y1, x2, y2) in pixels.

    Returns:
        (C, h, w) float32 attenuation >= 0.
    """
    _, H, W = att.shape
    x1, y1 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
    x2, y2 = min(W, int(np.ceil(box[2]))), min(H, int(np.ceil(box[3])))
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"empty patch box {box}")
    strips = [att[:, y1:y2, max(0, x1 - margin) : x1], att[:, y1:y2, x2 : min(W, x2 + margin)]]
    strips = [s for s in strips if s.shape[2] > 0]
    patch = att[:, y1:y2, x1:x2]
    if strips:
        background = np.median(np.concatenate(strips, axis=2), axis=2, keepdims=True)
    else:  # the box spans the whole width: the least attenuating pixel of each row
        background = patch.min(axis=2, keepdims=True)
    return np.clip(patch - background, 0.0, None).astype(np.float32)


def project(
    att: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    patch: np.ndarray,
    label: int,
    *,
    rng: np.random.Generator,
    over_goods: float = 0.5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Threat-image projection: add a patch's attenuation into a scan and its box to the targets.

    Adding attenuation is multiplying transmission: the patch is seen through whatever
    the scan already holds there, as concealed goods would be.

    Args:
        att: (C, H, W) attenuation of the scan (not modified).
        boxes: (N, 4) xyxy boxes of the scan; labels: (N,) class indices.
        patch: (C, h, w) attenuation from `extract_patch`, at the scan's pixel spacing.
        label: class index of the patch.
        over_goods: probability of centring the patch inside an existing box.

    Returns:
        (attenuation, boxes, labels) with the patch added; unchanged when it does not fit.
    """
    _, H, W = att.shape
    _, h, w = patch.shape
    if h >= H or w >= W:
        return att, boxes, labels
    if len(boxes) and rng.random() < over_goods:
        b = boxes[rng.integers(len(boxes))]
        cx, cy = rng.uniform(b[0], b[2]), rng.uniform(b[1], b[3])
        x, y = int(np.clip(cx - w / 2, 0, W - w)), int(np.clip(cy - h / 2, 0, H - h))
    else:
        x, y = int(rng.integers(0, W - w + 1)), int(rng.integers(0, H - h + 1))
    out = att.copy()
    out[:, y : y + h, x : x + w] = np.minimum(out[:, y : y + h, x : x + w] + patch, A_MAX)
    new_box = np.array([[x, y, x + w, y + h]], dtype=np.float32)
    return (
        out,
        np.concatenate([np.asarray(boxes, np.float32).reshape(-1, 4), new_box]),
        np.concatenate([np.asarray(labels, np.int64), [label]]),
    )


def rescale_patch(patch: np.ndarray, from_mm: tuple[float, float], to_mm: tuple[float, float]) -> np.ndarray:
    """Resample a patch from one pixel spacing to another (row_mm, col_mm)."""
    h = max(1, round(patch.shape[1] * from_mm[0] / to_mm[0]))
    w = max(1, round(patch.shape[2] * from_mm[1] / to_mm[1]))
    return resize(patch, (h, w))


# -- domain randomisation: the look of other scanners and exports (AugmentConfig.domain_*) ----------


# What a reader makes of each 8-bit grey level v read as transmission: -ln(v / 255) / A_MAX, in [0, 1].
READBACK = np.clip(
    -np.log(np.maximum(np.arange(256, dtype=np.float32) / np.float32(255.0), np.float32(MIN_TRANSMISSION))) / A_MAX,
    0.0, 1.0,
).astype(np.float32).reshape(1, 256)


class DisplayExport(A.ImageOnlyTransform):
    """An 8-bit display export read back as if it were transmission, as our readers do.

    Transmission T = exp(-A) goes through a per-scan contrast stretch (black and white
    points at random percentiles), a log or gamma display curve, 8-bit quantisation and
    optionally JPEG re-compression; the grey levels v / 255 are then read as
    transmission again (A' = -ln v). Works on u = A / A_MAX (H, W, C); every channel
    gets the same curve and the same JPEG quality.
    """

    def __init__(self, gamma: tuple[float, float], jpeg_quality: tuple[int, int], jpeg: float = 0.5,
                 stretch: tuple[float, float] = (0.0, 5.0), log_curve: float = 0.5, p: float = 1.0) -> None:
        super().__init__(p=p)
        self.gamma, self.jpeg_quality, self.jpeg = tuple(gamma), tuple(jpeg_quality), jpeg
        self.stretch, self.log_curve = tuple(stretch), log_curve

    def get_params(self) -> dict[str, Any]:
        r = self.py_random
        return {"g": r.uniform(*self.gamma), "log": r.random() < self.log_curve,
                "black": r.uniform(*self.stretch), "white": r.uniform(*self.stretch),
                "quality": r.randint(*self.jpeg_quality) if r.random() < self.jpeg else None}

    def apply(self, img: np.ndarray, g: float = 1.0, log: bool = False, black: float = 0.0, white: float = 0.0,
              quality: int | None = None, **params: Any) -> np.ndarray:
        u = np.asarray(img, np.float32)
        if log:  # the usual radiograph display: grey level linear in attenuation, -ln T / A_MAX = u
            v = np.float32(1.0) - np.clip(u, 0.0, 1.0)
        else:
            v = np.exp(u * np.float32(-A_MAX))
        # Python floats, not the numpy float64 scalars np.percentile gives, keep the stretch and the
        # curve in float32: 169 -> 100 ms of CPU for a 40-ft scan's three channels, without JPEG.
        lo, hi = (float(x) for x in np.percentile(v, [black, 100.0 - white]))
        v = np.clip((v - lo) / max(hi - lo, 1e-6), 0.0, 1.0) ** g
        q = np.rint(v * 255).astype(np.uint8)
        if quality is not None:
            chans: list[np.ndarray] = []
            for c in range(q.shape[-1]):
                ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(q[..., c]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
                chans.append(np.asarray(cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE), np.uint8) if ok else q[..., c])
            q = np.stack(chans, axis=-1)
        return np.asarray(cv2.LUT(q, READBACK), np.float32).reshape(q.shape)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("gamma", "jpeg_quality", "jpeg", "stretch", "log_curve")


class SingleEnergy(A.ImageOnlyTransform):
    """A single-energy scanner: one energy is kept as the scan and the second channel becomes
    what the engine makes of a single-energy scan (it times `SINGLE_ENERGY_RATIO`); other
    channels kept. Usually the high energy (a 6 MV portal's); with probability `low` the low
    one, with its own physics: single-energy scanners run from about 2.5 to 9 MV, and a 4 MV
    scan held out of training took the candidate's mAP50 from 0.69 (at 6 MV) to 0.62."""

    def __init__(self, low: float = 0.0, p: float = 1.0) -> None:
        super().__init__(p=p)
        self.low = low

    def get_params(self) -> dict[str, Any]:
        return {"keep": 1 if self.py_random.random() < self.low else 0}

    def apply(self, img: np.ndarray, keep: int = 0, **params: Any) -> np.ndarray:
        if img.shape[-1] < 2:
            return img
        out = img.copy()
        out[..., 0] = img[..., keep]
        out[..., 1] = np.clip(img[..., keep] * SINGLE_ENERGY_RATIO, 0.0, 1.0)
        return out

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("low",)


class RowStripes(A.ImageOnlyTransform):
    """Detector rows that disagree: a per-row gain on attenuation (stripes along the scan
    direction) and a few dead rows that read as opaque or as air."""

    def __init__(self, strength: tuple[float, float], dead_rows: tuple[int, int] = (0, 3), p: float = 1.0) -> None:
        super().__init__(p=p)
        self.strength, self.dead_rows = tuple(strength), tuple(dead_rows)

    def get_params(self) -> dict[str, Any]:
        return {"s": self.py_random.uniform(*self.strength), "dead": self.py_random.randint(*self.dead_rows),
                "seed": self.py_random.randrange(2**31)}

    def apply(self, img: np.ndarray, s: float = 0.0, dead: int = 0, seed: int = 0, **params: Any) -> np.ndarray:
        rng = np.random.default_rng(seed)
        h = img.shape[0]
        gain = 1.0 + s * rng.standard_normal((h, 1, 1)).astype(np.float32)
        out = img * gain
        for r in rng.integers(0, h, dead):
            out[r] = 1.0 if rng.random() < 0.5 else 0.0
        return np.clip(out, 0.0, 1.0).astype(np.float32)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("strength", "dead_rows")


class ScannerArtifact(A.ImageOnlyTransform):
    """One of the simulator's scanner artifacts (`xray.simulate.artifacts`), the same code, on a
    training image: `scatter` (haze that lifts dark regions) or `starvation` (a counts-noise
    floor, below which a pixel reads black). Held out of training, a noisier scanner with
    these traits took the mixed-profile candidate's mAP50 from 0.75 to 0.62; each one alone
    at the training profiles' level gave back 0.02 (scatter) and 0.09 (starvation) of it.
    """

    KINDS = ("scatter", "starvation")

    def __init__(self, kind: str, strength: tuple[float, float], p: float = 1.0) -> None:
        super().__init__(p=p)
        if kind not in self.KINDS:
            raise ValueError(f"scanner artifact {kind!r}: expected one of {self.KINDS}")
        self.kind, self.strength = kind, tuple(strength)

    def get_params(self) -> dict[str, Any]:
        return {"s": self.py_random.uniform(*self.strength), "seed": self.py_random.randrange(2**31)}

    def apply(self, img: np.ndarray, s: float = 0.0, seed: int = 0, **params: Any) -> np.ndarray:
        from xray.simulate import artifacts

        if s <= 0:
            return img
        t = np.exp(-np.moveaxis(img, -1, 0).astype(np.float32) * np.float32(A_MAX))  # (C, H, W) transmission
        if self.kind == "scatter":
            t = artifacts.scatter(t, s)
        else:
            t = artifacts.photon_starvation(t, s, np.random.default_rng(seed))
        u = -np.log(np.clip(t, artifacts.FLOOR, 1.0)) / np.float32(A_MAX)
        return np.ascontiguousarray(np.moveaxis(np.clip(u, 0.0, 1.0), 0, -1), dtype=np.float32)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("kind", "strength")


class DetectorBlur(A.ImageOnlyTransform):
    """Gaussian blur with sigma drawn in model-input pixels, applied to an image with
    `px_per_input` of its pixels to one input pixel (passed with the image): the same blur
    on the model input whether it runs on the scan before the shrink or after it."""

    def __init__(self, sigma: tuple[float, float], p: float = 1.0) -> None:
        super().__init__(p=p)
        self.sigma = tuple(sigma)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        return {"s": self.py_random.uniform(*self.sigma) * float(data.get("px_per_input", 1.0))}

    def apply(self, img: np.ndarray, s: float = 0.0, **params: Any) -> np.ndarray:
        if s <= 0:
            return img
        out = cv2.GaussianBlur(np.ascontiguousarray(img), (0, 0), s)
        return out.reshape(img.shape).astype(np.float32, copy=False)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("sigma",)


def scanner_transforms(c: AugmentConfig, *, at_scan_resolution: bool, export: bool = True) -> list[A.BasicTransform]:
    """The domain randomisation's scanner and export look, in acquisition order (empty when
    `domain_randomisation` is 0): what a scanner and its export do to every pixel. `export` False
    leaves out the display export, for scans that were read from one (`domain_reexport`)."""
    p = c.domain_randomisation
    if p <= 0:
        return []
    blur = (DetectorBlur(c.domain_blur_sigma, p=p * c.domain_blur) if at_scan_resolution
            else A.GaussianBlur(sigma_limit=c.domain_blur_sigma, blur_limit=0, p=p * c.domain_blur))
    return [
        SingleEnergy(low=c.domain_single_energy_low, p=p * c.domain_single_energy),
        ScannerArtifact("scatter", c.domain_scatter_fraction, p=p * c.domain_scatter),
        RowStripes(c.domain_stripe_strength, c.domain_dead_rows, p=p * c.domain_stripes),
        QuantumNoise(c.domain_noise_counts, p=p * c.domain_noise),
        ScannerArtifact("starvation", c.domain_starvation_floor, p=p * c.domain_starvation),
        blur,
        *([DisplayExport(c.domain_gamma, c.domain_jpeg_quality, jpeg=c.domain_jpeg, p=p * c.domain_export)]
          if export else []),
    ]


def domain_transforms(c: AugmentConfig, *, export: bool = True, look: bool = True) -> list[A.BasicTransform]:
    """The domain-randomisation transforms on the model input (empty when `domain_randomisation` is 0):
    the crop, then the scanner look unless `domain_scan_resolution` puts that on the scan (`Augment.scanner`)."""
    if c.domain_randomisation <= 0:
        return []
    crop = A.BBoxSafeRandomCrop(erosion_rate=0.0, p=c.domain_randomisation * c.domain_crop)
    if c.domain_scan_resolution or not look:
        return [crop]
    return [crop, *scanner_transforms(c, at_scan_resolution=False, export=export)]


class Augment:
    """The training augmentation of attenuation images (config: the `augment` section).

    Geometry (flips, scale + translate), gain, contrast, noise and blur run in one
    albumentations pipeline that moves the boxes with the pixels; TIP is separate
    (`project`) because it needs patches from other scans (the dataset supplies them).
    With `domain_scan_resolution`, everything but geometry and the domain crop runs
    instead on the scan before the shrink (`scanner`), where a scanner puts it.
    """

    def __init__(self, cfg: AugmentConfig | dict[str, Any] | None = None) -> None:
        """Args:
            cfg: The `augment` section (a mapping is validated; None: all defaults).

        Raises:
            ConfigError: an unknown option or a bad value, naming it.
        """
        cfg = validate_section(AugmentConfig, cfg, "augment")
        self.config = cfg
        # A plain mapping view, read by the dataset (tip, tip_max, tip_categories, tip_over_goods).
        self.cfg: dict[str, Any] = cfg.model_dump()
        self.pipeline, self.scan_pipeline = self._build(cfg)
        # Scans read from an 8-bit export get their own pair without a second export (`domain_reexport`),
        # and formats outside `domain_formats` one without the scanner look.
        self.exported_pipeline, self.exported_scan_pipeline = (
            (self.pipeline, self.scan_pipeline) if cfg.domain_reexport else self._build(cfg, export=False))
        self.plain_pipeline, self.plain_scan_pipeline = (
            (self.pipeline, self.scan_pipeline) if cfg.domain_formats is None else self._build(cfg, look=False))

    def _pair(self, scan_format: str) -> tuple[A.Compose, A.Compose | None]:
        """The (model-input, scan) pipelines for a scan of `scan_format` (e.g. `rgb-8bit`)."""
        formats = self.config.domain_formats
        if formats is not None and scan_format not in formats:
            return self.plain_pipeline, self.plain_scan_pipeline
        if scan_format.endswith("-8bit"):
            return self.exported_pipeline, self.exported_scan_pipeline
        return self.pipeline, self.scan_pipeline

    @staticmethod
    def _build(c: AugmentConfig, *, export: bool = True, look: bool = True) -> tuple[A.Compose, A.Compose | None]:
        """The model-input pipeline and the scan pipeline (None without `domain_scan_resolution`);
        `look` False leaves out the scanner look (`scanner_transforms`), `export` False its display export."""
        t = c.translate
        geometry = [
            A.HorizontalFlip(p=c.hflip),
            A.VerticalFlip(p=c.vflip),
            A.Affine(
                scale=c.scale,
                translate_percent={"x": (-t, t), "y": (-t / 2, t / 2)},
                fill=0.0,  # A = 0 is air
                fill_mask=0.0,
                mask_interpolation=cv2.INTER_LINEAR,  # the mask carries measured detail channels
                p=c.affine,
            ),
        ]
        goods = [AttenuationGain(c.gain, c.channel_gain, p=0.8), AttenuationGamma(c.gamma, p=0.5),
                 QuantumNoise(c.noise_counts, p=c.noise)]
        if c.domain_scan_resolution:
            # Goods, then scanner, then export, all on the scan; only what moves boxes stays on the model input.
            scan = [*goods, DetectorBlur(c.blur_sigma, p=c.blur),
                    *(scanner_transforms(c, at_scan_resolution=True, export=export) if look else [])]
            model = [*geometry, *domain_transforms(c)]
        else:
            scan = []
            model = [*geometry, *goods, A.GaussianBlur(sigma_limit=c.blur_sigma, blur_limit=0, p=c.blur),
                     *domain_transforms(c, export=export, look=look)]
        pipeline = A.Compose(
            model,
            bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"], min_visibility=0.4, min_area=16),
            seed=0,
        )
        return pipeline, (A.Compose(scan, seed=0) if scan else None)

    def _seed(self, pipeline: A.Compose, rng: np.random.Generator) -> None:
        """Seed a pipeline for one image. albumentations seeds every transform of a Compose alike, so
        their first draws (apply or not) are one number: each transform applies exactly when those with
        a larger probability do. `draws: independent` gives each transform a seed of its own."""
        seed = int(rng.integers(2**31))
        pipeline.set_random_seed(seed)
        if self.config.draws == "independent":
            own = np.random.default_rng(seed).integers(2**31, size=len(pipeline.transforms))
            for tr, s in zip(pipeline.transforms, own, strict=True):
                tr.set_random_seed(int(s))

    @property
    def at_scan_resolution(self) -> bool:
        """Whether `scanner` has work: the look goes on the scan before the shrink."""
        return self.scan_pipeline is not None

    def scanner(self, att: np.ndarray, *, rng: np.random.Generator, px_per_input: float,
                scan_format: str = "dual-16bit") -> np.ndarray:
        """Gain, contrast, noise and blur, then the scanner and export look (`scanner_transforms`), on
        (C, H, W) attenuation at the scan's resolution, `px_per_input` scan pixels to one model-input
        pixel; same shape out. `scan_format` is the scan's (`xray.domain.scan_group`: an `-8bit` one
        was read from an export). Only with `domain_scan_resolution`; otherwise `att` itself."""
        pipeline = self._pair(scan_format)[1]
        if pipeline is None:
            return att
        self._seed(pipeline, rng)
        # (C, H, W) -> (H, W, C) by cv2.merge and back by one strided multiply, in place between:
        # 39 -> 15 ms of CPU for a 40-ft scan's three channels against transposed copies.
        u = cv2.merge(list(np.asarray(att, np.float32))).reshape(*att.shape[1:], att.shape[0])
        u /= np.float32(A_MAX)
        np.clip(u, 0.0, 1.0, out=u)
        out = np.asarray(pipeline(image=u, px_per_input=px_per_input)["image"], np.float32).reshape(u.shape)
        back = np.empty(att.shape, np.float32)
        return np.multiply(out.transpose(2, 0, 1), np.float32(A_MAX), out=back)

    def __call__(
        self, att: np.ndarray, boxes: np.ndarray, labels: np.ndarray, *, rng: np.random.Generator,
        geometric_only: int = 0, scan_format: str = "dual-16bit",
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Augment (C, H, W) attenuation with (N, 4) xyxy boxes and (N,) labels; same shapes out.

        The last `geometric_only` channels (measured detail, not attenuation) move with
        the pixels but get no gain, contrast, noise or blur. `scan_format` is the scan's (`scanner`).
        """
        _, H, W = att.shape
        boxes = np.clip(np.asarray(boxes, np.float32).reshape(-1, 4), 0, [W, H, W, H])
        pipeline = self._pair(scan_format)[0]
        self._seed(pipeline, rng)
        n = att.shape[0] - geometric_only
        extra = {"mask": np.ascontiguousarray(att[n:].transpose(1, 2, 0))} if geometric_only else {}
        out = pipeline(
            image=np.ascontiguousarray(np.clip(att[:n] / A_MAX, 0.0, 1.0).transpose(1, 2, 0)),
            bboxes=boxes,
            labels=np.asarray(labels, np.int64),
            **extra,
        )
        image, out_boxes = out["image"], np.asarray(out["bboxes"], np.float32).reshape(-1, 4)
        mask = np.asarray(out["mask"], np.float32) if geometric_only else None
        h, w = image.shape[:2]
        if (h, w) != (H, W):  # a domain crop: back to the input size, as a cropped export would be letterboxed
            image = cv2.resize(image, (W, H), interpolation=cv2.INTER_LINEAR).reshape(H, W, -1)
            mask = (np.asarray(cv2.resize(mask, (W, H), interpolation=cv2.INTER_LINEAR), np.float32)
                    if mask is not None else None)
            out_boxes = out_boxes * np.array([W / w, H / h, W / w, H / h], np.float32)
        img = np.ascontiguousarray(image.transpose(2, 0, 1) * A_MAX, dtype=np.float32)
        if mask is not None:
            mask = mask.reshape(H, W, geometric_only)
            img = np.concatenate([img, np.ascontiguousarray(mask.transpose(2, 0, 1))])
        return img, out_boxes, np.asarray(out["labels"], np.int64)
