#!/usr/bin/env bash
# M-TWI against 25-snippet averaging on untrimmed videos this repository generates
# (docs/untrimmed.md, "Demo"). The flow stream of tools/demo.sh (trained on its trimmed clips;
# run first if data/demo/runs/flow/last.pt is missing) scores 24 untrimmed videos of 16 s at 10 fps,
# made as the demo's clips are (tools/demo_settings.sh: frame size, speed): a slowly drifting
# textured background with 1-1.6 s actions at random times; 6 videos hold two actions, 4 none.
# Its time is in docs/untrimmed.md (TV-L1 flow of the 3,840 untrimmed frames is most of it), plus
# tools/demo.sh's if that has not been run.
#
#   bash tools/untrimmed_demo.sh [WORKDIR] [DEMODIR]   (defaults: data/untrimmed, data/demo)
#
# Only the flow stream is used: the demo's classes differ only in motion direction, so its RGB
# stream is at chance by design (tools/demo.sh).
set -euo pipefail
ROOT=$(realpath "$(dirname "$0")/..")
W=$(realpath -m --relative-to="$ROOT" "${1:-data/untrimmed}")   # as given, from the repository root
D=$(realpath -m --relative-to="$ROOT" "${2:-data/demo}")
cd "$ROOT"
source tools/demo_settings.sh   # the demo's frame size and speed: its flow stream scores these videos
say() { printf '\n== %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

if [ ! -f "$D/runs/flow/last.pt" ]; then
    say "0/4 no trained flow stream in $D: running tools/demo.sh (trimmed clips, CPU training)"
    bash tools/demo.sh "$D"
fi

say "1/4 generate the untrimmed test videos and their label lists"
run python tools/make_untrimmed_demo.py "$W/videos" --lists "$W/lists" --videos 24 --two-action 6 \
    --background-only 4 --seconds 16 --fps 10 --action-frames 10,16 --size "$DEMO_SIZE" \
    --speed "$DEMO_SPEED" --drift 1 --seed 0

say "2/4 extract RGB frames (for the recorded fps) and TV-L1 flow"
run tsn-prep extract-frames "$W/videos" "$W/store" --size "$DEMO_SIZE"
run tsn-prep extract-flow "$W/videos" "$W/store" --size "$DEMO_SIZE" --workers 2

say "3/4 score the untrimmed videos: 25 evenly spaced snippets averaged, and M-TWI at 1 snippet/s"
mkdir -p "$W/scores"
for p in segments mtwi; do
    run tsn-train test --checkpoint "$D/runs/flow/last.pt" --store "$W/store" \
        --list "$W/lists/untrimmed_test.txt" --crops 3 --protocol "$p" --out "$W/scores/flow_$p.npz"
done

say "4/4 mAP against the multi-label ground truth"
for p in segments mtwi; do
    for m in thumos14 activitynet; do
        # its first line (the mAP); not `| head -1`: under pipefail, head closing the pipe early
        # would fail the script
        out=$(tsn-train evaluate "$W/scores/flow_$p.npz" --labels "$W/lists/untrimmed_labels.txt" \
            --metric "$m")
        printf '%-9s %s\n' "$p" "${out%%$'\n'*}"
    done
done
