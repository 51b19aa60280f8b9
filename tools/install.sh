#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment with the verified OpenMMLab stack of
# docs/ENVIRONMENT.md. Idempotent: a second run with everything in place rebuilds nothing.
#
#   tools/install.sh            # venv at ./.venv (override with SAIP_VENV=/path)
#   SAIP_CACHE=/path tools/install.sh   # where the built mmcv wheel is kept (default ~/.cache/saip_mm)
#
# Why each pin: torch 2.14.1/torchvision 0.29.1 are the newest pair that import together here;
# mmcv 2.1.0 is the newest that mmdet 3.3.0 and mmseg 1.2.2 accept, and has no wheel for this
# torch, so it is built once from its sdist (C++20 flag fix) and cached outside the checkout.
set -euo pipefail

# Physical path (-P): it is compared with where Python imports saip_mm from (a real path).
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
VENV="${SAIP_VENV:-$ROOT/.venv}"
CACHE="${SAIP_CACHE:-$HOME/.cache/saip_mm}"
PYTHON_BIN="${PYTHON:-python3.11}"
MAX_JOBS="${MAX_JOBS:-2}"

TORCH_VERSION=2.14.1
TORCHVISION_VERSION=0.29.1
MMENGINE_VERSION=0.10.7
MMCV_VERSION=2.1.0
MMPRETRAIN_VERSION=1.2.0
MMPOSE_VERSION=1.3.2
MMDET_VERSION=3.3.0
MMSEG_VERSION=1.2.2
OPENMIM_VERSION=0.3.9

CURRENT_STEP="start"
on_error() {
  echo "" >&2
  echo "[install] FAILED at step: ${CURRENT_STEP}" >&2
  case "$CURRENT_STEP" in
    venv) echo "[install] Is ${PYTHON_BIN} installed with its venv module? Set PYTHON=/path/to/python3.11." >&2 ;;
    mmcv-build) echo "[install] The mmcv ${MMCV_VERSION} build failed; the end of its log is above (all of it: ${CACHE}/mmcv-build.log). It needs gcc/g++ and the Python headers. Rerun to start the build again." >&2 ;;
    mim) echo "[install] openmim did not install with numpy<2, pandas<3, setuptools>=77,<81 (a plain 'pip install openmim' upgrades numpy and downgrades setuptools); read the pip message above." >&2 ;;
    mmcv-download) echo "[install] Could not fetch the mmcv ${MMCV_VERSION} sdist; check that the package index is reachable." >&2 ;;
    verify) echo "[install] The stack installed but a check failed; remove ${VENV} and rerun to start clean." >&2 ;;
    *) echo "[install] Read the pip message above, fix the cause, then rerun tools/install.sh (finished steps are skipped)." >&2 ;;
  esac
}
trap on_error ERR

step() { CURRENT_STEP="$1"; echo "[install] step: $1 — $2"; }

# A stamp records what the environment was built from; when it matches and the checks pass,
# nothing is reinstalled.
stamp_inputs() {
  cat "$ROOT/tools/install.sh" "$ROOT/tools/misc/install_develop.py" "$ROOT/setup.py" \
    "$ROOT"/requirements/*.txt | sha256sum | cut -d' ' -f1
}
STAMP="$VENV/.saip_mm_stamp"

# What the environment gives from a neutral folder (no PYTHONPATH, not the checkout): run from
# the checkout, `import saip_mm` would find the checkout's folder whatever site-packages says.
neutral_python() {
  (cd / && env -u PYTHONPATH SAIP_ROOT="$ROOT" "$VENV/bin/python" "$@")
}

# The checkout the develop install points to (found without importing saip_mm), or nothing.
# A venv shared by several checkouts holds one develop install: the last one installed.
installed_checkout() {
  neutral_python -c 'import importlib.util, os.path as osp
spec = importlib.util.find_spec("saip_mm")
print(osp.dirname(osp.dirname(osp.realpath(spec.origin))) if spec and spec.origin else "")' \
    2>/dev/null || true
}

verify() {
  neutral_python - <<'PY'
import torch
from mmcv.ops import nms, roi_align  # noqa: F401  compiled ops must be there
boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [20., 20., 30., 30.]])
scores = torch.tensor([0.9, 0.8, 0.7])
_, keep = nms(boxes, scores, iou_threshold=0.5)
assert keep.tolist() == [0, 2], keep
import mmengine, mmcv, mmpretrain, mmpose, mmdet, mmseg, saip_mm  # noqa: F401,E401
import lmdb, numpy, pandas, setuptools  # noqa: E401,F401  (openmim's pins held; lmdb: LUPerson)
import timm  # noqa: F401  (saip_to_backbone.py --to timm checks its output in timm)
from packaging.version import Version
assert Version(numpy.__version__) < Version('2'), f'numpy {numpy.__version__} is not < 2'
assert Version(pandas.__version__) < Version('3'), f'pandas {pandas.__version__} is not < 3'
assert Version('77') <= Version(setuptools.__version__) < Version('81'), setuptools.__version__
from mim.utils import get_installed_path  # how `mim train saip_mm` finds tools/train.py
import os
import os.path as osp
package = osp.join(os.environ['SAIP_ROOT'], 'saip_mm')
assert osp.dirname(osp.realpath(saip_mm.__file__)) == package, \
    f'saip_mm imports from {osp.dirname(saip_mm.__file__)}, not from this checkout ({package})'
assert osp.realpath(get_installed_path('saip_mm')) == package, \
    f'mim finds saip_mm in {get_installed_path("saip_mm")}, not in this checkout ({package})'
mim_train = osp.join(get_installed_path('saip_mm'), '.mim', 'tools', 'train.py')
assert osp.isfile(mim_train), f'mim would run {mim_train}, which does not exist'
mim_index = osp.join(get_installed_path('saip_mm'), '.mim', 'model-index.yml')
assert osp.isfile(mim_index), f'`mim search saip_mm` would not find {mim_index}'
print(f'[install] verified: torch {torch.__version__}, mmcv {mmcv.__version__} (ops ok), '
      f'mmengine {mmengine.__version__}, mmpretrain {mmpretrain.__version__}, mmpose {mmpose.__version__}, '
      f'mmdet {mmdet.__version__}, mmseg {mmseg.__version__}, saip_mm {saip_mm.__version__}, '
      f'mim finds {mim_train}')
PY
}

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(stamp_inputs)" ]; then
  # The stamp says nothing about which checkout the develop install points to: in a venv
  # shared with another checkout, it may be that one's code that every `import saip_mm` runs.
  INSTALLED="$(installed_checkout)"
  if [ "$INSTALLED" != "$ROOT" ]; then
    echo "[install] saip_mm in $VENV is the develop install of ${INSTALLED:-no checkout}, not of this checkout ($ROOT): reinstalling it for $ROOT."
    step project "saip_mm from $ROOT in develop mode (replaces ${INSTALLED:-nothing})"
    neutral_python "$ROOT/tools/misc/install_develop.py"
  fi
  CURRENT_STEP="verify"
  if verify; then
    if [ "$INSTALLED" = "$ROOT" ]; then
      echo "[install] environment at $VENV is up to date: nothing rebuilt, nothing reinstalled."
    else
      echo "[install] environment at $VENV is up to date; its develop install now points to $ROOT (it pointed to ${INSTALLED:-no checkout})."
    fi
    exit 0
  fi
  echo "[install] stamp matches but the checks failed: reinstalling."
fi

step venv "virtual environment at $VENV"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON_BIN" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check)

step build-tools "pip, setuptools<81, wheel, ninja, numpy<2"
"${PIP[@]}" -q --upgrade pip 'setuptools<81' wheel ninja 'numpy<2'

step torch "torch ${TORCH_VERSION} + torchvision ${TORCHVISION_VERSION}"
"${PIP[@]}" -q "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}"

step mmengine "mmengine ${MMENGINE_VERSION}"
"${PIP[@]}" -q "mmengine==${MMENGINE_VERSION}" 'numpy<2'

# ---- mmcv with compiled ops, from the wheel cache when possible ----------------------------
if command -v nvcc >/dev/null 2>&1 && "$VENV/bin/python" -c 'import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  FLAVOUR="cuda$("$VENV/bin/python" -c 'import torch; print(torch.version.cuda)')"
else
  FLAVOUR=cpu
fi
PYTAG="$("$VENV/bin/python" -c 'import sys; print(f"py{sys.version_info[0]}{sys.version_info[1]}")')"
WHEEL_DIR="$CACHE/wheels/mmcv-${MMCV_VERSION}_torch-${TORCH_VERSION}_${PYTAG}_${FLAVOUR}"

have_mmcv_ops() {
  "$VENV/bin/python" -c "import mmcv, sys; from mmcv.ops import nms; sys.exit(0 if mmcv.__version__ == '${MMCV_VERSION}' else 1)" >/dev/null 2>&1
}

if have_mmcv_ops; then
  step mmcv "mmcv ${MMCV_VERSION} with ops already installed (not rebuilt)"
else
  if ! ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
    step mmcv-build "building mmcv ${MMCV_VERSION} (${FLAVOUR}) from its sdist, once; it is cached afterwards"
    BUILD="$CACHE/build"
    rm -rf "$BUILD" && mkdir -p "$BUILD" "$WHEEL_DIR"
    CURRENT_STEP="mmcv-download"
    # No build isolation even for the download: pip prepares metadata by running setup.py,
    # which imports pkg_resources (absent from a fresh isolated setuptools).
    "$VENV/bin/python" -m pip download --disable-pip-version-check -q --no-deps --no-binary :all: \
      --no-build-isolation "mmcv==${MMCV_VERSION}" -d "$BUILD"
    CURRENT_STEP="mmcv-build"
    tar -xzf "$BUILD"/mmcv-${MMCV_VERSION}.tar.gz -C "$BUILD"
    # torch >= 2.10 headers require C++20; mmcv 2.1.0 hard-codes c++14/c++17.
    sed -i -E 's/-std=c\+\+1[47]/-std=c++20/g' "$BUILD/mmcv-${MMCV_VERSION}/setup.py"
    export MMCV_WITH_OPS=1 MAX_JOBS
    if [ "${FLAVOUR}" != cpu ]; then export FORCE_CUDA=1; fi
    # The compile runs in the background with its log in a file; the foreground prints one
    # progress line with the elapsed time (redrawn on a terminal, once a minute in a CI log).
    BUILD_LOG="$CACHE/mmcv-build.log"
    (cd "$BUILD/mmcv-${MMCV_VERSION}" && \
      exec "$VENV/bin/python" -m pip wheel --disable-pip-version-check --no-build-isolation --no-deps . \
        -w "$WHEEL_DIR.tmp") >"$BUILD_LOG" 2>&1 &
    BUILD_PID=$!
    START=$SECONDS
    MESSAGE="[install] building mmcv ${MMCV_VERSION} (one time, ~20-25 min on 2 cores; MAX_JOBS=${MAX_JOBS})..."
    while kill -0 "$BUILD_PID" 2>/dev/null; do
      ELAPSED="$(( (SECONDS - START) / 60 ))m$(printf '%02d' $(( (SECONDS - START) % 60 )))s"
      if [ -t 1 ]; then
        printf '\r%s %s elapsed ' "$MESSAGE" "$ELAPSED"
      elif [ $(( (SECONDS - START) % 60 )) -lt 5 ]; then
        echo "$MESSAGE $ELAPSED elapsed"
      fi
      sleep 5
    done
    if [ -t 1 ]; then echo; fi
    if ! wait "$BUILD_PID"; then
      tail -n 40 "$BUILD_LOG" >&2
      false
    fi
    echo "[install] mmcv ${MMCV_VERSION} built in $(( (SECONDS - START) / 60 ))m$(printf '%02d' $(( (SECONDS - START) % 60 )))s (log: $BUILD_LOG)"
    mv "$WHEEL_DIR.tmp"/mmcv-*.whl "$WHEEL_DIR"/ && rm -rf "$WHEEL_DIR.tmp" "$BUILD"
  else
    step mmcv "installing cached wheel from $WHEEL_DIR (not rebuilt)"
  fi
  "${PIP[@]}" -q --no-deps --force-reinstall "$WHEEL_DIR"/mmcv-*.whl
  # mmcv's own runtime needs (its wheel was installed without deps)
  "${PIP[@]}" -q addict packaging pillow pyyaml yapf opencv-python 'numpy<2'
fi

step mmpretrain "mmpretrain ${MMPRETRAIN_VERSION}"
"${PIP[@]}" -q "mmpretrain==${MMPRETRAIN_VERSION}" "mmcv==${MMCV_VERSION}" 'numpy<2'

step mmdet-mmseg "mmdet ${MMDET_VERSION}, mmsegmentation ${MMSEG_VERSION} (+ ftfy, regex)"
"${PIP[@]}" -q "mmdet==${MMDET_VERSION}" "mmsegmentation==${MMSEG_VERSION}" ftfy regex \
  "mmcv==${MMCV_VERSION}" 'numpy<2'

step mmpose "mmpose ${MMPOSE_VERSION} without chumpy (never imported; its sdist does not build)"
"${PIP[@]}" -q --no-deps "mmpose==${MMPOSE_VERSION}"
"${PIP[@]}" -q json-tricks munkres xtcocotools scipy matplotlib opencv-python pillow 'numpy<2'

step kornia "kornia (batched views on the model's device)"
"${PIP[@]}" -q 'kornia>=0.7' 'numpy<2' 'setuptools<81'

step lmdb "lmdb (LUPerson's released LMDB as a pretraining source)"
"${PIP[@]}" -q 'lmdb>=1.4' 'numpy<2'

step extras "test and logging tools"
"${PIP[@]}" -q -r "$ROOT/requirements/tests.txt" tensorboard 'numpy<2' 'pandas<3' 'setuptools>=77,<81'

# A plain `pip install openmim` pulls pandas 3 (numpy >= 2, past mmcv's build) and, through
# openxlab, setuptools 60; the pins keep the stack as it is (docs: ENVIRONMENT.md).
step mim "openmim ${OPENMIM_VERSION} (numpy<2, pandas<3, setuptools>=77,<81)"
"${PIP[@]}" -q "openmim==${OPENMIM_VERSION}" 'numpy<2' 'pandas<3' 'setuptools>=77,<81'

# < 4.52: with transformers present, `import mmpretrain.models` imports mmpretrain's multimodal
# models, whose imports from transformers.modeling_utils fail from 4.52 on.
step transformers "transformers<4.52 (the text_person project's optional Hugging Face text tower)"
"${PIP[@]}" -q 'transformers>=4.40,<4.52' 'numpy<2' 'setuptools<81'

step deploy "ONNX export and onnxruntime (optional extras, requirements/deploy.txt)"
"${PIP[@]}" -q -r "$ROOT/requirements/deploy.txt" 'numpy<2' 'setuptools<81'

# Develop mode (metadata in the checkout, an egg-link in site-packages), not pip's PEP 660
# editable install: with the latter, `mim train saip_mm` looks for site-packages/saip_mm.
step project "saip_mm from this checkout in develop mode (editable; mim train/test find it)"
neutral_python "$ROOT/tools/misc/install_develop.py"

step verify "compiled ops and imports"
verify
stamp_inputs > "$STAMP"
echo "[install] done: activate with 'source $VENV/bin/activate'."
