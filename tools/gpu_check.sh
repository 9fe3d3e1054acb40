#!/usr/bin/env bash
# The committed GPU check (issue 27; tools/bench/gpu_check.py, docs/performance.md "GPU check").
#
#   bash tools/gpu_check.sh --prepare              # here, once: .gpu_check/ (clips, Grove3, refs, wheels)
#   bash tools/gpu_check.sh                        # on the GPU machine: the whole check, figures in $OUT
#   bash tools/gpu_check.sh --device cpu --tiny    # anywhere: every part at tiny sizes on the CPU
#
# On the GPU machine it first installs the carried wheels (.gpu_check/wheels) into /tmp/site
# when a module they provide is missing, and keeps the whole output in $OUT/gpu_check.log.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
WHEELS=.gpu_check/wheels
if [ "${1:-}" != "--prepare" ] && [ -f "$WHEELS/modules.txt" ] && ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  missing=0
  while read -r mod; do
    [ -n "$mod" ] && ! "$PY" -c "import $mod" 2>/dev/null && missing=1
  done < "$WHEELS/modules.txt"
  if [ "$missing" = 1 ]; then
    echo "[gpu_check.sh] installing $(ls "$WHEELS"/*.whl | wc -l) carried wheel(s) into /tmp/site"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site "$WHEELS"/*.whl || exit 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  fi
fi
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT"
  "$PY" -m tools.bench.gpu_check "$@" 2>&1 | tee "$OUT/gpu_check.log"
else
  exec "$PY" -m tools.bench.gpu_check "$@"
fi
