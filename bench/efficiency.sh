#!/usr/bin/env bash
# Efficiency of unwedge's default n2n training step (issue 20), measured side by side in one run:
# bench_train (roofline, step split, FLOPs from the layer shapes, thread scaling) and the plain
# PyTorch reference bench/unet_ref.py (the same network, loss, optimizer and sizes, on Debian's
# python3-torch: the same LibTorch), both at 1 thread in process CPU seconds, patch 40 and 64,
# batch 4, fp32 and bf16 autocast.
#  1. bench_train at patch 40 in full (roofline: best of five 3^3 convolutions; thread scaling).
#  2. Per patch, 4 rounds of [bench_train --steps-only, then unet_ref.py], each timing a warm-up
#     step and 3 steps per precision: the load of a shared machine changes from minute to minute,
#     so the overhead ratio is taken per round (neighbouring runs) and its median reported, next
#     to the ratio of the best rounds.
# Prints the tables; each program's JSON stays in OUTDIR. Targets: overhead ratio
# unwedge_step_cpu_s / pytorch_step_cpu_s <= 1.05, roofline fraction >= 0.5, time outside the
# network < 10 % of a step.
# usage: bench/efficiency.sh [OUTDIR]   (BENCH_TRAIN=build/bench/bench_train by default)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench/results/efficiency}
bench_train=${BENCH_TRAIN:-build/bench/bench_train}
py=/usr/bin/python3  # Debian's interpreter: its torch is the system LibTorch unwedge links
rounds=${ROUNDS:-4}
mkdir -p "$out"
[ -x "$bench_train" ] || { echo "efficiency.sh: $bench_train is not built (cmake -DUNWEDGE_BUILD_BENCH=ON)" >&2; exit 1; }
"$py" -c 'import torch' 2>/dev/null || { echo "efficiency.sh: $py cannot import torch (apt install python3-torch)" >&2; exit 1; }
say() { echo "$1 ($(date -u +%T), load $(cut -d' ' -f1 /proc/loadavg))" >&2; }

say "bench_train, patch 40, full"
nice -n 5 "$bench_train" --patch 40 --batch 4 --steps 3 --repeats 3 --volume 96 --threads 1 \
  --channels-last 0 --roofline 1 --thread-scaling 1 >"$out/unwedge_full_p40.json"
params=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["parameters"])' \
  "$out/unwedge_full_p40.json")
for patch in 40 64; do
  for round in $(seq 1 "$rounds"); do
    say "patch $patch round $round: bench_train"
    nice -n 5 "$bench_train" --patch "$patch" --batch 4 --steps 3 --repeats 1 --threads 1 \
      --steps-only 1 >"$out/unwedge_p${patch}_r$round.json"
    say "patch $patch round $round: unet_ref.py"
    nice -n 5 "$py" bench/unet_ref.py --patch "$patch" --batch 4 --steps 3 --repeats 1 --threads 1 \
      --expect-params "$params" >"$out/pytorch_p${patch}_r$round.json"
  done
done

"$py" - "$out" "$rounds" <<'EOF'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
load = lambda name: json.load(open("%s/%s.json" % (out, name)))
full = load("unwedge_full_p40")
print("| patch | precision | unwedge step CPU s per round | PyTorch step CPU s per round "
      "| ratio per round | overhead ratio: median (best/best) | unwedge GFLOP/CPU-s (best) "
      "| roofline fwd+bwd GFLOP/CPU-s | roofline fraction: unwedge, PyTorch (best) | outside network |")
print("|---|---|---|---|---|---|---|---|---|---|")
for patch in (40, 64):
    us = [load("unwedge_p%d_r%d" % (patch, r)) for r in range(1, rounds + 1)]
    ts = [load("pytorch_p%d_r%d" % (patch, r)) for r in range(1, rounds + 1)]
    assert len({j["parameters"] for j in us + ts + [full]}) == 1, "parameter counts differ"
    for prec in ("fp32", "bf16"):
        key = "step_default_layout" if prec == "fp32" else "step_bf16_default_layout"
        u = [j[key]["step_cpu_s"] for j in us]
        t = [j["step_" + prec]["best_step_cpu_s"] for j in ts]
        ratios = [a / b for a, b in zip(u, t)]
        ub = min(us, key=lambda j: j[key]["step_cpu_s"])[key]
        roof = full["roofline"][prec]["fwd_bwd_gflop_per_cpu_s"]
        print("| %d | %s | %s | %s | %s | %.3f (%.3f) | %.1f | %.1f | %.2f, %.2f | %.2f %% |" % (
            patch, prec, ", ".join("%.3f" % x for x in u), ", ".join("%.3f" % x for x in t),
            ", ".join("%.3f" % x for x in ratios), statistics.median(ratios), min(u) / min(t),
            ub["network_gflop_per_cpu_s"], roof, ub["network_gflop_per_cpu_s"] / roof,
            ts[0]["step_flops_hooks"] / min(t) / 1e9 / roof, 100 * ub["outside_network_fraction"]))
    print("patch %d: step FLOPs from bench_train's formula %.6g, from PyTorch forward hooks %.6g "
          "(ratio %.6f); parameters %d in both" % (
              patch, us[0]["step_flops_estimate"], ts[0]["step_flops_hooks"],
              us[0]["step_flops_estimate"] / ts[0]["step_flops_hooks"], us[0]["parameters"]),
          file=sys.stderr)
print("\n| roofline shape (3^3 conv, C -> C) | fp32 fwd | fp32 fwd+bwd | bf16 fwd | bf16 fwd+bwd |")
print("|---|---|---|---|---|")
for f, b in zip(full["roofline"]["fp32"]["shapes"], full["roofline"]["bf16"]["shapes"]):
    print("| C %d, %d^3 x %d | %.0f | %.0f | %.0f | %.0f |" % (
        f["channels"], f["size"], f["batch"], f["fwd_gflop_per_cpu_s"], f["fwd_bwd_gflop_per_cpu_s"],
        b["fwd_gflop_per_cpu_s"], b["fwd_bwd_gflop_per_cpu_s"]))
s = full["thread_scaling"]
print("\n| patch 40 | threads | step wall s | step CPU s | restore 96^3 wall s | restore CPU s |")
print("|---|---|---|---|---|---|")
for prec in ("fp32", "bf16"):
    for key in ("1_thread", "2_threads"):
        r = s["%s_%s" % (prec, key)]
        print("| %s | %s | %.3f | %.3f | %.2f | %.2f |" % (
            prec, key[0], r["step_s"], r["step_cpu_s"], r["restore_seconds"], r["restore_cpu_seconds"]))
    sp = s[prec + "_speedup_2_vs_1"]
    print("| %s | speed-up 2 vs 1 (wall) | %.2fx | | %.2fx | |" % (prec, sp["step_wall"], sp["restore_wall"]))
EOF
