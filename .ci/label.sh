#!/usr/bin/env bash
# MONAI Label app (apps/cardiac_label): its own environment, a brief training of both bundles on a small phantom,
# then the real-server integration test (tests/apps/test_cardiac_label_server.py).
#
#   bash .ci/label.sh            (from anywhere; .ci/run calls it)
#
# - The environment (.venv-label, or $CARDIAC_LABEL_VENV) is built from apps/cardiac_label/requirements.txt and
#   reused while that file is unchanged (a stamp holds its hash). torch/torchvision are pinned to the pair on this
#   machine's local wheel store (2.14.1 / 0.29.1, see the requirements file), so pip never downloads another torch.
# - The bundles are trained into a temporary workspace (configs linked to bundles/*/configs, weights written
#   there, never into bundles/*/models), which is removed on exit, pass or fail.
# - Knobs (environment): CARDIAC_LABEL_JOINT_EPOCHS, CARDIAC_LABEL_SUBJECTS, CARDIAC_LABEL_REPORT (a JSON file the
#   test writes its propagation figures to).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
VENV=${CARDIAC_LABEL_VENV:-$REPO/.venv-label}
REQUIREMENTS=apps/cardiac_label/requirements.txt
SUBJECTS=${CARDIAC_LABEL_SUBJECTS:-24}
JOINT_EPOCHS=${CARDIAC_LABEL_JOINT_EPOCHS:-'{"motion": 12, "segmentation": 5, "joint": 5}'}
JOINT_LOSS=(--loss#alpha 5.0 --loss#beta 0.5)
SECONDS=0

# 1. the environment (idempotent)
want=$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.requirements-sha256" 2>/dev/null)" != "$want" ]; then
    rm -rf "$VENV"
    python3.11 -m venv "$VENV"
    "$VENV/bin/pip" install -q -r "$REQUIREMENTS"
    "$VENV/bin/pip" install -q --no-deps monailabel==0.8.5  # its sam2 requirement left out: the app has no SAM2
    echo "$want" > "$VENV/.requirements-sha256"
fi
"$VENV/bin/pip" install -q --no-deps -e .  # this checkout's monai_cardiac (requirements.txt asks jsonschema>=4)
echo "label env ready after ${SECONDS} s"

# 2. weights: both bundles trained briefly on a small phantom, in a workspace removed on exit
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cardiac_label_ci.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
PHANTOM=(--phantom_dir "$WORK/phantom" --phantom#num_subjects "$SUBJECTS" --phantom#num_frames "[14, 18]")
for bundle in joint probabilistic_motion; do
    mkdir -p "$WORK/bundles/$bundle/models"
    ln -s "$REPO/bundles/$bundle/configs" "$WORK/bundles/$bundle/configs"
done
"$VENV/bin/python" -m monai.bundle run training --config_file bundles/joint/configs/train.json \
    --meta_file bundles/joint/configs/metadata.json --bundle_root "$WORK/bundles/joint" "${PHANTOM[@]}" \
    "${JOINT_LOSS[@]}" --epochs "$JOINT_EPOCHS" > "$WORK/train_joint.log" 2>&1 \
    || { tail -n 40 "$WORK/train_joint.log"; exit 1; }
grep "held-out phantom" "$WORK/train_joint.log" || true
echo "joint bundle trained after ${SECONDS} s"
"$VENV/bin/python" -m monai.bundle run run --config_file bundles/probabilistic_motion/configs/train.json \
    --meta_file bundles/probabilistic_motion/configs/metadata.json --bundle_root "$WORK/bundles/probabilistic_motion" \
    "${PHANTOM[@]}" --epochs 1 > "$WORK/train_probabilistic.log" 2>&1 \
    || { tail -n 40 "$WORK/train_probabilistic.log"; exit 1; }
echo "probabilistic bundle trained after ${SECONDS} s"

# 3. the real-server test (it starts and always stops its own server)
CARDIAC_LABEL_BUNDLES="$WORK/bundles" "$VENV/bin/python" -m pytest -q -p no:cacheprovider \
    tests/apps/test_cardiac_label_server.py tests/apps/test_served_weights.py
echo "label CI done in ${SECONDS} s"
