"""The goods detector: FCOS (anchor-free) on an FPN over a light backbone, for CPUs.

Built from torchvision blocks and trained from scratch. Two choices keep it fast on
CPU (measured: the stride-8 level and the wide GroupNorm head are most of the cost of
torchvision's FCOS): the pyramid starts at stride 16 (goods regions in containers are
large), and the default head is narrow, per level, depthwise-separable and uses
BatchNorm, which folds into the convolutions at export.

Losses, point-to-box matching and decoding are torchvision's FCOS (focal loss, GIoU,
centre-ness); an optional image-level multi-label head on the top pyramid level
predicts which goods a scan holds (trainable from manifests alone).
"""

from __future__ import annotations

from itertools import pairwise

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from torchvision.models.detection import FCOS
from torchvision.models.detection._utils import BoxLinearCoder
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.fcos import FCOSHead
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import Conv2dNormActivation
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from xray.config import FcosConfig, FcosLiteConfig
from xray.errors import ConfigError
from xray.model.registry import register_model

# How the regression output becomes distances to the box sides (in strides): see `LiteFCOSHead`.
BOX_ACTIVATIONS = ("relu", "exp")

# Backbones `build_backbone` knows (the config's `model.backbone` choices).
BACKBONES = ("mobilenet_v3_small", "mobilenet_v3_large", "resnet18", "resnet34")


def build_backbone(
    *, name: str, in_channels: int, width: float, fpn_channels: int, strides: tuple[int, ...]
) -> BackboneWithFPN:
    """A backbone from scratch (weights=None) with an FPN giving levels at `strides`.

    `strides` are consecutive powers of two; the backbone gives every level up to
    stride 32 and each further level is a max-pool of the one below.
    """
    strides = tuple(int(s) for s in strides)
    if not strides or any(b != 2 * a for a, b in pairwise(strides)) or strides[0] not in (8, 16, 32):
        raise ConfigError(f"strides must be consecutive powers of two starting at 8, 16 or 32, got {strides}")
    if name.startswith("mobilenet_v3"):
        net = getattr(torchvision.models, name)(weights=None, width_mult=width)
        body = net.features
        stem = body[0][0]
        body[0][0] = nn.Conv2d(in_channels, stem.out_channels, 3, stride=2, padding=1, bias=False)
    elif name.startswith("resnet"):
        if width != 1.0:
            raise ConfigError(f"{name} has no width multiplier; use width: 1.0")
        body = getattr(torchvision.models, name)(weights=None)
        body.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        body.fc = nn.Identity()
    else:
        raise ConfigError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}")

    # Probe the body once to find the last module at each stride (no hard-coded indices).
    last_at: dict[int, tuple[str, int]] = {}
    x = torch.zeros(1, in_channels, 64, 64)
    with torch.no_grad():
        for mod_name, mod in body.named_children():
            if mod_name in ("avgpool", "fc"):
                break
            x = mod(x)
            last_at[64 // x.shape[-1]] = (mod_name, x.shape[1])
    wanted = [s for s in strides if s <= 32]
    return_layers = {last_at[s][0]: str(i) for i, s in enumerate(wanted)}
    extra = LastLevelMaxPool() if len(strides) > len(wanted) else None
    if len(strides) - len(wanted) > 1:
        raise ConfigError(f"at most one level beyond stride 32, got strides {strides}")
    fpn = BackboneWithFPN(
        body,
        return_layers=return_layers,
        in_channels_list=[last_at[s][1] for s in wanted],
        out_channels=fpn_channels,
        extra_blocks=extra,
    )
    # BackboneWithFPN turns extra_blocks=None into a max-pool level: pyramids ending at
    # stride 32 (e.g. 8, 16, 32 for small objects) must not get that fourth level.
    fpn.fpn.extra_blocks = extra
    return fpn


def _dw_block(cin: int, cout: int) -> nn.Sequential:
    """Depthwise 3x3 + pointwise 1x1, each with BatchNorm and ReLU."""
    return nn.Sequential(
        Conv2dNormActivation(cin, cin, 3, groups=cin, activation_layer=nn.ReLU),
        Conv2dNormActivation(cin, cout, 1, activation_layer=nn.ReLU),
    )


class LiteFCOSHead(nn.Module):
    """A narrow FCOS head: per-level depthwise-separable towers, shared predictors.

    Same outputs and loss as torchvision's `FCOSHead`, at a fraction of its cost: the
    towers are per level so BatchNorm statistics are per level (and fold into the
    convolutions at export); the predictors are shared so that the regression stays
    scale-normalised across levels.
    """

    # torchvision's loss (focal + GIoU + centre-ness); it needs only `self.box_coder`.
    compute_loss = FCOSHead.compute_loss

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        num_levels: int,
        channels: int,
        num_convs: int,
        prior_probability: float = 0.01,
        box_activation: str = "relu",
    ) -> None:
        super().__init__()
        if box_activation not in BOX_ACTIVATIONS:
            raise ConfigError(f"box_activation must be one of {BOX_ACTIVATIONS}, got {box_activation!r}")
        self.num_classes = num_classes
        self.box_activation = box_activation
        self.box_coder = BoxLinearCoder(normalize_by_size=True)

        def tower() -> nn.Sequential:
            return nn.Sequential(*[_dw_block(in_channels if i == 0 else channels, channels) for i in range(num_convs)])

        self.cls_towers = nn.ModuleList([tower() for _ in range(num_levels)])
        self.reg_towers = nn.ModuleList([tower() for _ in range(num_levels)])
        self.cls_logits = nn.Conv2d(channels, num_classes, 3, padding=1)
        self.bbox_reg = nn.Conv2d(channels, 4, 3, padding=1)
        self.bbox_ctrness = nn.Conv2d(channels, 1, 3, padding=1)
        for layer in (self.cls_logits, self.bbox_reg, self.bbox_ctrness):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)  # type: ignore[arg-type]  # Conv2d's bias exists (bias=True)
        # Start with every point predicting background at `prior_probability` (focal loss).
        nn.init.constant_(
            self.cls_logits.bias,  # type: ignore[arg-type]
            -torch.log(torch.tensor((1 - prior_probability) / prior_probability)).item(),
        )
        # exp: a learnable scale per level (FCOS's `Scale`), so each level sets its own range.
        self.box_scales = nn.Parameter(torch.ones(num_levels)) if box_activation == "exp" else None

    def forward(self, x: list[Tensor]) -> dict[str, Tensor]:
        cls_all, reg_all, ctr_all = [], [], []
        for level, (features, cls_tower, reg_tower) in enumerate(zip(x, self.cls_towers, self.reg_towers)):
            n = features.shape[0]
            cls = self.cls_logits(cls_tower(features))
            reg_feat = reg_tower(features)
            reg = self.bbox_reg(reg_feat)
            if self.box_scales is not None:
                # exp(s * x) (FCOS): positive everywhere, and x = 0 is a box one stride to each
                # side, so GIoU has a gradient from step 0. Clamped: exp(10) strides is no box.
                reg = torch.exp((self.box_scales[level] * reg).clamp(max=10.0))
            else:
                # ReLU (as torchvision's head; kept for checkpoints and the bundled model): can die,
                # as all-negative outputs give zero-size boxes where GIoU has no gradient.
                reg = F.relu(reg)
            ctr = self.bbox_ctrness(reg_feat)
            # (N, K, H, W) -> (N, HW, K), the layout torchvision's FCOS losses expect.
            cls_all.append(cls.permute(0, 2, 3, 1).reshape(n, -1, self.num_classes))
            reg_all.append(reg.permute(0, 2, 3, 1).reshape(n, -1, 4))
            ctr_all.append(ctr.permute(0, 2, 3, 1).reshape(n, -1, 1))
        return {
            "cls_logits": torch.cat(cls_all, dim=1),
            "bbox_regression": torch.cat(reg_all, dim=1),
            "bbox_ctrness": torch.cat(ctr_all, dim=1),
        }


class ImageLabelHead(nn.Module):
    """Which goods a scan holds: conv block, global max pool, linear -> K logits.

    Max pooling because presence is an "anywhere in the scan" question.
    """

    def __init__(self, *, in_channels: int, num_classes: int, channels: int) -> None:
        super().__init__()
        self.conv = _dw_block(in_channels, channels)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(F.adaptive_max_pool2d(self.conv(x), 1).flatten(1))


class GoodsDetector(FCOS):
    """FCOS on batched, already preprocessed input (see `xray.model.preprocess`).

    Unlike torchvision's FCOS there is no internal resize or normalisation: the input
    is a (B, C, H, W) tensor from the one preprocessing function, and boxes are in its
    pixels. Labels are 0-based indices into the class list.

    Training: `model(images, targets, image_labels)` returns a dict of losses; targets
    are dicts with `boxes` (N, 4) xyxy and `labels` (N,); `image_labels` (B, K) holds
    1/0 per class and -1 where unknown. Eval: a list of dicts with `boxes`, `scores`,
    `labels` (and `image_scores` (K,) when the image head exists).
    """

    def __init__(
        self,
        *,
        backbone: BackboneWithFPN,
        head: nn.Module,
        num_classes: int,
        strides: tuple[int, ...],
        image_head: bool,
        image_head_channels: int,
        image_loss_weight: float,
        center_sampling_radius: float,
        score_thresh: float,
        nms_thresh: float,
        detections_per_img: int,
        topk_candidates: int,
    ) -> None:
        anchors = AnchorGenerator(tuple((s,) for s in strides), ((1.0,),) * len(strides))
        super().__init__(
            backbone,
            num_classes,
            anchor_generator=anchors,
            head=head,
            center_sampling_radius=center_sampling_radius,
            score_thresh=score_thresh,
            nms_thresh=nms_thresh,
            detections_per_img=detections_per_img,
            topk_candidates=topk_candidates,
        )
        del self.transform  # input is preprocessed outside, identically in training and inference
        self.num_classes = num_classes
        self.strides = tuple(strides)
        self.image_loss_weight = image_loss_weight
        self.image_head = (
            ImageLabelHead(in_channels=backbone.out_channels, num_classes=num_classes, channels=image_head_channels)
            if image_head
            else None
        )

    def forward(  # type: ignore[override]
        self,
        images: Tensor,
        targets: list[dict[str, Tensor]] | None = None,
        image_labels: Tensor | None = None,
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        features = list(self.backbone(images).values())
        head_outputs = self.head(features)
        # Sizes straight from the tensor's shape (no int()): when traced for ONNX export they
        # stay symbolic, so boxes are clipped to the real input size, not the export size.
        image_sizes = [(images.shape[-2], images.shape[-1])] * images.shape[0]
        anchors = self.anchor_generator(ImageList(images, image_sizes), features)
        num_anchors_per_level = [f.shape[2] * f.shape[3] for f in features]
        image_logits = self.image_head(features[-1]) if self.image_head is not None else None

        if self.training:
            if targets is None:
                raise ValueError("targets are required in training mode")
            losses = self.compute_loss(targets, head_outputs, anchors, num_anchors_per_level)
            if image_logits is not None and image_labels is not None:
                known = image_labels >= 0
                loss = F.binary_cross_entropy_with_logits(
                    image_logits[known], image_labels[known].to(image_logits.dtype), reduction="sum"
                ) / known.sum().clamp(min=1)
                losses["image_labels"] = self.image_loss_weight * loss
            return losses

        split_outputs = {k: list(v.split(num_anchors_per_level, dim=1)) for k, v in head_outputs.items()}
        split_anchors = [list(a.split(num_anchors_per_level)) for a in anchors]
        detections = self.postprocess_detections(split_outputs, split_anchors, image_sizes)
        if image_logits is not None:
            for det, logits in zip(detections, image_logits):
                det["image_scores"] = logits.sigmoid()
        return detections


def _build(cfg: FcosLiteConfig, *, standard_head: bool, num_classes: int, in_channels: int) -> GoodsDetector:
    body = build_backbone(
        name=cfg.backbone, in_channels=in_channels, width=cfg.width, fpn_channels=cfg.fpn_channels, strides=cfg.strides
    )
    det_head: nn.Module
    if standard_head:
        if cfg.box_activation != "relu":
            raise ConfigError(
                f"model.box_activation {cfg.box_activation!r}: the fcos family has torchvision's "
                "head (ReLU); use fcos_lite for 'exp'"
            )
        det_head = FCOSHead(cfg.fpn_channels, 1, num_classes, num_convs=cfg.head_convs)
    else:
        det_head = LiteFCOSHead(
            in_channels=cfg.fpn_channels,
            num_classes=num_classes,
            num_levels=len(cfg.strides),
            channels=cfg.head_channels,
            num_convs=cfg.head_convs,
            box_activation=cfg.box_activation,
        )
    return GoodsDetector(
        backbone=body,
        head=det_head,
        num_classes=num_classes,
        strides=cfg.strides,
        image_head=cfg.image_head,
        image_head_channels=cfg.image_head_channels,
        image_loss_weight=cfg.image_loss_weight,
        center_sampling_radius=cfg.center_sampling_radius,
        score_thresh=cfg.score_thresh,
        nms_thresh=cfg.nms_thresh,
        detections_per_img=cfg.detections_per_img,
        topk_candidates=cfg.topk_candidates,
    )


@register_model
def fcos_lite(cfg: FcosLiteConfig, *, num_classes: int, in_channels: int) -> GoodsDetector:
    """FCOS with the narrow depthwise-separable head (the CPU default)."""
    return _build(cfg, standard_head=False, num_classes=num_classes, in_channels=in_channels)


@register_model
def fcos(cfg: FcosConfig, *, num_classes: int, in_channels: int) -> GoodsDetector:
    """FCOS with torchvision's standard head (GroupNorm, shared towers): a heavier reference."""
    return _build(cfg, standard_head=True, num_classes=num_classes, in_channels=in_channels)
