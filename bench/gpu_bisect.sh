#!/usr/bin/env bash
# The dsm recipe's bisection on one GPU (issue 20): every arm of bench/extrapolation.py trains
# side by side (one process and one CPU thread each) for the same wall time, scored at the same
# steps; then the table, and the arms' last checkpoints packed for the trip back.
#
#   OUT=runs/gpu-bisect SECONDS_PER_ARM=400 bash bench/gpu_bisect.sh
#
# On a machine without the project's dependencies: carry a folder `.whl/` with the lark and
# interegular wheels; they are installed offline into /tmp/site.
set -u
PY=${PY:-python3}
OUT=${OUT:-runs/gpu-bisect}
SECONDS_PER_ARM=${SECONDS_PER_ARM:-400}
DEVICE=${DEVICE:-cuda}
PER_PAIR=${PER_PAIR:-16}
STEPS=${STEPS:-40000}
EVAL_AT=${EVAL_AT:-1000,2500,5000,7500,10000,15000,20000,30000}
ARMS=${ARMS:-"library bounds bounds+warmup bounds+light bounds+no-zero-init bounds+emb128 prototype prototype-measured prototype-zero-init prototype-rampup"}
FULL=${FULL:-"prototype prototype-rampup prototype-zero-init prototype-measured"}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
if ! $PY -c "import lark" 2>/dev/null && [ -d .whl ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=$PYTHONPATH:/tmp/site
fi
mkdir -p "$OUT/runs"
t0=$(date +%s)
for arm in $ARMS; do
  $PY bench/extrapolation.py train --arm "$arm" --steps "$STEPS" --eval-at "$EVAL_AT" \
    --seconds "$SECONDS_PER_ARM" --per-pair "$PER_PAIR" --device "$DEVICE" --save \
    --out "$OUT/runs" > "$OUT/runs/$arm.log" 2>&1 &
done
wait
echo "trained and scored in $(( $(date +%s) - t0 )) s"
for arm in $ARMS; do echo "== $arm"; tail -n 2 "$OUT/runs/$arm.log"; done
$PY bench/extrapolation.py table "$OUT/runs" --pairs | tee "$OUT/table.md"
# back home: logs and tables in one file; whole checkpoints (exact resume) of the FULL arms,
# two to a file; the model alone of the others
(cd "$OUT/runs" && tar czf ../logs.tgz *.jsonl *.log)
set -- $FULL
i=0
while [ $# -gt 0 ]; do
  pack=""; for a in "${1:-}" "${2:-}"; do [ -n "$a" ] && pack="$pack $a/$(cat "$OUT/runs/$a/latest" 2>/dev/null | $PY -c 'import json,sys; print(json.load(sys.stdin)["checkpoint"])' 2>/dev/null)"; done
  (cd "$OUT/runs" && tar cf "../full-$i.tar" $pack "${1:-}/latest" ${2:+"$2/latest"} 2>/dev/null)
  i=$((i + 1)); shift; [ $# -gt 0 ] && shift
done
models=""
for a in $ARMS; do
  case " $FULL " in *" $a "*) continue;; esac
  c=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["checkpoint"])' "$OUT/runs/$a/latest" 2>/dev/null) || continue
  models="$models $a/$c/config.json $a/$c/model.safetensors $a/latest"
done
(cd "$OUT/runs" && tar cf ../models.tar $models 2>/dev/null)
rm -rf "$OUT/runs"
ls -la "$OUT"
echo "total $(( $(date +%s) - t0 )) s"
