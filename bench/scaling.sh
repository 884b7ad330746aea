#!/usr/bin/env bash
# Data-parallel training throughput (issue 9): the same n2n training run as 1 rank x T threads
# and as N ranks x T/N threads (unwedge launch, c10d Gloo over loopback), on a simulated preset.
# Throughput = subtomograms per second = steps/s x global batch, where steps/s comes from the
# trainer's JSONL log between the first and the last log line (the first window, with start-up,
# is left out). Each configuration runs REPEATS times, alternating, and the machine's load
# (uptime) is recorded before and after every run: on a shared machine it moves the figures.
#
#   bash bench/scaling.sh [OUT]        (default OUT: scaling-run)
#
# Environment (defaults in brackets): UNWEDGE [build/unwedge], PRESET [small], SEED [1],
# STEPS [40], BATCH [4] (global), PATCH [32], LOG_EVERY [5], THREADS [2] (cores in all),
# NPROC [2], REPEATS [2], RESULT [bench/results/scaling_<preset>.json].
set -euo pipefail
OUT=${1:-scaling-run}
UNWEDGE=${UNWEDGE:-build/unwedge}
PRESET=${PRESET:-small}
SEED=${SEED:-1}
STEPS=${STEPS:-40}
BATCH=${BATCH:-4}
PATCH=${PATCH:-32}
LOG_EVERY=${LOG_EVERY:-5}
THREADS=${THREADS:-2}
NPROC=${NPROC:-2}
REPEATS=${REPEATS:-2}
RESULT=${RESULT:-bench/results/scaling_$PRESET.json}
PY=/usr/bin/python3
UNWEDGE=$(realpath "$UNWEDGE")
if (( THREADS % NPROC != 0 || BATCH % NPROC != 0 )); then
  echo "scaling.sh: THREADS=$THREADS and BATCH=$BATCH must be multiples of NPROC=$NPROC" >&2
  exit 1
fi
mkdir -p "$OUT" "$(dirname "$RESULT")"
if [[ ! -f $OUT/data/even.mrc ]]; then
  "$UNWEDGE" -q --threads "$THREADS" simulate --preset "$PRESET" --seed "$SEED" --out "$OUT/data"
fi
train=(train --method n2n --even "$OUT/data/even.mrc" --odd "$OUT/data/odd.mrc" --patch "$PATCH"
  --batch "$BATCH" --steps "$STEPS" --log-every "$LOG_EVERY" --val-every 0 --checkpoint-every 0
  --seed "$SEED" --no-progress --overwrite)
runs=()
for rep in $(seq 1 "$REPEATS"); do
  for ranks in 1 "$NPROC"; do
    tag="r${ranks}_rep${rep}"
    per=$(( THREADS / ranks ))
    load_before=$(cut -d' ' -f1-3 /proc/loadavg)
    start=$(date +%s.%N)
    if (( ranks == 1 )); then
      "$UNWEDGE" -q --threads "$per" "${train[@]}" --out "$OUT/$tag.uwm"
    else
      "$UNWEDGE" -q --threads "$per" launch --nproc "$ranks" -- "${train[@]}" --out "$OUT/$tag.uwm"
    fi
    wall=$(echo "$(date +%s.%N) - $start" | bc)
    load_after=$(cut -d' ' -f1-3 /proc/loadavg)
    runs+=("$tag $ranks $per $wall $OUT/$tag.train.jsonl $load_before,$load_after")
    echo "scaling.sh: $tag ($ranks ranks x $per threads) ${wall}s, load $load_before -> $load_after"
  done
done
printf '%s\n' "${runs[@]}" | "$PY" -c '
import json, sys, platform, os, statistics
batch, steps, preset, patch, result = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
runs = []
for line in sys.stdin.read().splitlines():
    tag, ranks, per, wall, log, load = line.split(" ", 5)
    rows = [json.loads(l) for l in open(log) if l.strip()]
    a, b = rows[0], rows[-1]
    sps = (b["step"] - a["step"]) / (b["elapsed_s"] - a["elapsed_s"])
    runs.append({"tag": tag, "ranks": int(ranks), "threads_per_rank": int(per),
                 "steps_per_s": sps, "subtomos_per_s": sps * batch, "wall_s": float(wall),
                 "final_loss": b["loss"], "loadavg_before_after": load.replace(",", " | ")})
by = {}
for r in runs:
    by.setdefault(r["ranks"], []).append(r["subtomos_per_s"])
summary = {str(k): {"median_subtomos_per_s": statistics.median(v), "runs": len(v)} for k, v in sorted(by.items())}
ks = sorted(by)
speedup = statistics.median(by[ks[-1]]) / statistics.median(by[ks[0]]) if len(ks) > 1 else None
out = {"bench": "scaling", "preset": preset, "method": "n2n", "patch": patch, "global_batch": batch,
       "steps": steps, "backend": "gloo (loopback)", "device": "cpu", "host": platform.node(),
       "cpus": os.cpu_count(), "runs": runs, "summary": summary, "speedup": speedup,
       "note": "shared machine: other jobs ran during the measurement (see loadavg per run)"}
tmp = result + ".tmp"
json.dump(out, open(tmp, "w"), indent=1)
os.replace(tmp, result)
for k in ks:
    print(f"{k} rank(s): median {statistics.median(by[k]):.2f} subtomograms/s over {len(by[k])} runs")
if speedup: print(f"speed-up {ks[-1]} vs {ks[0]} rank(s): {speedup:.2f}x")
print("wrote", result)
' "$BATCH" "$STEPS" "$PRESET" "$PATCH" "$RESULT"
