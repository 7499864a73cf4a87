#!/bin/bash
# Session 24: one epoch each, nothing else running: stage 1 new / old (one thread; /tmp/before is
# `git worktree add /tmp/before 39feb9a` with .venv and data linked) / stage 5 new; then the fresh guard.
cd /work/main
B=/work/main/.venv/bin
t() { /usr/bin/time -f "$1 wall %e user %U sys %S" "${@:2}"; }
rm -rf /tmp/ep/*
t s1-new $B/python -m xray train --data data/sim-realistic --model models/default-realistic.yaml --epochs 1 --out /tmp/ep/s1-new --no-progress
(cd /tmp/before && t s1-old $B/python -m xray train --data /work/main/data/sim-realistic --model models/default-realistic.yaml --epochs 1 --out /tmp/ep/s1-old --threads 1 --no-progress)
t s5-new $B/python -m xray train --data data/sim-realistic4 --model models/default-realistic4-ft.yaml --epochs 1 --init runs/stage5-weights.pt --out /tmp/ep/s5-new --no-progress
for r in s1-new s1-old s5-new; do echo "$r $(tail -1 /tmp/ep/$r/metrics.csv | cut -d, -f1-3)"; done
PYTHONPATH=. $B/python benchmarks/results/2026-12-08-fresh-guard.py models/default
echo ALL DONE
