#!/usr/bin/env bash
# The archive model's figures, every variant at once, on a lent GPU machine (16 cores):
# stand-in archives with 10 % and 20 % wrong declarations -> xray dataset import -> train
# archive_s in its two stages (models/archive_s-lowres.yaml, then models/archive_s.yaml from its
# weights) with soft bootstrapping (10 %, 20 %), with plain BCE and with GCE (10 %: what the
# robust loss buys) and from simulator-pretrained weights (10 %) -> export -> calibrate --swap
# (val) -> evaluate --swap (test, with the simple baseline). Results in $OUT/results.tgz.
#
# The device has its own torch; carry wheels (Python 3.12) of what it lacks in .whl/
# (pydantic, pydantic-core, annotated-types, typing-inspection, albumentations, albucore,
# simsimd, stringzilla, pycocotools, pydicom, pydantic-settings, python-dotenv, faiss-cpu),
# then run from the repository root:  bash benchmarks/device/archive_figures.sh
# Checked end to end on CPU with: OUT=/tmp/o COUNT=40 EPOCHS=1 DEV=cpu SKIP_PIP=1 bash ...
# (EPOCHS overrides both stages' epochs; unset, the configs' own.)
set -u
export PYTHONUNBUFFERED=1
T0=$(date +%s)
[ -n "${SKIP_PIP:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
export PYTHONPATH=/tmp/site:$PWD${EXTRA_PATH:-}
X="python3 -m xray.cli"
W=/tmp/w; mkdir -p $W $OUT
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee $OUT/machine.txt
python3 -c "import torch,torchvision,onnxruntime,cv2,numpy;print(torch.__version__,torchvision.__version__,onnxruntime.__version__,cv2.__version__,numpy.__version__)" | tee -a $OUT/machine.txt
stamp() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a $OUT/timeline.txt; }
python3 -c "import xray.cli, xray.train.loop, xray.export, xray.swap, xray.baseline, xray.calibration, xray.model.scan_classifier" || exit 4
stamp start
( $X simulate --out $W/pre --count ${COUNT:-3000} --seed 2031 --profile export-8bit-jpeg --mismatch-rate 0 \
    --splits 0.9,0.1,0 --workers 4 --quiet > $W/sim-pre.log 2>&1 ) &
PRE=$!
for n in 10 20; do
  ( $X simulate --archive --out $W/src$n --count ${COUNT:-3000} --seed 2030 --wrong-declarations 0.$n --workers 6 --quiet > $W/sim$n.log 2>&1 &&
    $X dataset import archive --scans $W/src$n/scans --table $W/src$n/declarations.csv --out $W/data$n --splits 0.75 0.1 0.15 --seed 0 --quiet > $W/import$n.log 2>&1 ) &
done
wait; stamp "archives made and imported"; tail -n 4 $W/import10.log $W/import20.log | tee -a $OUT/timeline.txt
run() {  # name data loss [init]: stage 1 (from init, or scratch), then stage 2 from stage 1
  local name=$1 data=$2 loss=$3 init=${4:-}
  sed "s/^  loss: bootstrap .*/  loss: $loss/" models/archive_s.yaml > $W/$name.yaml
  sed "s#^_base_: archive_s.yaml#_base_: $W/$name.yaml#" models/archive_s-lowres.yaml > $W/$name-low.yaml
  timeout ${TRAIN_S:-300} $X train --data $W/$data --model $W/$name-low.yaml --out $W/run-$name-low --device ${DEV:-cuda} \
     --workers 4 ${EPOCHS:+--epochs $EPOCHS} --no-progress ${init:+--init $init} > $W/train-$name-low.log 2>&1
  echo "train $name-low rc=$?" >> $W/train-$name-low.log
  [ -f $W/run-$name-low/best.pt ] || return
  timeout ${TRAIN_S:-300} $X train --data $W/$data --model $W/$name.yaml --out $W/run-$name --device ${DEV:-cuda} --workers 4 \
     ${EPOCHS:+--epochs $EPOCHS} --no-progress --init $W/run-$name-low/best.pt > $W/train-$name.log 2>&1
  echo "train $name rc=$?" >> $W/train-$name.log
  [ -f $W/run-$name/best.pt ] || return
  $X export $W/run-$name/best.pt --out $W/model-$name --data $W/$data --split val --latency-runs 0 > $W/export-$name.log 2>&1
  $X calibrate --swap --model $W/model-$name --data $W/$data --split val --false-alarm 0.05 --quiet > $W/calib-$name.log 2>&1
  $X evaluate --swap --model $W/model-$name --data $W/$data --split test --archive-truth $W/src${data#data}/truth_loaded.csv \
     --out $W/swap-$name --quiet > $W/swap-$name.log 2>&1
}
pretrained() {  # image labels from the simulator's boxes (what is loaded), then the archive's declarations
  stamp "pretraining set made"
  sed "s#^_base_: archive_s-lowres.yaml#_base_: $PWD/models/archive_s-lowres.yaml#" models/archive_s-sim.yaml > $W/pre.yaml
  timeout ${PRE_S:-150} $X train --data $W/pre --model $W/pre.yaml --out $W/run-pre --device ${DEV:-cuda} --workers 4 \
     --epochs ${PRE_EPOCHS:-6} --no-progress > $W/train-pre.log 2>&1; echo "train pre rc=$?" >> $W/train-pre.log
  [ -f $W/run-pre/best.pt ] && run pre-boot10 data10 bootstrap $W/run-pre/best.pt
}
run boot10 data10 bootstrap & run boot20 data20 bootstrap & run bce10 data10 bce & run gce10 data10 gce & pretrained &
wait; stamp "trained and evaluated"
R=$W/results; mkdir -p $R
for n in boot10 boot20 bce10 gce10 pre-boot10; do
  mkdir -p $R/$n
  cp $W/run-$n-low/metrics.csv $R/$n/metrics-low.csv 2>/dev/null
  cp $W/run-$n/metrics.csv $W/train-$n-low.log $W/train-$n.log $W/export-$n.log $W/calib-$n.log $R/$n/ 2>/dev/null
  cp $W/swap-$n/*.json $W/swap-$n/*.png $R/$n/ 2>/dev/null; cp $W/swap-$n.log $R/$n/ 2>/dev/null
  cp $W/model-$n/model.json $R/$n/ 2>/dev/null
done
cp $W/*.log $R/ 2>/dev/null; cp $W/run-pre/metrics.csv $R/pre-metrics.csv 2>/dev/null
mkdir -p $R/model; cp $W/model-boot10/model.onnx $W/model-boot10/model.json $W/run-boot10/best.pt $R/model/ 2>/dev/null
tar czf $OUT/results.tgz -C $W results
stamp done; cp $OUT/timeline.txt $OUT/timeline.txt 2>/dev/null
