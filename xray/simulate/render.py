"""The detector side of the virtual scanner: from areal-density maps to 16-bit scans.

Signal chain per energy: polyenergetic transmission (lookup table), detector blur,
per-row (detector element) gain residuals and per-column (linac pulse) dose
fluctuation, photon noise and electronic noise, 16-bit quantisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from xray.scan import log_view
from xray.simulate.canvas import Canvas
from xray.simulate.physics import Spectrum, TransmissionLUT, linac_spectrum


@dataclass(frozen=True)
class ScannerModel:
    """A dual-energy linac scanner (interlaced high / low energy pulses).

    Attributes:
        energies_mv: Linac endpoints, high first (e.g. 6 MV / 4 MV).
        pixel_mm: Pixel size at the object.
        photons: Detected photon-equivalents per pixel in open beam, per energy;
            sets the quantum noise (std of T is sqrt(T / photons)).
        blur_px: Gaussian sigma of the detector's point spread.
        row_gain_sd: Residual gain variation between detector elements after calibration.
        pulse_dose_sd: Dose fluctuation between linac pulses (image columns).
        electronic_noise: Read-out noise in 16-bit counts.
    """

    energies_mv: tuple[float, ...] = (6.0, 4.0)
    pixel_mm: float = 5.0
    photons: tuple[float, ...] = (2.5e5, 1.5e5)
    blur_px: float = 0.8
    row_gain_sd: float = 0.003
    pulse_dose_sd: float = 0.002
    electronic_noise: float = 2.0

    @property
    def spectra(self) -> tuple[Spectrum, ...]:
        return tuple(linac_spectrum(e) for e in self.energies_mv)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(s.label for s in self.spectra)


@lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    """8 M standard normal samples drawn once per process from a fixed seed.

    Drawing fresh Gaussians costs ~30 ms per energy of a 40-ft scan; a random window
    into this bank is white Gaussian noise too, at the cost of a memory copy, and
    keeps every scan a pure function of its seed.
    """
    return np.random.default_rng(0x5EED).standard_normal(1 << 23, dtype=np.float32)


def gaussian_noise(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """White Gaussian noise of a shape: a window into the bank (a fresh draw when too large)."""
    bank = _noise_bank()
    n = shape[0] * shape[1]
    if n > bank.size // 2:
        return rng.standard_normal(shape, dtype=np.float32)
    start = int(rng.integers(0, bank.size - n))
    return bank[start : start + n].reshape(shape)


@lru_cache(maxsize=8)
def _lut(spectrum: Spectrum) -> TransmissionLUT:
    return TransmissionLUT(spectrum)


def clean_transmission(canvas: Canvas, scanner: ScannerModel) -> np.ndarray:
    """Noise-free transmission per energy, float32 (E, H, W)."""
    return np.stack([_lut(s)(canvas.organic, canvas.iron) for s in scanner.spectra])


def to_display(scan_u16: np.ndarray, *, max_attenuation: float = 8.0) -> np.ndarray:
    """An 8-bit log-scale picture of a 16-bit transmission image (see `xray.scan.log_view`)."""
    return log_view(scan_u16.astype(np.float32) / np.float32(65535.0), max_attenuation=max_attenuation)


def render(canvas: Canvas, scanner: ScannerModel, rng: np.random.Generator) -> np.ndarray:
    """Render the scan as the detector reports it: uint16 transmission (E, H, W)."""
    h, w = canvas.height, canvas.width
    out = np.empty((len(scanner.energies_mv), h, w), np.uint16)
    for k, spectrum in enumerate(scanner.spectra):
        t = _lut(spectrum)(canvas.organic, canvas.iron)
        if scanner.blur_px > 0:
            t = cv2.GaussianBlur(t, (0, 0), scanner.blur_px)
        gain = 1 + scanner.row_gain_sd * rng.standard_normal((h, 1), dtype=np.float32)
        dose = 1 + scanner.pulse_dose_sd * rng.standard_normal((1, w), dtype=np.float32)
        t *= gain * dose
        # Photon statistics (Gaussian approximation of Poisson counts: photons >> 1 in
        # all but the darkest pixels, where electronic noise dominates) plus read-out
        # noise, as one variance.
        var = np.maximum(t, 0) * np.float32(1.0 / scanner.photons[k])
        var += np.float32((scanner.electronic_noise / 65535.0) ** 2)
        t += np.sqrt(var) * gaussian_noise(rng, (h, w))
        t *= np.float32(65535.0)
        # One count is the floor: a scanner never reports zero transmission.
        np.clip(t, 1.0, 65535.0, out=t)
        out[k] = np.rint(t)
    return out
