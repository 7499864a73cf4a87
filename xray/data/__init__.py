"""Datasets in the xray format (datasets/FORMAT.md) and their augmentation."""

from xray.data.augment import Augment, extract_patch, project
from xray.data.dataset import XrayDataset, collate, read_scan

__all__ = ["Augment", "XrayDataset", "collate", "extract_patch", "project", "read_scan"]
