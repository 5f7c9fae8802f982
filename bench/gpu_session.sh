#!/usr/bin/env bash
# One GPU session (issues 14 and 16): train the shapes arms and the scenes model side by side on
# one GPU for the same wall time, then score them. Every run is `conceptalg train` stopped by
# SIGTERM (it saves and exits); the scores are bench/training.py --curve and bench/scenes_eval.py.
#
#   OUT=runs/gpu TRAIN_SECONDS=330 bash bench/gpu_session.sh
#
# On a machine without the project installed: carry a folder `wheels/` with lark (and any
# missing dependency) and run from the repository root; it installs them offline.
set -u
OUT=${OUT:-runs/gpu}
TRAIN_SECONDS=${TRAIN_SECONDS:-330}
DEVICE=${DEVICE:-cuda}
PER_PAIR=${PER_PAIR:-16}
QUERIES=${QUERIES:-80}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if [ -d wheels ] && ! python -c "import lark" 2>/dev/null; then
  pip install --no-index --no-deps -q wheels/*.whl
fi
mkdir -p "$OUT"
t0=$(date +%s)
common="--objective dsm --parameterization score --device $DEVICE --steps 1000000 \
  --checkpoint-every 2000 --keep 1 --log-every 200 --no-progress"
views="shape=colour-blind,size=colour-blind,color=shape-blind"
train() {  # name, then options
  local name=$1; shift
  timeout -s TERM "$TRAIN_SECONDS" python -m conceptalg train $common --out "$OUT/$name" "$@" \
    > "$OUT/$name.log" 2>&1 &
}
train shapes-film --data shapes
train shapes-classifier-views --data shapes --heads classifier --views "$views"
train shapes-classifier --data shapes --heads classifier
train shapes-classifier-views-ce --data shapes --heads classifier --views "$views" --guidance-weight 0
train scenes-film --data scenes
wait
echo "trained in $(( $(date +%s) - t0 )) s"
for log in "$OUT"/*.log; do echo "== $log"; tail -n 3 "$log"; done
last() { ls -d "$1"/ckpt-* 2>/dev/null | sort | tail -n 1; }
python bench/training.py --skip-throughput --device "$DEVICE" --per-pair "$PER_PAIR" \
  --guidance-scales 1,2,3,5,8 --out "$OUT/training.json" \
  --curve $(for r in shapes-film shapes-classifier-views shapes-classifier \
            shapes-classifier-views-ce; do last "$OUT/$r"; done) > "$OUT/training-eval.log" 2>&1 &
python bench/scenes_eval.py "$(last "$OUT/scenes-film")" --device "$DEVICE" \
  --queries "$QUERIES" --out "$OUT/scenes.json" > "$OUT/scenes-eval.log" 2>&1 &
wait
tail -n 30 "$OUT/training-eval.log"; tail -n 12 "$OUT/scenes-eval.log"
echo "total $(( $(date +%s) - t0 )) s"
