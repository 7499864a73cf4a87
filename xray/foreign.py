"""Images that are not cargo scans, made without downloads, for measuring the out-of-domain guard.

Photos (the two shipped with scikit-learn, whole and cropped, in colour and grey),
documents (text drawn with OpenCV on white pages), baggage-like images (bags with
objects on a conveyor, in pseudo-colour and grey), random noise and flat images.
Each comes as a `Scan` the way a reader would deliver it: colour images as RGB, grey
ones (and colour files whose pixels are grey) as single-energy transmission.
"""

from __future__ import annotations

import cv2
import numpy as np

from xray.scan import Scan, ScanKind
from xray.sources.base import DecodedImage


def _scan(sid: str, img: np.ndarray) -> Scan:
    """uint8 (H, W) grey or (H, W, 3) RGB -> Scan as a reader would deliver it: grey read as
    transmission, a colour image whose pixels are grey (a white page, a grey bag) as grey."""
    v = img.astype(np.float32) / np.float32(255.0)
    if v.ndim == 2:
        return Scan(id=sid, channels=v[None], kind=ScanKind.SINGLE, bit_depth=8)
    image = DecodedImage(np.ascontiguousarray(v.transpose(2, 0, 1)), ScanKind.RGB, 8).as_grey_if_grey_rendering()
    return image.to_scan(sid, scan_id=sid)


def _grey(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def photos() -> list[Scan]:
    """scikit-learn's two sample photos, whole and in four crops, in colour and grey."""
    from sklearn.datasets import load_sample_images

    out = []
    for k, img in enumerate(load_sample_images().images):
        h, w = img.shape[:2]
        crops = {
            "whole": img,
            "left": img[:, : w // 2],
            "right": img[:, w // 2 :],
            "top": img[: h // 2],
            "wide": img[h // 3 : 2 * h // 3],
        }
        for name, c in crops.items():
            c = np.ascontiguousarray(c)
            out += [_scan(f"photo{k}-{name}-rgb", c), _scan(f"photo{k}-{name}-grey", _grey(c))]
    return out


def documents(rng: np.random.Generator, n: int = 10) -> list[Scan]:
    """White pages (portrait and landscape) with lines of text, a few with a table or stamp."""
    out = []
    for i in range(n):
        h, w = (1100, 850) if i % 2 == 0 else (850, 1100)
        page = np.full((h, w, 3), 255, np.uint8)
        y = int(rng.integers(60, 120))
        while y < h - 60:
            words = " ".join(
                "".join(chr(int(c)) for c in rng.integers(97, 123, int(rng.integers(2, 9))))
                for _ in range(int(rng.integers(4, 10)))
            )
            cv2.putText(
                page,
                words,
                (60, y),
                cv2.FONT_HERSHEY_SIMPLEX,
                float(rng.uniform(0.6, 1.1)),
                (0, 0, 0),
                int(rng.integers(1, 3)),
                cv2.LINE_AA,
            )
            y += int(rng.integers(30, 60))
        if i % 3 == 0:  # a table
            for yy in range(h // 2, h - 100, 40):
                cv2.line(page, (60, yy), (w - 60, yy), (0, 0, 0), 1)
        if i % 4 == 1:  # a stamp
            cv2.circle(page, (w - 180, h - 180), 90, (200, 30, 30), 4)
        out.append(_scan(f"document{i}-rgb", page) if i % 2 else _scan(f"document{i}-grey", _grey(page)))
    return out


def baggage(rng: np.random.Generator, n: int = 10) -> list[Scan]:
    """Airport-style baggage images: a bag with objects on a conveyor, in the usual
    orange/green/blue pseudo-colour (half of them converted to grey)."""
    out = []
    palette = [(230, 140, 40), (80, 170, 70), (40, 90, 200), (20, 20, 120)]  # organic, mixed, metal, dense
    for i in range(n):
        h, w = int(rng.integers(500, 800)), int(rng.integers(700, 1100))
        img = np.full((h, w, 3), 245, np.uint8)
        cv2.rectangle(img, (0, h - 60), (w, h), (190, 190, 190), -1)  # the belt
        x1, y1 = int(rng.integers(40, 150)), int(rng.integers(40, 150))
        x2, y2 = w - int(rng.integers(40, 150)), h - int(rng.integers(80, 160))
        cv2.rectangle(img, (x1, y1), (x2, y2), palette[1], -1)
        cv2.rectangle(img, (x1, y1), (x2, y2), palette[2], 6)  # frame and zip
        cv2.rectangle(img, ((x1 + x2) // 2 - 60, y1 - 35), ((x1 + x2) // 2 + 60, y1), palette[2], 8)  # handle
        for _ in range(int(rng.integers(4, 12))):
            cx, cy = int(rng.integers(x1, x2)), int(rng.integers(y1, y2))
            colour = palette[int(rng.integers(0, 4))]
            if rng.random() < 0.5:
                cv2.ellipse(
                    img,
                    (cx, cy),
                    (int(rng.integers(15, 80)), int(rng.integers(10, 40))),
                    float(rng.uniform(0, 180)),
                    0,
                    360,
                    colour,
                    -1,
                )
            else:
                cv2.rectangle(
                    img, (cx, cy), (cx + int(rng.integers(20, 160)), cy + int(rng.integers(10, 90))), colour, -1
                )
        soft = np.asarray(cv2.GaussianBlur(img, (5, 5), 1.2), np.uint8)
        out.append(_scan(f"baggage{i}-rgb", soft) if i % 2 == 0 else _scan(f"baggage{i}-grey", _grey(soft)))
    return out


def noise_and_flat(rng: np.random.Generator) -> list[Scan]:
    """Uniform and Gaussian noise, salt-and-pepper, and flat black, white and grey images."""
    out = []
    for i, (h, w) in enumerate([(400, 1200), (600, 600), (300, 1500)]):
        out.append(_scan(f"noise-uniform{i}", rng.integers(0, 256, (h, w), dtype=np.uint8)))
        out.append(_scan(f"noise-gauss{i}", np.clip(rng.normal(128, 40, (h, w)), 0, 255).astype(np.uint8)))
        out.append(_scan(f"noise-colour{i}", rng.integers(0, 256, (h, w, 3), dtype=np.uint8)))
    for v in (0, 20, 128, 235, 255):
        out.append(_scan(f"flat{v}", np.full((400, 1200), v, np.uint8)))
    return out


def foreign_images(seed: int = 0) -> dict[str, list[Scan]]:
    """All the kinds, by kind."""
    rng = np.random.default_rng(seed)
    return {"photos": photos(), "documents": documents(rng), "baggage": baggage(rng), "noise_flat": noise_and_flat(rng)}
