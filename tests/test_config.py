"""The one typed config: unknown keys and bad values name their path, `_base_` merges at any
depth, the input mode brings its own normalisation, configs are versioned."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from xray.config import (
    CONFIG_VERSION,
    DEFAULT_NORM,
    XrayConfig,
    config_from_dict,
    load_config,
)
from xray.data.augment import Augment
from xray.errors import ConfigError

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"


def _write(path: Path, data: dict | str) -> Path:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"train": {"lrr": 0.1}}, "train.lrr"),
        ({"trian": {"lr": 0.1}}, "trian"),
        ({"model": {"name": "fcos_lite", "widht": 0.5}}, "model.widht"),
        ({"model": {"name": "fcos", "head_conv": 2}}, "model.head_conv"),
        ({"input": {"mode": "dual", "sizes": [64, 64]}}, "input.sizes"),
        ({"augment": {"tip_catgories": ["tobacco"]}}, "augment.tip_catgories"),
        ({"export": {"score_threshold": 0.5}}, "export.score_threshold"),
    ],
)
def test_unknown_key_names_its_path(tmp_path: Path, data: dict, path: str) -> None:
    file = _write(tmp_path / "x.yaml", data)
    with pytest.raises(ConfigError) as e:
        load_config(file)
    assert str(e.value) == f"{file}: unknown key '{path}'"


def test_wrong_types_and_values_name_their_path(tmp_path: Path) -> None:
    file = _write(tmp_path / "x.yaml", {"train": {"epochs": "many"}, "input": {"size": [100, 300]},
                                        "augment": {"hflip": 2.0}})
    with pytest.raises(ConfigError) as e:
        load_config(file)
    msg = str(e.value)
    assert msg.startswith(f"{file}: ")
    assert "'train.epochs'" in msg and "'input.size'" in msg and "multiples of 32" in msg and "'augment.hflip'" in msg
    with pytest.raises(ConfigError, match="'model.name'"):
        config_from_dict({"model": {"name": "yolo_v99"}})
    with pytest.raises(ConfigError, match="'train.image_labels'"):
        config_from_dict({"train": {"image_labels": "captions"}})


def test_base_merges_recursively_three_levels(tmp_path: Path) -> None:
    _write(tmp_path / "a.yaml", {"model": {"name": "fcos_lite", "width": 0.25, "strides": [16, 32, 64]},
                                 "train": {"epochs": 9, "lr": 1e-3, "batch_size": 3},
                                 "export": {"score_thresh": {"tobacco": 0.2, "vehicles": 0.4}}})
    (tmp_path / "sub").mkdir()
    # A base is found relative to the file that names it, at every level.
    _write(tmp_path / "sub" / "b.yaml", {"_base_": "../a.yaml", "train": {"lr": 5e-4},
                                         "export": {"score_thresh": {"tobacco": 0.25}}, "model": {"strides": [32, 64]}})
    c = _write(tmp_path / "sub" / "c.yaml", {"_base_": "b.yaml", "train": {"epochs": 2}})
    cfg = load_config(c)
    assert (cfg.train.epochs, cfg.train.lr, cfg.train.batch_size) == (2, 5e-4, 3)
    assert cfg.model.width == 0.25 and cfg.model.strides == (32, 64)  # lists replace, they do not merge
    assert cfg.export.score_thresh == {"tobacco": 0.25, "vehicles": 0.4}  # mappings merge at any depth
    assert cfg.train.warmup_iters == XrayConfig().train.warmup_iters  # untouched keys keep their default


def test_base_cycle_and_missing_base_are_errors(tmp_path: Path) -> None:
    _write(tmp_path / "a.yaml", {"_base_": "b.yaml"})
    _write(tmp_path / "b.yaml", {"_base_": "a.yaml"})
    with pytest.raises(ConfigError, match="_base_ cycle"):
        load_config(tmp_path / "a.yaml")
    _write(tmp_path / "self.yaml", {"_base_": "self.yaml"})
    with pytest.raises(ConfigError, match="own _base_"):
        load_config(tmp_path / "self.yaml")
    _write(tmp_path / "gone.yaml", {"_base_": "nowhere.yaml"})
    with pytest.raises(ConfigError, match="nowhere.yaml"):
        load_config(tmp_path / "gone.yaml")


def test_single_mode_child_of_xray_s_gets_single_normalisation(tmp_path: Path) -> None:
    base = load_config(MODELS_DIR / "xray_s.yaml")
    assert base.input.mean == (1.5, 1.5, 1.1)  # the base spells out its 3-channel normalisation
    child = _write(tmp_path / "single.yaml", f"_base_: {MODELS_DIR / 'xray_s.yaml'}\ninput: {{mode: single}}\n")
    cfg = load_config(child)
    assert cfg.input.mode == "single" and cfg.input.channels == 1
    assert (cfg.input.mean, cfg.input.std) == DEFAULT_NORM["single"]
    assert cfg.input.size == base.input.size and cfg.model == base.model  # the rest is inherited
    # A child that gives its own normalisation keeps it.
    own = _write(tmp_path / "own.yaml", f"_base_: {MODELS_DIR / 'xray_s.yaml'}\ninput: {{mode: single, mean: [2.0]}}\n")
    assert load_config(own).input.mean == (2.0,) and load_config(own).input.std == DEFAULT_NORM["single"][1]


def test_version(tmp_path: Path) -> None:
    assert XrayConfig().version == CONFIG_VERSION == 1
    with pytest.raises(ConfigError, match="version 2 is newer"):
        load_config(_write(tmp_path / "new.yaml", {"version": 2}))
    # Checkpoints written before configs had a version read as version 1.
    old = load_config(MODELS_DIR / "tiny.yaml").model_dump(mode="json")
    del old["version"]
    assert config_from_dict(old).version == 1


@pytest.mark.parametrize("name", sorted(p.name for p in MODELS_DIR.glob("*.yaml")))
def test_every_bundled_config_loads(name: str) -> None:
    cfg = load_config(MODELS_DIR / name)
    assert cfg.version == 1 and cfg.model.name in ("fcos_lite", "scan_mil")
    assert len(cfg.input.mean) == cfg.input.channels
    # The stored form (checkpoints, config.yaml) reads back to the same config.
    assert config_from_dict(yaml.safe_load(yaml.safe_dump(cfg.model_dump(mode="json")))) == cfg


def test_stage_configs_inherit_their_chain() -> None:
    ft5 = load_config(MODELS_DIR / "default-ft5.yaml")
    assert ft5.input.mode == "dual_ratio_detail" and ft5.input.size == (256, 768)  # default-ft, default
    assert (ft5.train.epochs, ft5.train.lr, ft5.train.eval_every) == (14, 2.0e-4, 2)  # ft5, ft5, ft3
    assert ft5.augment.tip_categories == ["tobacco", "firearms"]  # default-ft replaced default's list


def test_one_default_per_key() -> None:
    # The sections' users take their defaults from the config, not from their own tables.
    assert Augment().config == XrayConfig().augment
    with pytest.raises(ConfigError, match="unknown key 'augment.mosaic'"):
        Augment({"mosaic": 1.0})
