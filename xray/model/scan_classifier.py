"""A box-free scan-level goods model, trainable from declarations alone (`scan_mil`).

Archives hold scans and declared HS codes, not boxes. This family sees the whole scan at
(close to) full resolution, gives every cell of a stride-16 (or 32) feature map its own
class logits — the per-category region maps, which localise what drove a score — and pools
them into scan-level logits by log-sum-exp (multiple-instance learning: a scan holds a
category when some region does, so one small concealed region can drive the score, while
every cell still gets gradient). A generalized-mean pool of the same cell features, scaled
to unit length, is the scan embedding for verification by reference.

Declarations are noisy labels (clerical errors, and the misdeclarations we hunt): the
default objective is soft bootstrapping per label (Reed et al. 2015), a BCE whose target
leans a share 1 - beta towards the model's own belief, so a label the model confidently
contradicts pulls less; generalized cross-entropy (Zhang & Sabuncu 2018) and plain BCE
are choices.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from torchvision.ops import Conv2dNormActivation

from xray.config import ScanMilConfig
from xray.errors import ConfigError
from xray.model.registry import register_model

# Generalized-mean exponent of the embedding pool: between average (1) and max (inf), the
# usual choice for retrieval descriptors.
GEM_P = 3.0
# Initial scan-level probability of each category (most scans hold one or two of 13).
PRIOR = 0.1


def build_trunk(name: str, *, in_channels: int, width: float, stride: int) -> tuple[nn.Sequential, int]:
    """A backbone from scratch cut at `stride`; returns (trunk, output channels)."""
    if name.startswith("mobilenet_v3"):
        body = getattr(torchvision.models, name)(weights=None, width_mult=width).features
        stem = body[0][0]
        body[0][0] = nn.Conv2d(in_channels, stem.out_channels, 3, stride=2, padding=1, bias=False)
        modules = list(body.children())
    elif name.startswith("resnet"):
        if width != 1.0:
            raise ConfigError(f"{name} has no width multiplier; use width: 1.0")
        net = getattr(torchvision.models, name)(weights=None)
        net.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        modules = [net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4]
    else:
        raise ConfigError(f"unknown backbone {name!r}")
    # Probe once for the last module at the wanted stride (no hard-coded indices).
    x = torch.zeros(1, in_channels, 64, 64)
    keep, channels = 0, 0
    with torch.no_grad():
        for i, mod in enumerate(modules):
            x = mod(x)
            if 64 // x.shape[-1] == stride:
                keep, channels = i + 1, x.shape[1]
    if not keep:
        raise ConfigError(f"{name} has no stage at stride {stride}")
    return nn.Sequential(*modules[:keep]), channels


def gce_loss(logits: Tensor, targets: Tensor, q: float) -> Tensor:
    """Generalized cross-entropy of independent binary labels, per element: (1 - p_y^q) / q,
    p_y the probability given to the label. q -> 0 is BCE; q = 1 is the (noise-tolerant) MAE."""
    log_p = F.logsigmoid(torch.where(targets > 0.5, logits, -logits))
    return (1.0 - torch.exp(q * log_p)) / q


def bootstrap_loss(logits: Tensor, targets: Tensor, beta: float) -> Tensor:
    """Soft bootstrapping of independent binary labels, per element: BCE against
    beta * label + (1 - beta) * sigmoid(logit), the belief held fixed (no gradient through it).
    beta = 1 is BCE."""
    belief = torch.sigmoid(logits).detach()
    return F.binary_cross_entropy_with_logits(logits, beta * targets + (1.0 - beta) * belief, reduction="none")


class ScanClassifier(nn.Module):
    """Scan -> per-category region maps, scan-level scores and an embedding.

    Training: `model(images, targets, image_labels)` returns `{"image_labels": loss}` over
    the known labels (`image_labels` (B, K): 1/0, -1 where unknown; `targets` is ignored,
    so the detector's training loop drives it unchanged). Eval: one dict per scan with
    `image_scores` (K,), `region_maps` (K, h, w) cell probabilities at `stride`, and
    `embedding` (D,) of unit length.
    """

    def __init__(self, cfg: ScanMilConfig, *, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.stride = cfg.stride
        self.pool, self.lse_r = cfg.pool, cfg.lse_r
        self.loss, self.gce_q, self.bootstrap_beta = cfg.loss, cfg.gce_q, cfg.bootstrap_beta
        self.region_thresh = cfg.region_thresh
        self.trunk, trunk_channels = build_trunk(
            cfg.backbone, in_channels=in_channels, width=cfg.width, stride=cfg.stride
        )
        self.neck = nn.Sequential(
            Conv2dNormActivation(trunk_channels, cfg.channels, 1, activation_layer=nn.ReLU),
            Conv2dNormActivation(cfg.channels, cfg.channels, 3, groups=cfg.channels, activation_layer=nn.ReLU),
        )
        self.cell_logits = nn.Conv2d(cfg.channels, num_classes, 1)
        nn.init.normal_(self.cell_logits.weight, std=0.01)
        nn.init.constant_(self.cell_logits.bias, float(torch.logit(torch.tensor(PRIOR))))  # type: ignore[arg-type]

    def pool_cells(self, cells: Tensor) -> Tensor:
        """(B, K, h, w) cell logits -> (B, K) scan logits."""
        flat = cells.flatten(2)
        if self.pool == "max":
            return flat.amax(-1)
        if self.pool == "mean":
            return flat.mean(-1)
        # log(mean(exp(r z))) / r, shifted by the max for stability; `mean` (not a count taken
        # from the shape) keeps the cell count symbolic in the exported graph (any input size).
        top = flat.amax(-1, keepdim=True)
        return top[..., 0] + torch.log(torch.exp(self.lse_r * (flat - top)).mean(-1)) / self.lse_r

    def features(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(cell logits (B, K, h, w), scan logits (B, K), unit embedding (B, D))."""
        feats = self.neck(self.trunk(images))
        cells = self.cell_logits(feats)
        gem = feats.float().clamp(min=1e-6).pow(GEM_P).mean(dim=(2, 3)).pow(1.0 / GEM_P)
        return cells, self.pool_cells(cells.float()), F.normalize(gem, dim=1)

    def objective(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Mean loss over the known labels (0 when none is known)."""
        known = labels >= 0
        z, y = logits[known].float(), labels[known].float()
        if self.loss == "gce":
            per = gce_loss(z, y, self.gce_q)
        elif self.loss == "bootstrap":
            per = bootstrap_loss(z, y, self.bootstrap_beta)
        else:
            per = F.binary_cross_entropy_with_logits(z, y, reduction="none")
        return per.sum() / known.sum().clamp(min=1)

    def forward(
        self, images: Tensor, targets: list[dict[str, Tensor]] | None = None, image_labels: Tensor | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        cells, logits, embedding = self.features(images)
        if self.training:
            if image_labels is None:
                raise ValueError("image_labels are required in training mode")
            return {"image_labels": self.objective(logits, image_labels)}
        maps = cells.float().sigmoid()
        scores = logits.sigmoid()
        return [{"image_scores": s, "region_maps": m, "embedding": e} for s, m, e in zip(scores, maps, embedding)]


@register_model
def scan_mil(cfg: ScanMilConfig, *, num_classes: int, in_channels: int) -> ScanClassifier:
    """Box-free scan-level goods model: whole-scan MIL over region maps, with an embedding."""
    return ScanClassifier(cfg, num_classes=num_classes, in_channels=in_channels)
