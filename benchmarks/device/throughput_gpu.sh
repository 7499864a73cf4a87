#!/usr/bin/env bash
# Issue 17's GPU figures on a lent GPU machine (one H200, 16 cores), in one call: a few minutes, at most
# ~9.5 (each step has its own timeout, ENGINE_S=220 EAGER_S=60 SIM_S=60 DDP_S=90 RESUME_S=60 DDP_CPU_S=60;
# give the call timeout_s 600):
#  1. the engine per execution provider (CPU, CUDA, TensorRT), decode included: stage p50s, concurrent
#     streams, and the model stage at batch 1/8/32 (`python -m benchmarks --only engine`);
#  2. the model stage in eager torch on CUDA at batch 1/8/32, FP32 and FP16 (needs no onnxruntime-gpu);
#  3. a DDP training smoke: torchrun, 1 process per GPU (nccl), default config, 2 epochs, then resumed
#     for a 3rd; and 2 processes on the CPU (gloo) through `xray train --ddp 2`.
# Results: $OUT/summary.md (the tables), $OUT/results.tgz (JSON, logs, metrics), $OUT/timeline.txt.
#
# Carry in .whl/ the wheels (Python 3.12) that the device image lacks, as for archive_figures.sh:
# pydantic, pydantic-core, annotated-types, typing-inspection, albumentations, albucore, simsimd,
# stringzilla, pycocotools, pydicom, pydantic-settings, python-dotenv (and pyspng if the decoder uses it).
# The device's onnxruntime is the CPU build, so the CUDA and TensorRT rows say "skipped: no GPU" unless
# onnxruntime-gpu (CUDA 13 build, 1.31.1: 256 MB, over one call's 64 MiB) is staged first, in back-to-back
# calls on the same warm machine (ignored paths already there are kept between calls):
#   here:  pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 \
#            -d /tmp/ortgpu onnxruntime-gpu==1.31.1
#          W=$(ls /tmp/ortgpu/*.whl); mkdir -p .whl-ort; split -b 60m $W .whl-ort/$(basename $W).part.
#          (cd /tmp/ortgpu && sha256sum *.whl) > .whl-ort/sha256; echo /.whl-ort/ >> .git/info/exclude
#   then one call per part with carry [".whl-ort/NAME.part.aa"] (then .ab, ...) and command `true`,
#   the last with carry [".whl", ".whl-ort/NAME.part.ae", ".whl-ort/sha256"] and this script.
# TensorRT also needs the TensorRT libraries (libnvinfer), which the image does not have: its row then
# says why it could not start.
#
# Checked end to end on CPU with:
#   OUT=/tmp/o SKIP_PIP=1 DEV=cpu QUICK=1 COUNT=16 BATCH=2 DDP_MODEL=models/tiny.yaml bash benchmarks/device/throughput_gpu.sh
set -u
export PYTHONUNBUFFERED=1
T0=$(date +%s)
REPO=$PWD; W=/tmp/w-gpu; R=$W/results; mkdir -p $R $OUT
stamp() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a $OUT/timeline.txt; }
[ -n "${SKIP_PIP:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
export PYTHONPATH=/tmp/site:$PWD${EXTRA_PATH:-}
first=$(ls .whl-ort/*.whl.part.aa 2>/dev/null | head -1)
if [ -n "$first" ]; then
  name=$(basename "${first%.part.aa}")
  cat .whl-ort/$name.part.* > /tmp/$name && (cd /tmp && sha256sum -c $REPO/.whl-ort/sha256) \
    && python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/ortgpu /tmp/$name \
    && export PYTHONPATH=/tmp/ortgpu:$PYTHONPATH && stamp "onnxruntime-gpu $name installed" || stamp "onnxruntime-gpu: parts incomplete"
fi
# onnxruntime-gpu finds CUDA and cuDNN in torch's nvidia-* wheels through the loader path.
NVLIB=$(python3 -c "import glob,os,nvidia; print(':'.join(sorted({os.path.dirname(p) for d in nvidia.__path__ for p in glob.glob(d+'/**/lib*.so*', recursive=True)})))" 2>/dev/null)
export LD_LIBRARY_PATH=${NVLIB}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch,onnxruntime as o,cv2,numpy;print('torch',torch.__version__,'cuda',torch.cuda.is_available(),'| onnxruntime',o.__version__,o.get_available_providers(),'| cv2',cv2.__version__,'| numpy',numpy.__version__)"
  nproc; } 2>&1 | tee $OUT/machine.txt
python3 -c "import xray.cli, xray.train.loop, xray.train.distributed, benchmarks.providers" || exit 4
stamp start
Q=${QUICK:+--quick}

# 1. the engine per provider (the benchmark's engine section; its JSON records the provider actually used)
timeout ${ENGINE_S:-220} python3 -m benchmarks --only engine $Q --out $R/bench --cache $W/cache > $R/bench.log 2>&1
stamp "engine section rc=$?"

# 2. the model stage in eager torch on CUDA
timeout ${EAGER_S:-60} python3 -c "
import json, pathlib
from benchmarks.providers import torch_cuda
print(json.dumps(torch_cuda(pathlib.Path('models/default'), n=${EAGER_N:-30}), indent=2))" > $R/torch_cuda.json 2> $R/torch_cuda.log
stamp "torch cuda rc=$?"

# 3. DDP training smoke
X="python3 -m xray"
timeout ${SIM_S:-60} $X simulate --out $W/sim --count ${COUNT:-96} --seed 17 --splits 0.9,0.1,0 --workers 8 --quiet > $R/sim.log 2>&1
stamp "simulated rc=$?"
TR="python3 -m torch.distributed.run --standalone --nproc_per_node ${GPUS:-1} -m xray train --data $W/sim --model ${DDP_MODEL:-models/default.yaml}"
timeout ${DDP_S:-90} $TR --out $W/ddp-gpu --device ${DEV:-cuda} --epochs 2 --batch-size ${BATCH:-16} --workers 4 --no-progress > $R/ddp-gpu.log 2>&1
stamp "ddp ${DEV:-cuda} x ${GPUS:-1}: 2 epochs rc=$?"
timeout ${RESUME_S:-60} $TR --out $W/ddp-gpu --device ${DEV:-cuda} --epochs 3 --batch-size ${BATCH:-16} --workers 4 --no-progress --resume >> $R/ddp-gpu.log 2>&1
stamp "ddp ${DEV:-cuda}: resumed to 3 epochs rc=$?"
timeout ${DDP_CPU_S:-60} $X train --ddp 2 --data $W/sim --model models/tiny.yaml --out $W/ddp-cpu --device cpu --epochs 1 --threads 4 --no-progress > $R/ddp-cpu.log 2>&1
stamp "ddp cpu x 2 (gloo) rc=$?"
for d in ddp-gpu ddp-cpu; do mkdir -p $R/$d; cp $W/$d/metrics.csv $W/$d/summary.json $R/$d/ 2>/dev/null; done

python3 - > $OUT/summary.md 2>> $R/summary.log <<EOF
import csv, glob, json, pathlib
R = pathlib.Path("$R")
md = sorted(glob.glob(str(R / "bench" / "*.md")))
print(open(md[-1]).read() if md else "engine section: no report (see bench.log)")
try:
    t = json.loads((R / "torch_cuda.json").read_text())
    if "skipped" in t:
        print("\n### Model stage, eager torch on CUDA: skipped — " + t["skipped"])
    else:
        print(f"\n### Model stage, eager torch on CUDA ({t['device']}, weights: {t['weights']})\n")
        print("| batch | FP16 | p50 ms | p95 ms | scans/s |\n|---|---|---|---|---|")
        for r in t["rows"]:
            print(f"| {r['batch']} | {r['fp16']} | {r['run_ms']['p50']} | {r['run_ms']['p95']} | {r['scans_per_second']} |")
except (OSError, ValueError) as e:
    print(f"torch cuda: no result ({e})")
for d in ("ddp-gpu", "ddp-cpu"):
    rows = list(csv.DictReader(open(R / d / "metrics.csv"))) if (R / d / "metrics.csv").is_file() else []
    print(f"\n### DDP smoke {d}: {len(rows)} epochs in metrics.csv")
    for r in rows:
        print(f"- epoch {r['epoch']}: loss {float(r['loss']):.3f}, {r['time_s']} s")
    s = R / d / "summary.json"
    if s.is_file():
        j = json.loads(s.read_text())
        print(f"- {j['world_size']} process(es) on {j['device']}, {j['epochs']} epochs; best val mAP50 {(j['best'] or {}).get('mAP50')}")
EOF
stamp done
tar czf $OUT/results.tgz -C $W results
