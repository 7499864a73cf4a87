"""Building models: from a family's arguments, from a config, from a training checkpoint.

This module imports every family module, so that they are registered before anything is
built; `create_model` is the only constructor.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from pydantic import TypeAdapter, ValidationError
from torch import nn

import xray.model.detector  # noqa: F401  (registers the FCOS families)
import xray.model.scan_classifier  # noqa: F401  (registers the scan-level family)
from xray.config import ModelConfig, XrayConfig, config_from_dict, describe
from xray.errors import ConfigError
from xray.model.registry import registered

# Validates one model section against the family its `name` picks.
_MODEL_ADAPTER: TypeAdapter[Any] = TypeAdapter(ModelConfig)


def list_models() -> list[str]:
    """Names of the registered model families."""
    return sorted(registered())


def model_config(name: str, **kwargs: Any) -> Any:
    """A family's config section from its name and keyword arguments (defaults filled in).

    Raises:
        ConfigError: an unknown family or argument, or a bad value, naming it.
    """
    if name not in registered():
        raise ConfigError(f"unknown model {name!r}; registered: {', '.join(list_models())}")
    try:
        return _MODEL_ADAPTER.validate_python({"name": name, **kwargs})
    except ValidationError as e:
        raise ConfigError(describe(e, f"model {name!r}")) from e


def create_model(name: str, *, num_classes: int, in_channels: int, **kwargs: Any) -> nn.Module:
    """Build a model of a registered family; `kwargs` are the family's config keys.

    Raises:
        ConfigError: for an unknown family or arguments the family does not take.
    """
    cfg = model_config(name, **kwargs)
    return registered()[name](cfg, num_classes=num_classes, in_channels=in_channels)


def build_model(cfg: XrayConfig | dict[str, Any], *, num_classes: int) -> nn.Module:
    """Build the model a config describes, for `num_classes` goods categories."""
    cfg = config_from_dict(cfg)
    return registered()[cfg.model.name](cfg.model, num_classes=num_classes, in_channels=cfg.input.channels)


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A training checkpoint's dict.

    Raises:
        ConfigError: the file cannot be read as a checkpoint.
    """
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as e:
        # An exported model (its folder or model.onnx) is the usual wrong thing to pass: name it.
        exported = Path(path).is_dir() or Path(path).suffix == ".onnx"
        hint = (
            " (an exported model: this takes a training checkpoint such as runs/NAME/best.pt or a model's weights.pt)"
        )
        raise ConfigError(f"{path}: cannot read checkpoint{hint if exported else ''}: {e}") from e
    if not isinstance(ckpt, dict):
        raise ConfigError(f"{path}: not an xray training checkpoint")
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any] | str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model from a training checkpoint (a path or the loaded dict).

    Returns:
        (model in eval mode on the CPU, checkpoint dict); the checkpoint's `config` comes
        back validated, with every default filled in (checkpoints without `version` are
        version 1), as plain data: `config_from_dict(ckpt["config"])` is its `XrayConfig`.
    """
    if not isinstance(ckpt, dict):
        ckpt = load_checkpoint(ckpt)
    for key in ("config", "classes", "model"):
        if key not in ckpt:
            raise ConfigError(f"checkpoint lacks {key!r}; is it an xray training checkpoint?")
    cfg = config_from_dict(ckpt["config"], "checkpoint config")
    model = build_model(cfg, num_classes=len(ckpt["classes"]))
    model.load_state_dict(ckpt["model"])
    return model.eval(), {**ckpt, "config": cfg.model_dump(mode="json")}


def bn_held(ckpt: dict[str, Any]) -> bool:
    """Whether weights must train with BatchNorm held (`train.freeze_bn`): their BatchNorm statistics
    are placeholders, because the weights come from an exported graph with BatchNorm folded
    (`weights.pt` with `freeze_bn`), or from a run that trained that way."""
    config = ckpt.get("config")
    stored = config.get("train") if isinstance(config, dict) else None
    return bool(ckpt.get("freeze_bn") or (isinstance(stored, dict) and stored.get("freeze_bn")))
