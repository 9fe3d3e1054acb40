# The demo's settings, in one place: read by tools/demo.sh and tools/untrimmed_demo.sh (which
# scores its untrimmed videos with the demo's flow stream, so its frames are made the same way).
# Small on purpose: README command 1 runs in about 3 minutes on 2 CPU cores, installs included.
DEMO_CLIPS_PER_CLASS=8    # 4 classes: 32 clips
DEMO_TEST_PER_CLASS=2     # held out: 8 test clips, 24 for training
DEMO_FRAMES=16
DEMO_SIZE=80x60           # stored frames (and the generated videos)
DEMO_SPEED=2              # the object moves 2 px per frame
DEMO_INPUT=48             # the networks' input side
DEMO_EPOCHS=12
DEMO_LR_STEPS=10
