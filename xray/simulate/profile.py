"""Scanner profiles: how one scanner type renders and exports a scene, as data.

A profile is a YAML file in `xray/simulate/profiles/` validated by `ScannerProfile`.
Numbers given as `[lo, hi]` are ranges: each scan draws its own value from its seed
(`ScannerProfile.draw`), so one profile covers a family of scanners and settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Annotated, Literal

import numpy as np
import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from xray.errors import ConfigError
from xray.sources.palette import PALETTES


def _as_range(v: object) -> object:
    """A scalar is the range [v, v]."""
    return [v, v] if isinstance(v, (int, float)) and not isinstance(v, bool) else v


Range = Annotated[tuple[float, float], BeforeValidator(_as_range)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _ordered(v: tuple[float, float]) -> tuple[float, float]:
    if v[0] > v[1]:
        raise ValueError(f"range [{v[0]}, {v[1]}] has its low end above its high end")
    return v


class Artifacts(_Strict):
    """Scanner marks, applied in the physical (transmission) domain. 0 switches one off."""

    end_bands: Range = (0.0, 0.0)  # attenuation added over the first and last columns (scan start / stop)
    row_stripes: Range = (0.0, 0.0)  # std of the per-detector-row gain
    dead_rows: Range = (0.0, 0.0)  # fraction of detector rows that read at the floor
    beam_profile: Range = (0.0, 0.0)  # relative dose fall-off from the beam centre to top and bottom
    starvation: Range = (0.0, 0.0)  # noise floor in transmission; below it a pixel is clipped black
    scatter: Range = (0.0, 0.0)  # fraction of a blurred copy added (haze)
    afterglow: Range = (0.0, 0.0)  # fraction of the previous column that lingers
    jitter: Range = (0.0, 0.0)  # relative line-speed variation (columns stretched / squeezed)
    misregistration: Range = (0.0, 0.0)  # shift of the low energy against the high, in pixels

    @field_validator("*")
    @classmethod
    def _non_negative(cls, v: tuple[float, float]) -> tuple[float, float]:
        _ordered(v)
        if v[0] < 0:
            raise ValueError("artifact strengths are non-negative")
        return v


class Display(_Strict):
    """The 8-bit display curve of an export: contrast stretch, then a curve."""

    curve: Literal["linear", "log", "gamma"] = "linear"
    gamma: Range = (1.0, 1.0)  # exponent of the gamma curve (1 = linear in transmission)
    stretch: tuple[Range, Range] = ((0.0, 0.0), (100.0, 100.0))  # per-scan percentiles mapped to black / white
    black_level: Range = (0.0, 0.0)  # transmission at or below which a pixel is black, whatever the stretch says
    invert: bool = False  # dense = bright (a broken or unusual viewer setting)

    @field_validator("stretch")
    @classmethod
    def _percentiles(cls, v: tuple[tuple[float, float], tuple[float, float]]) -> tuple:
        lo, hi = _ordered(v[0]), _ordered(v[1])
        if not (0 <= lo[0] and hi[1] <= 100 and lo[1] < hi[0]):
            raise ValueError("stretch percentiles must satisfy 0 <= black < white <= 100")
        return v


class Scene(_Strict):
    """How the scene is loaded and built (realism beyond the default simulator)."""

    dense_loads: bool = False  # goods fill most of the hold, stacked near the roof, with internal texture
    strong_structure: bool = False  # posts, corrugation, mid-height rail, heavy floor band as on real scans
    # Dense loads with tyres laced, timber dead-stacked, reels and rifle crates to the roof: real loaded
    # exports are 80 % below grey 70 inside the walls; dense loads alone left such holds a third or more
    # above grey 80.
    packed_loads: bool = False

    @model_validator(mode="after")
    def _packed_is_dense(self) -> Scene:
        if self.packed_loads and not self.dense_loads:
            raise ValueError("packed_loads packs dense loads further: set dense_loads too")
        return self


class ScannerProfile(_Strict):
    """One scanner type: energies, detector, artifacts and the export it writes."""

    name: str
    description: str = ""
    energies_mv: tuple[float, ...] = Field((6.0, 4.0), min_length=1, max_length=2)
    photons: Range = (1.0, 1.0)  # dose relative to the default scanner (lower = noisier)
    bit_depth: Literal[8, 16] = 16
    pixel_mm: tuple[Range, Range] = ((5.0, 5.0), (5.0, 5.0))  # (rows, columns) pitch of the export
    crop_to_container: bool = False
    display: Display = Display()
    jpeg_quality: Range | None = None  # None: PNG
    pseudo_colour: bool = False
    palette: str = "jet"  # the viewer's colour table for a pseudo-colour export (`xray.sources.palette.PALETTES`)
    burned_text: float = Field(0.0, ge=0.0, le=1.0)  # probability of a burned-in caption and markers
    scene: Scene = Scene()
    artifacts: Artifacts = Artifacts()

    def with_scene(self, **changes: bool) -> ScannerProfile:
        """This profile with other scene settings (`packed_loads=True`), checked as a file's would be.

        Raises:
            ConfigError: settings a profile file could not have.
        """
        try:
            scene = Scene.model_validate({**self.scene.model_dump(), **changes})
        except ValidationError as e:
            raise ConfigError(f"profile {self.name!r}: scene: {e.errors()[0]['msg']}") from None
        return self.model_copy(update={"scene": scene})

    @field_validator("pixel_mm")
    @classmethod
    def _pitch(cls, v: tuple[tuple[float, float], tuple[float, float]]) -> tuple:
        for r in v:
            _ordered(r)
            if r[0] < 3 or r[1] > 12:
                raise ValueError("pixel pitch must lie in 3-12 mm")
        return v

    @field_validator("photons")
    @classmethod
    def _dose(cls, v: tuple[float, float]) -> tuple[float, float]:
        if _ordered(v)[0] <= 0:
            raise ValueError("relative dose must be positive")
        return v

    @field_validator("energies_mv")
    @classmethod
    def _energies(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 1.0 <= e <= 10.0 for e in v) or (len(v) == 2 and v[0] <= v[1]):
            raise ValueError("energies are 1-10 MV endpoints, high first")
        return v

    @field_validator("palette")
    @classmethod
    def _palette(cls, v: str) -> str:
        if v not in PALETTES:
            raise ValueError(f"unknown palette {v!r}; known: {', '.join(PALETTES)}")
        return v

    @field_validator("jpeg_quality")
    @classmethod
    def _quality(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not (1 <= _ordered(v)[0] and v[1] <= 100):
            raise ValueError("JPEG quality lies in 1-100")
        return v

    @model_validator(mode="after")
    def _export_fits_depth(self) -> ScannerProfile:
        if self.bit_depth == 16 and (self.jpeg_quality is not None or self.pseudo_colour or self.burned_text):
            raise ValueError("JPEG, pseudo-colour and burned-in text are 8-bit exports: set bit_depth: 8")
        if self.pseudo_colour and len(self.energies_mv) != 1:
            raise ValueError("a pseudo-colour export is one picture: give one energy")
        return self

    def draw(self, rng: np.random.Generator) -> ScanSettings:
        """This scan's settings, drawn from the profile's ranges."""

        def u(r: tuple[float, float]) -> float:
            return float(rng.uniform(r[0], r[1])) if r[1] > r[0] else float(r[0])

        art = {k: u(getattr(self.artifacts, k)) for k in Artifacts.model_fields}
        return ScanSettings(
            profile=self.name,
            photons=u(self.photons),
            pixel_mm=(u(self.pixel_mm[0]), u(self.pixel_mm[1])),
            gamma=u(self.display.gamma),
            black_level=u(self.display.black_level),
            stretch=(u(self.display.stretch[0]), u(self.display.stretch[1])),
            jpeg_quality=None if self.jpeg_quality is None else int(round(u(self.jpeg_quality))),
            burned_text=bool(rng.random() < self.burned_text),
            artifacts=art,
        )


@dataclass(frozen=True)
class ScanSettings:
    """One scan's draw from a profile."""

    profile: str
    photons: float
    pixel_mm: tuple[float, float]
    gamma: float
    black_level: float
    stretch: tuple[float, float]
    jpeg_quality: int | None
    burned_text: bool
    artifacts: dict[str, float]


def _profile_dir():  # type: ignore[no-untyped-def]  # importlib's Traversable
    return resources.files("xray.simulate").joinpath("profiles")


def profile_names() -> list[str]:
    """The bundled profiles, by name."""
    return sorted(p.name[:-5] for p in _profile_dir().iterdir() if p.name.endswith(".yaml"))


def parse_profile(text: str, source: str) -> ScannerProfile:
    """Validate a profile's YAML text; errors name the key and `source`.

    Raises:
        ConfigError: not YAML, not a mapping, an unknown key or a bad value.
    """
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a profile is a mapping of keys, got {type(raw).__name__}")
    try:
        return ScannerProfile.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in e.errors())
        raise ConfigError(f"{source}: {problems}") from None


@lru_cache(maxsize=32)
def load_profile(name: str) -> ScannerProfile:
    """A bundled profile by name.

    Raises:
        ConfigError: unknown name (the message lists the known ones) or an invalid file.
    """
    known = profile_names()
    if name not in known:
        raise ConfigError(f"unknown scanner profile {name!r}; known profiles: {', '.join(known)}")
    f = _profile_dir().joinpath(f"{name}.yaml")
    profile = parse_profile(f.read_text(), f"profiles/{name}.yaml")
    if profile.name != name:
        raise ConfigError(f"profiles/{name}.yaml: name: the profile calls itself {profile.name!r}")
    return profile


def parse_profile_list(names: str | list[str] | None) -> list[ScannerProfile]:
    """Profiles from "a,b" or a list; empty for None."""
    if names is None:
        return []
    items = names.split(",") if isinstance(names, str) else list(names)
    items = [n.strip() for n in items if n.strip()]
    if not items:
        raise ConfigError(f"no scanner profile named; known profiles: {', '.join(profile_names())}")
    return [load_profile(n) for n in items]
