"""The virtual scanner: physics-based simulation of cargo X-ray scans with ground truth."""
