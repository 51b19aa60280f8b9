#!/usr/bin/env bash
# The main job behind `make demo`: real pedestrian video -> person dataset -> SAIP pretraining
# (ViT-Tiny, CPU budget; online ReID validation, health metrics and the collapse alarm on) ->
# backbone checkpoint -> frozen-feature ReID evaluation against the same backbone with random
# weights. Pictures of the views, reconstructions and search maps are
# written by SAIPVisualizationHook under the work dir.
#   PYTHON=.venv/bin/python SAIP_DEMO_DIR=work_dirs/demo_vtest tools/demo.sh
# Pretraining runs in mixed precision (tools/train.py --amp) where the hardware has it: float16
# AMP on a GPU, bf16 autocast on a CPU with bf16 units (avx512_bf16, AMX, Arm bf16); float32
# elsewhere. SAIP_DEMO_AMP=0 trains in float32 anyway, SAIP_DEMO_AMP=1 uses --amp anyway (on a
# CPU without bf16 units it is emulated and slower).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
DEMO_DIR="${SAIP_DEMO_DIR:-$ROOT/work_dirs/demo_vtest}"
DATA="${SAIP_DEMO_DATA:-$ROOT/data/vtest}"
CONFIG="$ROOT/configs/saip/saip_vit-tiny-p16_1xb32-demo_vtest-256x128.py"
start=$(date +%s)

AMP_ARGS=()
case "${SAIP_DEMO_AMP:-auto}" in
  0) ;;
  1) AMP_ARGS=(--amp) ;;
  auto)
    if "$PYTHON" -c 'import sys; sys.path.insert(0, sys.argv[1])
from saip_mm.engine.optimizers import native_amp_available
sys.exit(0 if native_amp_available() else 1)' "$ROOT" 2>/dev/null; then
      AMP_ARGS=(--amp)
    fi ;;
  *) echo "[demo] SAIP_DEMO_AMP must be 0, 1 or auto (got '$SAIP_DEMO_AMP')" >&2; exit 2 ;;
esac
if [ ${#AMP_ARGS[@]} -gt 0 ]; then
  PRECISION="mixed precision (--amp: bf16 autocast on CPU; SAIP_DEMO_AMP=0 for float32)"
else
  PRECISION="float32 (SAIP_DEMO_AMP=1 for bf16 autocast)"
fi

echo "[demo] 1/4 person dataset from the pedestrian video (reused when present): $DATA"
"$PYTHON" "$ROOT/tools/dataset_converters/video_to_persons.py" --out "$DATA" --frame-step 2

echo "[demo] 2/4 SAIP pretraining (ViT-Tiny, all five losses, $PRECISION) into $DEMO_DIR"
"$PYTHON" "$ROOT/tools/train.py" "$CONFIG" --work-dir "$DEMO_DIR" ${AMP_ARGS[@]+"${AMP_ARGS[@]}"} \
  --cfg-options "train_dataloader.dataset.data_root=$DATA/" \
  "val_dataloader.dataset.data_root=$DATA/reid/"

echo "[demo] 3/4 exporting the EMA teacher's backbone"
CKPT="$(cat "$DEMO_DIR/last_checkpoint")"
"$PYTHON" "$ROOT/tools/model_converters/saip_to_backbone.py" "$CKPT" \
  "$DEMO_DIR/saip_vit-tiny_vtest_backbone.pth" --force

echo "[demo] 4/4 frozen-feature ReID on the video's held-out time window"
"$PYTHON" "$ROOT/tools/analysis_tools/reid_frozen_eval.py" "$DATA/reid" \
  --checkpoint "SAIP (demo pretraining)=$DEMO_DIR/saip_vit-tiny_vtest_backbone.pth" \
  --random-baseline --query-downsample 1 2 3 4 mixed --out-dir "$DEMO_DIR"

echo "[demo] done in $(( $(date +%s) - start )) s. Results: $DEMO_DIR/reid_frozen_eval.{md,json};"
echo "[demo] pictures: $(ls -d "$DEMO_DIR"/*/vis_data/vis_image 2>/dev/null | tail -1)"
echo "[demo] curves (online validation mAP, RankMe, losses): $DEMO_DIR/curves.png"
