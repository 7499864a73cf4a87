"""Model families registered by name (timm-style).

The registry imports no model file: each family module registers itself on import
(`@register_model`), and `xray.model.factory` imports the family modules before it builds
anything, so nothing imports in a circle. Build models with `xray.model.create_model`.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

# A family builds its model from its config section (one of `xray.config.ModelConfig`).
Builder = Callable[..., nn.Module]

_FAMILIES: dict[str, Builder] = {}


def register_model(fn: Builder) -> Builder:
    """Decorator: register a model family's builder under its function name."""
    if fn.__name__ in _FAMILIES:
        raise ValueError(f"model {fn.__name__!r} is registered twice")
    _FAMILIES[fn.__name__] = fn
    return fn


def registered() -> dict[str, Builder]:
    """The registered families by name (those whose modules have been imported)."""
    return dict(_FAMILIES)
