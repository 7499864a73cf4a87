"""Where the bundled model is: in an installed package, or in a checkout.

The model lives once in git, at `models/default` of the checkout. A wheel ships it as
data files (`[tool.setuptools.data-files]` in pyproject.toml) under
`<prefix>/share/xray/models/default`; a vendored copy may also sit inside the package at
`xray/models/default`. The first folder holding a `model.onnx` wins; a checkout comes before
the install prefix, because an editable install also copies the data files there, and that
copy goes stale when `make model` exports a new model into the checkout.
"""

from __future__ import annotations

import sys
from pathlib import Path

BUNDLED_NAME = "default"
PACKAGE_DIR = Path(__file__).resolve().parent
CHECKOUT_DIR = PACKAGE_DIR.parent / "models" / BUNDLED_NAME


def candidate_model_dirs(prefixes: tuple[str, ...] | None = None) -> list[Path]:
    """Where the bundled model is looked for, in order: inside the package, the checkout, the install prefixes."""
    prefixes = prefixes if prefixes is not None else tuple(dict.fromkeys((sys.prefix, sys.base_prefix)))
    return [
        PACKAGE_DIR / "models" / BUNDLED_NAME,
        CHECKOUT_DIR,
        *(Path(p) / "share" / "xray" / "models" / BUNDLED_NAME for p in prefixes),
    ]


def default_model_dir(candidates: list[Path] | None = None) -> Path:
    """The bundled model's folder: the first candidate with a `model.onnx`.

    When none has one, the checkout's folder, so that the error a caller raises names the
    place `make model` writes to.
    """
    for folder in candidates if candidates is not None else candidate_model_dirs():
        if (folder / "model.onnx").is_file():
            return folder
    return CHECKOUT_DIR
