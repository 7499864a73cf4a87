"""Model families registered by name (timm-style) and model configs as YAML data.

A model config is a YAML file with sections:

    model:  {name: <registered family>, ...keyword arguments of the family}
    input:  {mode, size, mean, std, ...}        # xray.model.preprocess.InputSpec
    train:  {...}                               # read by xray.train.loop
    augment: {...}                              # read by xray.data.augment
    export: {...}                               # read by xray.export

A config may start with `_base_: other.yaml` (relative to itself) and override keys of
the base's sections, e.g. a fine-tuning stage that changes only `train` and `augment`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from xray.errors import ConfigError

_FAMILIES: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register a model factory under its function name."""
    if fn.__name__ in _FAMILIES:
        raise ValueError(f"model {fn.__name__!r} is registered twice")
    _FAMILIES[fn.__name__] = fn
    return fn


def _load_families() -> None:
    # The families live in their own modules and register themselves on import.
    import xray.model.detector  # noqa: F401


def list_models() -> list[str]:
    """Names of the registered model families."""
    _load_families()
    return sorted(_FAMILIES)


def create_model(name: str, **cfg: Any) -> nn.Module:
    """Build a model of a registered family from keyword arguments.

    Raises:
        ConfigError: for an unknown family or arguments the family does not take.
    """
    _load_families()
    if name not in _FAMILIES:
        raise ConfigError(f"unknown model {name!r}; registered: {', '.join(sorted(_FAMILIES))}")
    try:
        return _FAMILIES[name](**cfg)
    except TypeError as e:
        raise ConfigError(f"model {name!r}: {e}") from e


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a model config YAML (see the module docstring) into a dict."""
    try:
        cfg = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read model config: {e}") from e
    if isinstance(cfg, dict) and "_base_" in cfg:
        # A config may name a base (relative to itself) and override some keys of its sections.
        base_path = Path(path).parent / str(cfg.pop("_base_"))
        if base_path.resolve() == Path(path).resolve():
            raise ConfigError(f"{path}: a config cannot be its own _base_")
        base = load_config(base_path)
        for section, values in cfg.items():
            if isinstance(values, dict) and isinstance(base.get(section), dict):
                base[section] = {**base[section], **values}
            else:
                base[section] = values
        cfg = base
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model"), dict) or "name" not in cfg["model"]:
        raise ConfigError(f"{path}: a model config needs a 'model' section with a 'name'")
    for section in ("input", "train", "augment", "export"):
        cfg.setdefault(section, {})
        if not isinstance(cfg[section], dict):
            raise ConfigError(f"{path}: section {section!r} must be a mapping")
    return cfg


def build_model(cfg: dict[str, Any], *, num_classes: int) -> nn.Module:
    """Build the model a config describes, for `num_classes` goods categories."""
    from xray.model.preprocess import InputSpec

    spec = InputSpec.from_dict(cfg.get("input", {}))
    kwargs = dict(cfg["model"])
    name = kwargs.pop("name")
    return create_model(name, num_classes=num_classes, in_channels=spec.channels, **kwargs)


def model_from_checkpoint(ckpt: dict[str, Any] | str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model from a training checkpoint (a path or the loaded dict).

    Returns:
        (model in eval mode on the CPU, checkpoint dict)
    """
    if not isinstance(ckpt, dict):
        try:
            ckpt = torch.load(ckpt, map_location="cpu", weights_only=False)
        except (OSError, RuntimeError, EOFError) as e:
            raise ConfigError(f"{ckpt}: cannot read checkpoint: {e}") from e
    for key in ("config", "classes", "model"):
        if key not in ckpt:
            raise ConfigError(f"checkpoint lacks {key!r}; is it an xray training checkpoint?")
    model = build_model(ckpt["config"], num_classes=len(ckpt["classes"]))
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt
