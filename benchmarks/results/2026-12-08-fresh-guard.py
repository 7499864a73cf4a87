"""A model's out-of-domain guard on fresh sets never used to choose its settings (session 24).

    xray simulate --out data/fresh-realistic4-2041 --count 680 --seed 2041 --workers 1 --mismatch-rate 0.4 \
      --splits 0,0,1 --profile portal-dual-16bit,portal-single-16bit,export-8bit-jpeg,pseudo-colour
    xray simulate --out data/ood-broken-fresh-300 --count 300 --seed 2040 --workers 1 --mismatch-rate 0.4 \
      --splits 0,0,1 --profile broken
    PYTHONPATH=. python benchmarks/results/2026-12-08-fresh-guard.py MODEL_DIR
"""
import json
import sys

from xray.calibration import flag_rate, split_scans
from xray.engine import Engine

engine = Engine(sys.argv[1])
out = {}
for name, root in (("fresh in-domain (seed 2041, 680 test scans)", "data/fresh-realistic4-2041"),
                   ("fresh broken (seed 2040, 300)", "data/ood-broken-fresh-300")):
    out[name] = flag_rate(engine, split_scans(root, "test"), desc=name)
    print(name, json.dumps(out[name]))
