# `--config FILE.yaml` on the commands (issue 21): keys mirror the long flags, the file's values
# reach the run, flags given on the command line win, `out:` counts as --out, unknown keys and
# broken YAML are refused with one line naming the file (sourced by smoke.sh: check, $BIN, $WORK).
C="$WORK/cfg"
mkdir -p "$C"
if "$BIN" -q simulate --preset tiny --out "$C/sim" > /dev/null 2>&1 && [[ -f "$C/sim/even.mrc" ]]; then
  S="$C/sim"
  TINY=(--opt depth=1 --opt base_channels=4 --opt convs_per_level=1 --batch 2 --no-progress
        --threads 1)
  printf 'steps: 3\npatch: 16\nlog-every: 1\n' > "$C/s.yaml"
  check config-train-file 0 "3 steps" -- "$BIN" train --method n2v --in "$S/tomo.mrc" \
    --out "$C/a.uwm" --config "$C/s.yaml" "${TINY[@]}"
  check config-train-file-patch 0 "^patch: 16" -- cat "$C/a.config.yaml"
  check config-train-file-log 0 '"step":3' -- cat "$C/a.train.jsonl"
  # The command line wins over the file.
  check config-train-flag-wins 0 "2 steps" -- "$BIN" train --method n2v --in "$S/tomo.mrc" \
    --out "$C/b.uwm" --config "$C/s.yaml" --steps 2 "${TINY[@]}"
  check config-train-flag-wins-written 0 "^steps: 2" -- cat "$C/b.config.yaml"
  # Every key a long flag, `out:` included (a required option may come from the file).
  printf 'method: n2v\nin: %s\nout: %s\nsteps: 1\npatch: 16\nopt: [depth=1, base_channels=4]\n' \
    "$S/tomo.mrc" "$C/c.uwm" > "$C/all.yaml"
  check config-train-out-from-file 0 "wrote .*c.uwm" -- "$BIN" train --config "$C/all.yaml" \
    --batch 2 --no-progress
  printf 'steps: 3\npatchh: 16\n' > "$C/typo.yaml"
  check config-unknown-key 1 "typo.yaml: unknown key 'patchh'" -- "$BIN" train --method n2v \
    --in "$S/tomo.mrc" --out "$C/d.uwm" --config "$C/typo.yaml"
  check config-unknown-key-nothing-written 1 "" -- test -e "$C/d.config.yaml"
  printf 'steps: [3\n' > "$C/broken.yaml"
  check config-broken-yaml-eval 1 "broken.yaml: .*YAML" -- "$BIN" eval --in "$S/tomo.mrc" \
    --truth "$S/gt.mrc" --config "$C/broken.yaml"
  check config-broken-yaml-one-line 0 "^1$" -- bash -c "'$BIN' eval --in '$S/tomo.mrc' \
    --truth '$S/gt.mrc' --config '$C/broken.yaml' 2>&1 | wc -l"
  printf 'patch: sixteen\n' > "$C/word.yaml"
  check config-bad-value 1 "word.yaml: key 'patch'" -- "$BIN" train --method n2v \
    --in "$S/tomo.mrc" --out "$C/e.uwm" --config "$C/word.yaml"
  # eval: a list value (tilt-range) from the file reaches the metrics' JSON.
  printf 'tilt-range: [-50, 65]\njson: %s\n' "$C/ev.json" > "$C/ev.yaml"
  check config-eval-file 0 "" -- "$BIN" -q eval --in "$S/tomo.mrc" --truth "$S/gt.mrc" \
    --config "$C/ev.yaml"
  check config-eval-file-written 0 "^tilt-range: \[-50, 65\]" -- cat "$C/ev.config.yaml"
  # simulate: the preset comes from the file, sizes given on the command line win.
  printf 'preset: small\nseed: 5\nnx: 48\n' > "$C/sim.yaml"
  check config-simulate-preset 0 "preset small, 32x48x16" -- "$BIN" simulate --config "$C/sim.yaml" \
    --out "$C/sim_small" --nx 32 --ny 48 --nz 16
  check config-simulate-meta 0 '"preset": "small"' -- cat "$C/sim_small/meta.json"
  # restore: a flag (true/false) and an option from the file.
  "$BIN" -q train --method n2n --even "$S/even.mrc" --odd "$S/odd.mrc" --out "$C/n2n.uwm" \
    --steps 1 --patch 16 "${TINY[@]}" > /dev/null 2>&1
  printf 'tile: 32\noverlap: 8\nsave-halves: true\n' > "$C/r.yaml"
  check config-restore-file 0 "wrote" -- "$BIN" restore --model "$C/n2n.uwm" --even "$S/even.mrc" \
    --odd "$S/odd.mrc" --out "$C/r.mrc" --config "$C/r.yaml" --no-progress
  check config-restore-flag-from-file 0 "" -- test -s "$C/r_even.mrc"
  check config-restore-written 0 "^tile: 32" -- cat "$C/r.config.yaml"
  check config-missing-file 1 "nope.yaml" -- "$BIN" info "$S/gt.mrc" --config "$C/nope.yaml"
else
  echo "skip: simulate unavailable, --config smoke tests not run"
fi
# The resolved configuration of a preset run holds the preset's values (it repeats the run).
if [[ -f "$C/sim_small/meta.json" ]]; then
  want=$(grep -o '"n_particles_requested": [0-9]*' "$C/sim_small/meta.json" | grep -o '[0-9]*$')
  check config-simulate-resolved-preset 0 "^particles: $want\$" -- cat "$C/sim_small/config.yaml"
fi
