#!/usr/bin/env bash
# The whole pipeline on a dataset this repository generates: 4 classes that differ only in the
# direction the object moves (left, right, up, down), on random textures, half the clips with a
# camera pan. Appearance says nothing about the class, so the RGB stream should stay near chance
# (25%) and the flow stream must do the work. About 5-10 minutes on 2 CPU cores.
#
#   bash tools/demo.sh [WORKDIR]        (default: data/demo; everything generated goes there)
#
# Directional classes change when mirrored, so training uses --no-flip and testing 3 crops without
# mirror images (the paper's 10 crops include them); see docs/getting-started.md.
set -euo pipefail
W=${1:-data/demo}
say() { printf '\n== %s\n' "$*"; }

say "1/6 generate 48 labelled clips (12 per class, 3 per class held out for testing)"
python tools/make_demo_videos.py "$W/videos" --clips-per-class 12 --test-per-class 3 \
    --frames 24 --size 160x120 --speed 2 --lists "$W/lists"

say "2/6 extract RGB frames and TV-L1 flow into one store"
tsn-prep extract-frames "$W/videos" "$W/store" --size 160x120
tsn-prep extract-flow "$W/videos" "$W/store" --size 160x120 --workers 2
tsn-prep info "$W/store"

TRAIN=(--store "$W/store" --train-list "$W/lists/demo_train.txt" --val-list "$W/lists/demo_test.txt"
       --classes "$W/lists/demo_classes.txt" --arch resnet18 --input-size 112 --no-partial-bn
       --no-flip --batch-size 8 --accumulate 1 --workers 2 --lr-steps 25)
# Resume if a previous run of this script was interrupted; start fresh otherwise.
resume() { [ -f "$1/last.pt" ] && echo --resume || true; }

say "3/6 train the RGB stream (ResNet-18 from scratch: no ImageNet weights are downloaded)"
tsn-train fit --modality rgb "${TRAIN[@]}" --out "$W/runs/rgb" --epochs 30 --lr 0.01 \
    --dropout 0.5 $(resume "$W/runs/rgb")

say "4/6 train the flow stream"
tsn-train fit --modality flow "${TRAIN[@]}" --out "$W/runs/flow" --epochs 30 --lr 0.01 \
    --dropout 0.5 $(resume "$W/runs/flow")

say "5/6 test both streams: 25 snippets x 3 crops per video"
for m in rgb flow; do
    tsn-train test --checkpoint "$W/runs/$m/last.pt" --store "$W/store" \
        --list "$W/lists/demo_test.txt" --crops 3 --out "$W/scores/$m.npz"
done

say "6/6 fuse the streams, RGB : flow = 1 : 1.5 as in the paper"
tsn-train fuse "$W/scores/rgb.npz" "$W/scores/flow.npz" --weights 1,1.5 --out "$W/scores/fused.npz"
