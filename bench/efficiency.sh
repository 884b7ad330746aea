#!/usr/bin/env bash
# Efficiency of unwedge's default n2n training step (issue 20), measured side by side in one run:
# bench_train (roofline, step split, FLOPs from the layer shapes, thread scaling at patch 40) and
# the plain PyTorch reference bench/unet_ref.py (the same network, loss, optimizer and sizes, on
# Debian's python3-torch: the same LibTorch), both at 1 thread in process CPU seconds, patch 40
# and 64, batch 4, fp32 and bf16 autocast; two rounds, unwedge then PyTorch in each, each program
# timing 3 blocks of 3 steps per round: the best of the 6 blocks is compared (load changes
# between minutes on a shared machine; all blocks are printed). Prints a table with the
# framework-overhead ratio unwedge_step_cpu_s / pytorch_step_cpu_s (target <= 1.05), the
# roofline fractions (target >= 0.5) and the time outside the network (target < 0.10); the
# JSON of each program stays in OUTDIR.
# usage: bench/efficiency.sh [OUTDIR]   (BENCH_TRAIN=build/bench/bench_train by default)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench/results/efficiency}
bench_train=${BENCH_TRAIN:-build/bench/bench_train}
py=/usr/bin/python3  # Debian's interpreter: its torch is the system LibTorch unwedge links
mkdir -p "$out"
[ -x "$bench_train" ] || { echo "efficiency.sh: $bench_train is not built (cmake -DUNWEDGE_BUILD_BENCH=ON)" >&2; exit 1; }
"$py" -c 'import torch' 2>/dev/null || { echo "efficiency.sh: $py cannot import torch (apt install python3-torch)" >&2; exit 1; }

for patch in 40 64; do
  for round in 1 2; do
    scaling=0
    [ "$patch" = 40 ] && [ "$round" = 1 ] && scaling=1
    echo "patch $patch round $round: bench_train ($(date -u +%T), load $(cut -d' ' -f1 /proc/loadavg))" >&2
    nice -n 5 "$bench_train" --patch "$patch" --batch 4 --steps 3 --repeats 3 --volume 96 \
      --threads 1 --channels-last 0 --roofline 1 --thread-scaling "$scaling" \
      >"$out/unwedge_p${patch}_r$round.json"
    params=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["parameters"])' \
      "$out/unwedge_p${patch}_r$round.json")
    echo "patch $patch round $round: unet_ref.py ($(date -u +%T), load $(cut -d' ' -f1 /proc/loadavg))" >&2
    nice -n 5 "$py" bench/unet_ref.py --patch "$patch" --batch 4 --steps 3 --repeats 3 --threads 1 \
      --expect-params "$params" >"$out/pytorch_p${patch}_r$round.json"
  done
done

"$py" - "$out" <<'EOF'
import json, sys
out = sys.argv[1]
load = lambda name: json.load(open("%s/%s.json" % (out, name)))
print("| patch | precision | unwedge step CPU s: best (blocks) | PyTorch step CPU s: best (blocks) "
      "| overhead ratio | unwedge GFLOP/CPU-s | roofline fwd+bwd GFLOP/CPU-s | unwedge roofline "
      "fraction | PyTorch roofline fraction | outside network |")
print("|---|---|---|---|---|---|---|---|---|---|")
for patch in (40, 64):
    us = [load("unwedge_p%d_r%d" % (patch, r)) for r in (1, 2)]
    ts = [load("pytorch_p%d_r%d" % (patch, r)) for r in (1, 2)]
    assert len({j["parameters"] for j in us + ts}) == 1, "parameter counts differ"
    for prec in ("fp32", "bf16"):
        key = "step_default_layout" if prec == "fp32" else "step_bf16_default_layout"
        u = min((j[key] for j in us), key=lambda s: s["step_cpu_s"])
        ublocks = [b for j in us for b in j[key]["blocks_step_cpu_s"]]
        tblocks = [b["step_cpu_s"] for j in ts for b in j["step_" + prec]["blocks"]]
        t_best = min(tblocks)
        roof = max(j["roofline"][prec]["fwd_bwd_gflop_per_cpu_s"] for j in us)
        ugf = u["network_gflop_per_cpu_s"]
        print("| %d | %s | %.3f (%s) | %.3f (%s) | %.3f | %.1f | %.1f | %.2f | %.2f | %.2f %% |" % (
            patch, prec, u["step_cpu_s"], ", ".join("%.3f" % b for b in ublocks),
            t_best, ", ".join("%.3f" % b for b in tblocks), u["step_cpu_s"] / t_best, ugf, roof,
            ugf / roof, ts[0]["step_flops_hooks"] / t_best / 1e9 / roof,
            100 * u["outside_network_fraction"]))
    print("patch %d: step FLOPs from bench_train's formula %.6g, from PyTorch forward hooks %.6g "
          "(ratio %.6f); parameters %d in both" % (
              patch, us[0]["step_flops_estimate"], ts[0]["step_flops_hooks"],
              us[0]["step_flops_estimate"] / ts[0]["step_flops_hooks"], us[0]["parameters"]),
          file=sys.stderr)
s = load("unwedge_p40_r1")["thread_scaling"]
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
