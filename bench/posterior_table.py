#!/usr/bin/python3
"""The table of bench/posterior.sh: reads its OUT folder (sample summaries, eval JSON of the point
estimates and the ensemble), writes RESULT (JSON) and prints a markdown table. A method whose
sample run is missing (not run, or stopped) is left out.

usage: posterior_table.py OUT RESULT PRESET SEED SIM_OPTS TILT MINUTES STEPS THREADS N ENSEMBLE BOX DEVICE CLOCK
"""
import json, os, sys, platform
out, result, preset, seed, sim_opts, tilt, minutes, steps, threads, n, ens, box, device, clock = sys.argv[1:15]
ens = int(ens)
keys = ["cc", "psnr_db", "cc_wedge_band", "coverage_50", "coverage_80", "coverage_90",
        "coverage_95", "std_error_cc", "std_error_spearman", "ause"]
keys += [f"coverage_gaussian_{p}" for p in (50, 80, 90, 95)]
for band in ("measured_band", "wedge_band"):
    keys += [f"coverage_{p}_{band}" for p in (50, 80, 90, 95)]
    keys += [f"std_error_cc_{band}", f"std_error_spearman_{band}", f"ause_{band}"]
def pick(m):
    return {k: m.get(k) for k in keys}
def point(mrc):
    m = json.load(open(mrc[:-4] + ".json"))["metrics"]
    return {k: m[k] for k in ("cc", "psnr_db", "cc_wedge_band")}
def train_info(uwm):
    log = uwm[:-4] + ".train.jsonl"
    rows = [json.loads(l) for l in open(log) if l.strip()] if os.path.exists(log) else []
    last = rows[-1] if rows else {}
    return {"steps": last.get("step"), "elapsed_s": last.get("elapsed_s")}
def sampled(d, model, point_mrc):
    path = os.path.join(out, d, "summary.json")
    if not os.path.exists(path):
        return None  # not run (or stopped)
    s = json.load(open(path))
    cal = s.get("calibration", {})
    return {"train": train_info(os.path.join(out, "models", model)), "point": point(point_mrc),
            "metrics": pick(s["eval"]["metrics"]),
            "calibration": {k: cal.get(k) for k in ("std_scale", "bounds_scale", "level_z", "reliability", "coverage_before", "coverage_after", "seconds")},
            "std_pool": s.get("options", {}).get("std_pool"),
            "sampling": {k: s.get(k) for k in ("seconds", "seconds_per_sample", "ess_min", "ess_mean",
                                                "acceptance", "draws", "tiles")}}
res = {"bench": "posterior", "preset": preset, "seed": int(seed), "simulate_extra": sim_opts,
       "tilt_range": [float(t) for t in tilt.split()], "scored_box": box or "whole volume",
       "budget": {"steps": int(steps)} if steps else {"minutes_per_model": float(minutes), "clock": clock},
       "device": device,
       "train_threads": int(threads), "draws": int(n), "host": platform.node(), "cpus": os.cpu_count(),
       "methods": {}}
for name, d, model, point_mrc in (("cryowgen-mc", "mc", "mc.uwm", "mc_point.mrc"),
                                  ("cryowgen-langevin", "langevin", "langevin.uwm", "langevin_point.mrc"),
                                  ("bootstrap (cryogen-ot)", "bootstrap", "ot_s0.uwm", "ot_s0.mrc")):
    r = sampled(d, model, os.path.join(out, point_mrc))
    if r is not None:
        res["methods"][name] = r
e = json.load(open(os.path.join(out, "ensemble", "eval.json")))["metrics"]
res["methods"][f"ensemble ({ens} cryogen-ot)"] = {
    "train": [train_info(os.path.join(out, "models", f"ot_s{k}.uwm")) for k in range(ens)],
    "point": point(os.path.join(out, "ot_s0.mrc")), "metrics": pick(e),
    "calibration": "none (the members' spread as it comes)",
    "members": [point(os.path.join(out, f"ot_s{k}.mrc")) for k in range(ens)]}
res["conventions"] = ("coverage: the stated intervals mean -/+ z std on the truth's scale "
                      "(unwedge eval --std), z per level from sample --calibrate's data-only "
                      "calibration (level_z; Gaussian z for the ensemble); coverage_gaussian: "
                      "Gaussian z; std: the draws' variance averaged over std_pool voxels "
                      "(the ensemble's too); _measured_band / _wedge_band: volumes and draws "
                      "restricted to the band; std after sample --calibrate's data-only factor; "
                      "point: unwedge restore of the same model (seed-0 cryogen-ot for the "
                      "bootstrap and the ensemble)")
tmp = result + ".tmp"
json.dump(res, open(tmp, "w"), indent=1)
os.replace(tmp, result)
print("posterior.sh: wrote", result)
f = lambda v, d=3: "—" if v is None else f"{v:.{d}f}"
print("| method | CC (point) | wedge-band CC (point) | coverage 50/80/90/95 % (Gaussian z) | measured band 50/90 % | "
      "wedge 50/90 % | Spearman all / wedge | Pearson all | AUSE all / wedge | ESS min | calibration factors std / bounds | s per draw |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for name, r in res["methods"].items():
    m, p = r["metrics"], r["point"]
    cal = r["calibration"] if isinstance(r["calibration"], dict) else {}
    smp = r.get("sampling", {})
    print(f"| {name} | {f(m['cc'])} ({f(p['cc'])}) | {f(m['cc_wedge_band'])} ({f(p['cc_wedge_band'])}) | "
          f"{f(m['coverage_50'],2)}/{f(m['coverage_80'],2)}/{f(m['coverage_90'],2)}/{f(m['coverage_95'],2)} "
          f"({f(m['coverage_gaussian_50'],2)}/{f(m['coverage_gaussian_90'],2)} at 50/90) | "
          f"{f(m['coverage_50_measured_band'],2)}/{f(m['coverage_90_measured_band'],2)} | "
          f"{f(m['coverage_50_wedge_band'],2)}/{f(m['coverage_90_wedge_band'],2)} | "
          f"{f(m['std_error_spearman'])} / {f(m['std_error_spearman_wedge_band'])} | {f(m['std_error_cc'])} | "
          f"{f(m['ause'])} / {f(m['ause_wedge_band'])} | {smp.get('ess_min', '—')} | {f(cal.get('std_scale'))} / {f(cal.get('bounds_scale'))} | "
          f"{f(smp.get('seconds_per_sample'), 1)} |")