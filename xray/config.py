"""The one typed config of a model: every key, its default and its check, in one tree.

A model config is a YAML file (see `models/`) with these sections, each a pydantic model here:

    version: 1
    classes: [...]       # optional; default: the goods table's categories
    model:  ModelConfig  # the detector family and its arguments
    input:  InputConfig  # what the model sees (xray.model.preprocess)
    train:  TrainConfig  # xray.train.loop
    augment: AugmentConfig  # xray.data.augment
    export: ExportConfig  # xray.export / xray.card

A config may start with `_base_: other.yaml` (relative to itself): the base is read first
(recursively) and the config's mappings are merged into it at any depth; lists replace.
Unknown keys and wrong types are errors that name the key's full path, e.g.
`models/x.yaml: unknown key 'train.lrr'`.

Training checkpoints store `XrayConfig.model_dump(mode="json")`; model cards store
`InputConfig.model_dump(mode="json")` as their `input` section; both are read back here.
This module needs only pydantic and yaml (the ONNX engine imports `InputConfig` without torch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Self, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from xray.errors import ConfigError

CONFIG_VERSION = 1

# Input modes: how many channels the model sees and what they are.
#   single:     A of the high (or only) energy
#   dual:       A_high, A_low
#   dual_ratio: A_high, A_low, A_low / A_high (material discrimination, clipped)
#   dual_ratio_detail: dual_ratio + the fine texture of A_high at full resolution
#               (`detail`), which shrinking a 40-ft scan ~3x into the input would
#               average away: the carton lines of cigarette master cases live there
#   rgb:        a pseudo-colour rendering in [0, 1] (no physics)
MODES = {"single": 1, "dual": 2, "dual_ratio": 3, "dual_ratio_detail": 4, "rgb": 3}
# Energy (or colour) channels each mode reads from the scan before deriving the rest.
BASE_CHANNELS = {"single": 1, "dual": 2, "dual_ratio": 2, "dual_ratio_detail": 2, "rgb": 3}
# Channels measured at full resolution while shrinking (`shrink`), after the base ones.
DETAIL_CHANNELS = {"dual_ratio_detail": 1}
# Default normalisation per mode: attenuation of loaded containers spans ~0..6 around a
# mean of ~1.5; the ratio sits near 1.1 with a spread of ~0.1.
DEFAULT_NORM: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "single": ((1.5,), (1.5,)),
    "dual": ((1.5, 1.5), (1.5, 1.5)),
    "dual_ratio": ((1.5, 1.5, 1.1), (1.5, 1.5, 0.1)),
    "dual_ratio_detail": ((1.5, 1.5, 1.1, 0.07), (1.5, 1.5, 0.1, 0.18)),
    "rgb": ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
}
# Descriptive keys that model cards written before the typed config kept in their `input`
# section (and `train_scale`, which calibration may add); not part of the input config.
CARD_INPUT_KEYS = frozenset(
    {"channels", "name", "layout", "batch", "dynamic_hw", "letterbox", "preprocess", "train_scale"}
)


class Section(BaseModel):
    """A config section: immutable, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def replace(self, **changes: Any) -> Self:
        """A validated copy with some keys changed; mappings merge (`cfg.replace(train={"epochs": 3})`
        changes one key of a section), and a changed input mode brings its own normalisation
        when `mean`/`std` are set to None.

        Raises:
            ConfigError: naming the bad key.
        """
        try:
            return self.model_validate(merge(self.model_dump(mode="json"), changes))
        except ValidationError as e:
            raise ConfigError(describe(e, type(self).__name__)) from e


S = TypeVar("S", bound=Section)


class InputConfig(Section):
    """What the model takes as input; stored in configs, checkpoints and model cards.

    Attributes:
        mode: One of `MODES`.
        size: Model input (height, width) in pixels; scans are letterboxed into it.
        mean: Per-channel mean subtracted after the channels are derived (missing: the
            mode's `DEFAULT_NORM`).
        std: Per-channel divisor (missing: the mode's `DEFAULT_NORM`).
        ratio_eps: Attenuation added to both energies before the ratio, so that air
            (A = 0) has ratio 1 and thin matter does not give a noisy ratio.
        ratio_clip: Range the ratio is clipped to (organic ~1.2, iron ~1.09, lead ~0.96).
        detail_sigma: Scale (scan pixels) of the Gaussian that the detail channel's
            high-pass subtracts.
    """

    mode: Literal["single", "dual", "dual_ratio", "dual_ratio_detail", "rgb"] = "dual_ratio"
    size: tuple[int, int] = (512, 1536)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    ratio_eps: float = Field(0.05, gt=0)
    ratio_clip: tuple[float, float] = (0.8, 1.6)
    detail_sigma: float = Field(1.5, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _mode_normalisation(cls, data: Any) -> Any:
        # The normalisation belongs to the mode: missing (or None) mean/std take the mode's.
        if not isinstance(data, dict):
            return data
        mode = data.get("mode", cls.model_fields["mode"].default)
        if mode not in DEFAULT_NORM:
            return data
        mean, std = DEFAULT_NORM[mode]
        data = dict(data)
        if data.get("mean") is None:
            data["mean"] = mean
        if data.get("std") is None:
            data["std"] = std
        return data

    @field_validator("size")
    @classmethod
    def _size(cls, v: tuple[int, int]) -> tuple[int, int]:
        if min(v) < 32 or any(s % 32 for s in v):
            raise ValueError(f"input size must be (height, width), multiples of 32, got {list(v)}")
        return v

    @field_validator("ratio_clip")
    @classmethod
    def _ratio_clip(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not v[0] < v[1]:
            raise ValueError(f"ratio_clip must be an increasing pair, got {list(v)}")
        return v

    @model_validator(mode="after")
    def _norm_matches_mode(self) -> InputConfig:
        c = MODES[self.mode]
        if len(self.mean) != c or len(self.std) != c or min(self.std) <= 0:
            raise ValueError(f"input mode {self.mode!r} needs {c} means and {c} positive stds")
        return self

    @property
    def channels(self) -> int:
        return MODES[self.mode]

    @property
    def detail_channels(self) -> int:
        """Channels `shrink` measures at full resolution (0 for most modes)."""
        return DETAIL_CHANNELS.get(self.mode, 0)

    @property
    def physical(self) -> bool:
        """True when the input is attenuation (augmentations and TIP apply)."""
        return self.mode != "rgb"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML data (lists, not tuples)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> InputConfig:
        """An input config from data: a config's section or a model card's `input` section.

        Raises:
            ConfigError: naming the bad key (`input.<key>`).
        """
        if not isinstance(d, dict):
            raise ConfigError(f"{source}: the input section must be a mapping, got {type(d).__name__}")
        return validate_section(cls, {k: v for k, v in d.items() if k not in CARD_INPUT_KEYS}, "input")


class FcosLiteConfig(Section):
    """`fcos_lite`: FCOS with the narrow depthwise-separable head (the CPU default)."""

    name: Literal["fcos_lite"] = "fcos_lite"
    backbone: Literal["mobilenet_v3_small", "mobilenet_v3_large", "resnet18", "resnet34"] = "mobilenet_v3_small"
    width: float = Field(1.0, gt=0)
    fpn_channels: int = Field(64, ge=1)
    strides: tuple[int, ...] = (16, 32, 64)
    head_channels: int = Field(64, ge=1)
    head_convs: int = Field(2, ge=1)
    image_head: bool = True  # image-level multi-label head (which goods the scan holds)
    image_head_channels: int = Field(128, ge=1)
    image_loss_weight: float = Field(1.0, ge=0)
    center_sampling_radius: float = Field(1.5, gt=0)
    # Regression output -> box side distances: "exp" (FCOS's exp(s * x); cannot die, use for new
    # configs) or "relu" (the original head, whose all-negative outputs give zero-size boxes and a
    # GIoU loss stuck at 1.0; the default only so that existing configs and checkpoints load as trained).
    box_activation: Literal["relu", "exp"] = "relu"
    score_thresh: float = Field(0.05, ge=0, le=1)  # lowest score the graph returns (mAP needs low scores)
    nms_thresh: float = Field(0.5, gt=0, le=1)
    detections_per_img: int = Field(100, ge=1)
    topk_candidates: int = Field(1000, ge=1)  # per level before NMS


class FcosConfig(FcosLiteConfig):
    """`fcos`: FCOS with torchvision's standard head (GroupNorm, shared towers): a heavier reference."""

    name: Literal["fcos"] = "fcos"  # type: ignore[assignment]
    head_convs: int = Field(4, ge=1)


class ScanMilConfig(Section):
    """`scan_mil`: a box-free scan-level goods model (xray.model.scan_classifier), trainable
    from declarations alone: a light backbone over the whole full-resolution scan, per-cell
    class logits (the region maps) pooled over cells (multiple-instance learning), and a
    unit-length scan embedding for verification by reference."""

    name: Literal["scan_mil"] = "scan_mil"
    backbone: Literal["mobilenet_v3_small", "mobilenet_v3_large", "resnet18"] = "mobilenet_v3_small"
    width: float = Field(1.0, gt=0)
    stride: Literal[16, 32] = 16  # cell size of the region maps, in model-input pixels
    channels: int = Field(128, ge=8)  # per-cell feature width; also the embedding's dimension
    # Pooling of per-cell logits into the scan's: log-sum-exp with sharpness `lse_r` (large r: max,
    # small r: mean), so that one small concealed region can drive a score while all cells learn.
    pool: Literal["lse", "max", "mean"] = "lse"
    lse_r: float = Field(5.0, gt=0)
    # Objective on the declared categories, which are noisy labels: "bootstrap" (soft bootstrapping,
    # Reed et al. 2015: the target is beta * label + (1 - beta) * the model's own belief, so a
    # label the model confidently contradicts pulls less), "bce", or "gce" (generalized
    # cross-entropy, gradient damped by p^q). Measured at 160x512 on the 10 %-noise stand-in:
    # GCE q=0.7 learned about twice as slowly as BCE and bootstrapping (val mAP 0.47 vs 0.74 at epoch 5).
    loss: Literal["bootstrap", "bce", "gce"] = "bootstrap"
    bootstrap_beta: float = Field(0.8, gt=0, le=1)
    gce_q: float = Field(0.7, gt=0, le=1)
    # Evidence boxes: connected regions of a category's map at or above this probability (xray.engine).
    region_thresh: float = Field(0.5, gt=0, lt=1)


# The model families' arguments, told apart by `name` (one class per family).
ModelConfig = Annotated[FcosLiteConfig | FcosConfig | ScanMilConfig, Field(discriminator="name")]

# Families without box outputs: trained on scan-level labels, scored by scan-level metrics.
BOX_FREE_FAMILIES = frozenset({"scan_mil"})


class TrainConfig(Section):
    """The training loop's settings (xray.train.loop)."""

    epochs: int = Field(50, ge=1)
    batch_size: int = Field(4, ge=1)
    workers: int = Field(2, ge=0)
    lr: float = Field(2.0e-3, gt=0)  # AdamW; from-scratch detectors on small data train more reliably than with SGD
    weight_decay: float = Field(0.05, ge=0)
    warmup_iters: int = Field(300, ge=0)
    min_lr_ratio: float = Field(0.05, ge=0, le=1)  # cosine ends at lr * this
    grad_clip: float = Field(10.0, gt=0)
    # Source of the image-level head's labels: the COCO boxes, the manifests (archives without boxes), none.
    image_labels: Literal["boxes", "manifest", "none"] = "boxes"
    eval_every: int = Field(1, ge=1)
    seed: int = 0
    max_bad_steps: int = Field(20, ge=1)  # consecutive non-finite losses before giving up
    # Stop when the box (GIoU) loss of the first `box_stall_steps` steps with boxes all stay
    # within `box_stall_tol` of 1.0: the predicted boxes have zero size and will not grow (0: never stop).
    box_stall_steps: int = Field(200, ge=0)
    box_stall_tol: float = Field(1e-3, gt=0)
    # BatchNorm keeps its running statistics while training (its scale and shift still learn): for
    # weights whose BatchNorm was folded into the convolutions, whose statistics are placeholders.
    # `--init` turns it on for such weights (an exported model's `weights.pt` says so).
    freeze_bn: bool = False
    # Repeat factor sampling (LVIS, Gupta et al. 2019; detectron2's RepeatFactorTrainingSampler): each
    # image is drawn in proportion to max(1, sqrt(t / f)) for the rarest class it holds, f being the
    # share of training images with that class, so rare goods (firearms) are seen more often. The
    # epoch keeps its length. 0: plain shuffling. Not with --ddp.
    repeat_threshold: float = Field(0.0, ge=0, le=1)


class AugmentConfig(Section):
    """Training augmentation of attenuation images (xray.data.augment)."""

    hflip: float = Field(0.5, ge=0, le=1)  # containers and trucks pass the scanner either way round
    vflip: float = Field(0.0, ge=0, le=1)  # goods sit on a floor; an upside-down container is not a real scan
    affine: float = Field(0.6, ge=0, le=1)  # probability of scale + translate (the "scale and crop")
    scale: tuple[float, float] = (0.75, 1.25)
    translate: float = Field(0.1, ge=0)
    gain: tuple[float, float] = (0.8, 1.2)  # all of A times g: denser or thicker loads
    channel_gain: float = Field(0.02, ge=0)  # per-energy jitter: calibration differences, moves the ratio a little
    gamma: tuple[float, float] = (0.9, 1.1)  # contrast: (A / A_MAX) ** gamma
    noise: float = Field(0.3, ge=0, le=1)  # probability of extra quantum noise
    noise_counts: tuple[float, float] = (3.0e4, 1.0e6)  # photons per pixel in air; fewer = noisier
    blur: float = Field(0.2, ge=0, le=1)
    blur_sigma: tuple[float, float] = (0.3, 1.2)
    tip: float = Field(0.5, ge=0, le=1)  # probability of projecting patches into a training scan
    tip_max: int = Field(2, ge=1)  # patches per scan at most
    tip_categories: list[str] | None = None  # categories whose boxes are cut as patches (None: all)
    tip_over_goods: float = Field(0.5, ge=0, le=1)  # probability a patch lands over existing goods (concealment)
    # Domain randomisation (off by default: the bundled recipe is unchanged): the look of other
    # scanners and exports, so that a model keys on goods, not on one scanner. Each domain_* probability
    # below is multiplied by `domain_randomisation`; ranges span the simulator's profiles.
    domain_randomisation: float = Field(0.0, ge=0, le=1)
    domain_export: float = Field(0.7, ge=0, le=1)  # 8-bit display export read back (curve, stretch, quantisation)
    domain_gamma: tuple[float, float] = (0.5, 2.0)  # display curve exponent
    domain_jpeg: float = Field(0.6, ge=0, le=1)  # share of exports also JPEG re-compressed
    domain_jpeg_quality: tuple[int, int] = (40, 95)
    domain_single_energy: float = Field(0.3, ge=0, le=1)  # low energy replaced as for a single-energy scanner
    domain_single_energy_low: float = Field(0.5, ge=0, le=1)  # share of those that keep the low energy (a 4 MV scanner)
    domain_stripes: float = Field(0.4, ge=0, le=1)  # detector row stripes and dead rows
    domain_stripe_strength: tuple[float, float] = (0.0, 0.06)  # per-row gain spread
    domain_dead_rows: tuple[int, int] = (0, 3)
    domain_noise: float = Field(0.4, ge=0, le=1)
    domain_noise_counts: tuple[float, float] = (3.0e3, 1.0e5)  # noisier than `noise_counts`: mobile gantries
    domain_blur: float = Field(0.3, ge=0, le=1)
    domain_blur_sigma: tuple[float, float] = (0.5, 2.0)
    domain_crop: float = Field(0.3, ge=0, le=1)  # crop to the goods (boxes kept), as exports crop to the container
    # The simulator's own scatter and photon starvation (xray.simulate.artifacts), up to twice the strongest
    # training profile's (export-8bit-jpeg: scatter 0.05, starvation 0.01): real scanners are often worse.
    domain_scatter: float = Field(0.3, ge=0, le=1)
    domain_scatter_fraction: tuple[float, float] = (0.0, 0.1)
    domain_starvation: float = Field(0.3, ge=0, le=1)
    domain_starvation_floor: tuple[float, float] = (0.0, 0.02)
    # Where the scanner's look is put on: off, on the model input (after the shrink); on, on the scan at its
    # own resolution before the shrink (crop stays on the model input), as a scanner and its export do. A
    # model with detail channels needs it on: they are measured before the shrink, so off they never see
    # the noise, stripes or JPEG that the attenuation channels get (blur sigma stays in model-input pixels).
    domain_scan_resolution: bool = False
    # Whether a scan read from an 8-bit export (JPEG or pseudo-colour) may be given the display export
    # again. It already has a display curve, quantisation and often JPEG; a second one is harsher than any
    # real export. False draws the export on 16-bit scans only. True is kept for the recipes so far.
    domain_reexport: bool = True
    # The scan formats (kind and bit depth, as `VerifierConfig.by_format`: dual-16bit, single-16bit,
    # single-8bit, rgb-8bit) that get the scanner look; the others keep their own. None: every format.
    domain_formats: list[str] | None = None
    # How transforms draw their randomness. albumentations seeds every transform of a pipeline alike, so
    # with `shared` one number decides them all (a starved image is always also exported, noised...);
    # `independent` gives each its own seed. `shared` is kept for the recipes that trained the bundled
    # model and the recorded archive and parcel figures, so that they reproduce.
    draws: Literal["independent", "shared"] = "independent"

    @field_validator("domain_formats")
    @classmethod
    def _known_formats(cls, v: list[str] | None) -> list[str] | None:
        # xray.scan.ScanKind's values, spelled out: importing it would load numpy with every config.
        kinds, depths = ("dual", "single", "rgb"), ("8bit", "16bit")
        for f in v or []:
            kind, _, depth = f.partition("-")
            if kind not in kinds or depth not in depths:
                raise ValueError(f"scan format {f!r}: expected KIND-DEPTH, KIND one of {kinds}, DEPTH one of {depths}")
        return v


class ExportConfig(Section):
    """What the export writes into the model card (xray.export, xray.card)."""

    # Default operating threshold, one for all classes or per class (the verifier calibrates its own).
    score_thresh: float | dict[str, float] = 0.3


class ExecutionConfig(Section):
    """How an exported model runs (xray.runtime): not a section of a model config, but of the
    place that runs one (`xray inspect|serve --provider`, the service's `Settings.execution`).

    Attributes:
        provider: onnxruntime execution provider: `auto` (CUDA when onnxruntime offers it, else
            the CPU), `cpu`, `cuda` or `tensorrt` (asked for by name: an error when missing).
            TensorRT is never picked by `auto`: onnxruntime-gpu lists it whether or not the
            TensorRT libraries are installed, and it builds an engine per input shape on first use.
        device_id: GPU to run on.
        fp16: Let TensorRT use FP16 kernels (the verdict figures were measured in FP32).
        trt_cache: Folder for built TensorRT engines, reused by the next start; None: rebuilt
            at every start.
    """

    provider: Literal["auto", "cpu", "cuda", "tensorrt"] = "auto"
    device_id: Annotated[int, Field(ge=0)] = 0
    fp16: bool = False
    trt_cache: Path | None = None


class XrayConfig(Section):
    """A whole model config: the model, its input, how it is trained, augmented and exported."""

    version: int = CONFIG_VERSION
    classes: list[str] | None = None
    # The goods table the classes and declarations come from: "cargo" (xray/goods.yaml), "parcel"
    # (xray/goods_parcel.yaml) or a YAML path; written into the model card for the verifier.
    goods_table: str = "cargo"
    init: dict[str, Any] | None = None  # provenance of a fine-tuning stage: {from, epoch, metrics}
    model: ModelConfig = Field(default_factory=lambda: FcosLiteConfig.model_validate({}))
    input: InputConfig = Field(default_factory=lambda: InputConfig.model_validate({}))
    train: TrainConfig = Field(default_factory=lambda: TrainConfig.model_validate({}))
    augment: AugmentConfig = Field(default_factory=lambda: AugmentConfig.model_validate({}))
    export: ExportConfig = Field(default_factory=lambda: ExportConfig.model_validate({}))

    @field_validator("version")
    @classmethod
    def _version(cls, v: int) -> int:
        if v > CONFIG_VERSION:
            raise ValueError(f"config version {v} is newer than this xray reads ({CONFIG_VERSION}); update xray")
        if v < 1:
            raise ValueError(f"config version must be >= 1, got {v}")
        return v


def describe(error: ValidationError, source: str, *, prefix: str = "") -> str:
    """One line per problem, each naming the key's full path (under `prefix`, a section name)."""
    problems = []
    for err in error.errors():
        # Union members add their tag to the location (e.g. model.fcos_lite.width): drop it.
        loc = ([prefix] if prefix else []) + [str(p) for p in err["loc"] if p not in ("fcos_lite", "fcos", "scan_mil")]
        path = ".".join(loc)
        if err["type"] == "extra_forbidden":
            problems.append(f"unknown key '{path}'")
        elif err["type"] == "union_tag_invalid":
            ctx = err.get("ctx", {})
            problems.append(f"'{path}.name': unknown model {ctx.get('tag')!r}; known: {ctx.get('expected_tags')}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"'{path}': {msg}" if path else msg)
    return f"{source}: " + "; ".join(problems)


def validate_section(cls: type[S], data: S | dict[str, Any] | None, source: str) -> S:
    """One section from a mapping (None: all defaults); an instance passes through.

    Raises:
        ConfigError: naming the bad key as `source.key`.
    """
    if isinstance(data, cls):
        return data
    try:
        return cls.model_validate(data if data is not None else {})
    except ValidationError as e:
        raise ConfigError(describe(e, "config", prefix=source)) from e


def config_from_dict(data: Any, source: str = "config") -> XrayConfig:
    """Validate a config mapping (a YAML file's content, a checkpoint's stored config).

    Mappings without `version` (checkpoints written before it existed) are version 1.

    Raises:
        ConfigError: naming every bad key with its full path.
    """
    if isinstance(data, XrayConfig):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a model config must be a mapping, got {type(data).__name__}")
    try:
        return XrayConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(describe(e, source)) from e


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep merge: mappings merge at any depth; any other value (lists too) replaces."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def _merge_config(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """`merge`, except that a child changing the input mode without its own mean/std gets
    the new mode's normalisation, not the base's (which has the old mode's channel count)."""
    merged = merge(base, child)
    child_input, base_input = child.get("input"), base.get("input")
    if isinstance(child_input, dict) and isinstance(base_input, dict) and isinstance(merged.get("input"), dict):
        if "mode" in child_input and child_input["mode"] != base_input.get("mode"):
            merged["input"] = {k: v for k, v in merged["input"].items() if k not in ("mean", "std") or k in child_input}
    return merged


def read_config_tree(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config file's mapping with its `_base_` chain merged in (not validated yet).

    Raises:
        ConfigError: unreadable file, not a mapping, or a `_base_` cycle.
    """
    path = Path(path)
    resolved = path.resolve()
    if resolved in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, resolved))
        what = "a config cannot be its own _base_" if len(_seen) == 1 else "_base_ cycle"
        raise ConfigError(f"{path}: {what}: {chain}")
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read model config: {e}") from e
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a model config must be a mapping, got {type(data).__name__}")
    if "_base_" not in data:
        return data
    base_name = data.pop("_base_")
    if not isinstance(base_name, str):
        raise ConfigError(f"{path}: '_base_' must be a file name, got {base_name!r}")
    base = read_config_tree(path.parent / base_name, (*_seen, resolved))
    return _merge_config(base, data)


def load_config(path: str | Path) -> XrayConfig:
    """Read and validate a model config YAML (see the module docstring).

    Raises:
        ConfigError: naming the file and the bad key's full path.
    """
    return config_from_dict(read_config_tree(path), str(path))
