"""Training, evaluation and plots of goods detectors (used by train.py and `xray evaluate`)."""
