#!/usr/bin/env bash
# GPU check: build unwedge against a CUDA LibTorch, run the unit tests (the CUDA ones included),
# train and restore on the GPU in float32 and bf16 next to the CPU, time training throughput, and
# run the posterior bench (bench/posterior.sh) on the GPU.
#
#   bash bench/gpu.sh [OUT]           (default OUT: gpu-out)
#
# Environment (defaults in brackets): TORCH_PREFIX [torch.utils.cmake_prefix_path of python3's
# torch], EXTRA_PREFIX [] (more CMake prefixes, ';'-separated, for dependencies that are not
# installed system-wide), BUILD [build-cuda], JOBS [nproc], PHASES ["build test e2e posterior"],
# POSTERIOR_MINUTES [1] (wall minutes per posterior training), POSTERIOR_N [16],
# POSTERIOR_TILE [96], PY [python3] (with numpy and mrcfile, for the posterior bench),
# WORK [OUT/work] (volumes and models), SECONDS_LEFT [] (if set: a phase is skipped when less
# than its rough need is left). Phases run in the order PHASES gives.
# Everything is logged to OUT/gpu.log; OUT/gpu.json holds the measured figures.
set -uo pipefail
OUT=${1:-gpu-out}
BUILD=${BUILD:-build-cuda}
JOBS=${JOBS:-$(nproc)}
PHASES=${PHASES-build test e2e posterior}
PY=${PY:-python3}
mkdir -p "$OUT"
OUT=$(realpath "$OUT")
LOG=$OUT/gpu.log
W=${WORK:-$OUT/work}
mkdir -p "$W"
W=$(realpath "$W")
START=$(date +%s)
say() { echo "== $(date +%T) $*" | tee -a "$LOG"; }
time_for() {  # time_for SECONDS: true when SECONDS_LEFT is unset or that much is left
  [[ -z ${SECONDS_LEFT:-} ]] || (( SECONDS_LEFT - ($(date +%s) - START) >= $1 ))
}
now() { date +%s.%N; }
dt() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
json_add() {  # json_add KEY VALUE(JSON)
  "$PY" - "$OUT/gpu.json" "$1" "$2" <<'EOF'
import json, os, sys
path, key, value = sys.argv[1:4]
d = json.load(open(path)) if os.path.exists(path) else {}
d[key] = json.loads(value)
json.dump(d, open(path + ".tmp", "w"), indent=1)
os.replace(path + ".tmp", path)
EOF
}

say "gpu.sh: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1)"
json_add gpu "\"$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)\""
TORCH_PREFIX=${TORCH_PREFIX:-$("$PY" -c 'import torch; print(torch.utils.cmake_prefix_path)')}
json_add torch "\"$("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null)\""
NCCL_INC=$("$PY" -c 'import os, nvidia.nccl as n; print(os.path.join(list(n.__path__)[0], "include"))' 2>/dev/null || true)
[[ -n $NCCL_INC && -f $NCCL_INC/nccl.h ]] || NCCL_INC=
export PATH=$PATH:/usr/local/cuda/bin
U=$(realpath -m "$BUILD/unwedge")

phase_build() {
  say "configure against $TORCH_PREFIX (nccl.h: ${NCCL_INC:-none})"
  t0=$(now)
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DUNWEDGE_BUILD_BENCH=OFF \
    -DCMAKE_PREFIX_PATH="${EXTRA_PREFIX:+$EXTRA_PREFIX;}$TORCH_PREFIX" \
    -DCMAKE_CUDA_ARCHITECTURES=90 ${NCCL_INC:+-DNCCL_INCLUDE_DIR=$NCCL_INC} >> "$LOG" 2>&1 \
    || { say "configure FAILED"; tail -40 "$LOG"; exit 1; }
  grep -E "NCCL|Found Torch|CUDA" "$LOG" | tail -5
  say "build (-j$JOBS)"
  cmake --build "$BUILD" -j"$JOBS" -- -k 0 >> "$LOG" 2>&1
  rc=$?
  # A backend whose headers fail to build is switched off, with its errors kept: rebuild_without
  # NAME CMAKE_DEFINITION.
  rebuild_without() {
    say "build FAILED in $1; errors:"
    grep -E "error" "$LOG" | head -20 | tee -a "$OUT/$1_errors.log"
    say "rebuilding without $1"
    cmake "$BUILD" "$2" >> "$LOG" 2>&1
    cmake --build "$BUILD" -j"$JOBS" -- -k 0 >> "$LOG" 2>&1
    rc=$?
    json_add "$1" "\"off: the $1 build failed (see $1_errors.log)\""
  }
  if [[ $rc != 0 ]] && grep -q "ProcessGroupGloo\|gloo/" "$LOG"; then
    rebuild_without gloo -DUNWEDGE_GLOO=OFF
  fi
  if [[ $rc != 0 && -n $NCCL_INC ]]; then
    rebuild_without nccl -DNCCL_INCLUDE_DIR=NCCL_INCLUDE_DIR-NOTFOUND
  fi
  t1=$(now)
  json_add build_s "$(dt "$t0" "$t1")"
  if [[ $rc != 0 ]]; then
    say "build FAILED (rc $rc)"
    grep -E "error|Error" "$LOG" | head -40
    [[ -x $U ]] || exit 1
  fi
  say "built in $(dt "$t0" "$t1") s"
}

phase_test() {
  say "unit tests (ctest, the gtest programs; CLI/python/browser tests are CPU-build checks)"
  (cd "$BUILD" && timeout 150 ctest -j"$JOBS" --timeout 140 --output-on-failure -E '^(cli_.*|interop_mrcfile|report_browser)$' \
    > "$OUT/ctest.log" 2>&1)
  tail -25 "$OUT/ctest.log" | tee -a "$LOG"
  (cd "$BUILD" && ctest -R '^Cuda\.' -V 2>&1 | grep -E "OK|FAILED|SKIPPED|Passed|Skipped|note" \
    | tee -a "$LOG")
  json_add ctest "\"$(grep -E 'tests passed' "$OUT/ctest.log" | tail -1)\""
}

phase_e2e() {
  say "end to end on the tiny preset: train n2n on cuda (fp32, bf16) and cpu, restore on both"
  "$U" -q simulate --preset tiny --seed 3 --out "$W/tiny" --overwrite
  run_train() {  # run_train NAME DEVICE PRECISION STEPS [extra]
    local name=$1 dev=$2 prec=$3 steps=$4
    shift 4
    local t0 t1
    t0=$(now)
    "$U" -q train --method n2n --even "$W/tiny/even.mrc" --odd "$W/tiny/odd.mrc" \
      --out "$W/$name.uwm" --steps "$steps" --patch 32 --batch 4 --device "$dev" \
      --precision "$prec" --no-progress \
      --overwrite "$@" || { say "train $name FAILED"; return 1; }
    t1=$(now)
    echo "$(dt "$t0" "$t1")"
  }
  ts_cuda=$(run_train cuda32 cuda fp32 300)
  ts_bf16=$(run_train cudabf16 cuda bf16 300)
  ts_cpu=$(run_train cpu32 cpu fp32 300)
  say "300 n2n steps (patch 32, batch 4): cuda fp32 ${ts_cuda} s, cuda bf16 ${ts_bf16} s, cpu ($(nproc) threads) ${ts_cpu} s"
  for m in cuda32 cudabf16 cpu32; do
    for dev in cuda cpu; do
      "$U" -q restore --model "$W/$m.uwm" --even "$W/tiny/even.mrc" --odd "$W/tiny/odd.mrc" \
        --out "$W/r_${m}_$dev.mrc" --device "$dev" --no-progress --overwrite
    done
    "$U" -q restore --model "$W/$m.uwm" --even "$W/tiny/even.mrc" --odd "$W/tiny/odd.mrc" \
      --out "$W/r_${m}_cudabf16.mrc" --device cuda --precision bf16 --no-progress --overwrite
    for v in cuda cpu cudabf16; do
      "$U" eval --in "$W/r_${m}_$v.mrc" --truth "$W/tiny/gt.mrc" --json "$W/e_${m}_$v.json" \
        --overwrite > /dev/null
    done
  done
  "$PY" - "$W" "$OUT/e2e.json" "$ts_cuda" "$ts_bf16" "$ts_cpu" <<'EOF' | tee -a "$LOG"
import json, sys, mrcfile, numpy as np
w, out, tc, tb, tp = sys.argv[1:6]
res = {"train_300_steps_s": {"cuda_fp32": float(tc), "cuda_bf16": float(tb), "cpu_fp32": float(tp)},
       "models": {}}
for m in ("cuda32", "cudabf16", "cpu32"):
    r = {}
    ref = mrcfile.read(f"{w}/r_{m}_cpu.mrc").astype(np.float64)
    for v in ("cuda", "cpu", "cudabf16"):
        x = mrcfile.read(f"{w}/r_{m}_{v}.mrc").astype(np.float64)
        e = json.load(open(f"{w}/e_{m}_{v}.json"))["metrics"]
        r[v] = {"cc": e["cc"], "cc_wedge_band": e.get("cc_wedge_band"),
                "max_rel_diff_vs_cpu": float(np.abs(x - ref).max() / np.abs(ref).max())}
    res["models"][m] = r
    print(m, json.dumps(r))
json.dump(res, open(out, "w"), indent=1)
EOF
  json_add e2e "$(cat "$OUT/e2e.json")"
  say "throughput on the standard preset: n2n and cryogen-ot, 200 steps, cuda fp32 and bf16"
  "$U" -q simulate --preset standard --seed 1 --out "$W/std" --overwrite
  for meth in n2n cryogen-ot; do
    for prec in fp32 bf16; do
      t0=$(now)
      "$U" -q train --method $meth --even "$W/std/even.mrc" --odd "$W/std/odd.mrc" \
        --out "$W/tp_${meth}_$prec.uwm" --steps 200 --device cuda --precision $prec \
        --no-progress --overwrite
      t1=$(now)
      say "  $meth $prec: 200 steps in $(dt "$t0" "$t1") s (process, start-up included)"
      json_add "train_200_${meth}_$prec" "$(tail -1 "$W/tp_${meth}_$prec.train.jsonl")"
    done
  done
  t0=$(now)
  "$U" -q restore --model "$W/tp_n2n_fp32.uwm" --even "$W/std/even.mrc" --odd "$W/std/odd.mrc" \
    --out "$W/std_restored.mrc" --device cuda --no-progress --overwrite
  t1=$(now)
  say "  restore the standard preset (halves) on cuda: $(dt "$t0" "$t1") s"
  json_add restore_standard_cuda_s "$(dt "$t0" "$t1")"
}

phase_posterior() {
  say "posterior bench on the standard preset, on the GPU"
  UNWEDGE="$U" DEVICE=cuda BUDGET_CLOCK=wall MINUTES=${POSTERIOR_MINUTES:-1} \
    N=${POSTERIOR_N:-16} SAMPLE_OPTS="--tile ${POSTERIOR_TILE:-96}" THREADS=$JOBS \
    SAMPLE_THREADS=$JOBS PY="$PY" RESULT="$OUT/posterior_standard_gpu.json" \
    bash bench/posterior.sh "$W/post" 2>&1 | tee -a "$LOG"
}

declare -A NEED=([build]=0 [test]=60 [e2e]=90 [posterior]=200)
for ph in $PHASES; do
  if ! time_for "${NEED[$ph]:-0}"; then
    say "skip $ph: less than ${NEED[$ph]} s left"
    continue
  fi
  "phase_$ph"
done
say "gpu.sh done in $(( $(date +%s) - START )) s"
