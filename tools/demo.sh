#!/usr/bin/env bash
# The whole pipeline on a dataset this repository generates: 4 classes that differ only in the
# direction the object moves (left, right, up, down), on random textures, half the clips with a
# camera pan. Appearance says nothing about the class, so the RGB stream should stay near chance
# (25%) and the flow stream must do the work. Its time on 2 CPU cores is in the README (measured by
# `python -m tools.bench.demo`); its settings are in tools/demo_settings.sh.
#
#   bash tools/demo.sh [WORKDIR]        (default: data/demo; everything generated goes there)
#
# Directional classes change when mirrored, so training uses --no-flip and testing 3 crops without
# mirror images (the paper's 10 crops include them); see docs/getting-started.md.
set -euo pipefail
ROOT=$(realpath "$(dirname "$0")/..")
W=$(realpath -m --relative-to="$ROOT" "${1:-data/demo}")   # as given, but from the repository root
cd "$ROOT"
source tools/demo_settings.sh
say() { printf '\n== %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }   # each command as it runs: docs/getting-started.md quotes these

say "1/6 generate $((4 * DEMO_CLIPS_PER_CLASS)) labelled clips ($DEMO_TEST_PER_CLASS per class held out for testing)"
run python tools/make_demo_videos.py "$W/videos" --clips-per-class "$DEMO_CLIPS_PER_CLASS" \
    --test-per-class "$DEMO_TEST_PER_CLASS" --frames "$DEMO_FRAMES" --size "$DEMO_SIZE" \
    --speed "$DEMO_SPEED" --lists "$W/lists"

say "2/6 extract RGB frames and TV-L1 flow into one store"
run tsn-prep extract-frames "$W/videos" "$W/store" --size "$DEMO_SIZE"
run tsn-prep extract-flow "$W/videos" "$W/store" --size "$DEMO_SIZE" --workers 2
run tsn-prep info "$W/store"

TRAIN=(--store "$W/store" --train-list "$W/lists/demo_train.txt" --val-list "$W/lists/demo_test.txt"
       --classes "$W/lists/demo_classes.txt"
       --arch resnet18 --input-size "$DEMO_INPUT" --no-partial-bn --no-flip --batch-size 8
       --accumulate 1 --epochs "$DEMO_EPOCHS" --lr 0.01 --lr-steps "$DEMO_LR_STEPS" --dropout 0.5)
# Resume if a previous run of this script was interrupted; start fresh otherwise.
resume() { [ -f "$1/last.pt" ] && echo --resume || true; }

say "3/6 train the RGB stream (ResNet-18 from scratch: no ImageNet weights are downloaded)"
run tsn-train fit --modality rgb "${TRAIN[@]}" --out "$W/runs/rgb" $(resume "$W/runs/rgb")

say "4/6 train the flow stream"
run tsn-train fit --modality flow "${TRAIN[@]}" --out "$W/runs/flow" $(resume "$W/runs/flow")

say "5/6 test both streams: 25 snippets x 3 crops per video"
for m in rgb flow; do
    run tsn-train test --checkpoint "$W/runs/$m/last.pt" --store "$W/store" \
        --list "$W/lists/demo_test.txt" --crops 3 --out "$W/scores/$m.npz"
done

say "6/6 fuse the streams, RGB : flow = 1 : 1.5 as in the paper"
run tsn-train fuse "$W/scores/rgb.npz" "$W/scores/flow.npz" --weights 1,1.5 --out "$W/scores/fused.npz"
