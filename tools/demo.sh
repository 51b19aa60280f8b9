#!/usr/bin/env bash
# The main job behind `make demo`.
# PLACEHOLDER until the SAIP demo lands: a short smoke run of the training stack on images it
# generates (toy ViT classifier, tools/train.py then tools/test.py). It learns nothing useful.
#   PYTHON=.venv/bin/python SAIP_DEMO_DIR=work_dirs/demo tools/demo.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
DEMO_DIR="${SAIP_DEMO_DIR:-$ROOT/work_dirs/demo}"
CONFIG="$ROOT/configs/toy/toy_vit-tiny_1xb2-2iter_generated-32x32.py"
DATA="$DEMO_DIR/images"
ITERS=10

"$PYTHON" "$ROOT/tools/misc/generate_toy_images.py" "$DATA" --per-class 8 --size 32
DATA_OPTIONS=("train_dataloader.dataset.data_root=$DATA" "test_dataloader.dataset.data_root=$DATA")

echo "[demo] training the toy config for $ITERS iterations into $DEMO_DIR/train"
"$PYTHON" "$ROOT/tools/train.py" "$CONFIG" --work-dir "$DEMO_DIR/train" \
  --cfg-options train_cfg.max_iters=$ITERS "${DATA_OPTIONS[@]}"

echo "[demo] testing the last checkpoint"
"$PYTHON" "$ROOT/tools/test.py" "$CONFIG" "$DEMO_DIR/train/iter_${ITERS}.pth" \
  --work-dir "$DEMO_DIR/test" --out "$DEMO_DIR/test/predictions.pkl" \
  --cfg-options "${DATA_OPTIONS[@]}"
echo "[demo] done: logs and checkpoints in $DEMO_DIR"
