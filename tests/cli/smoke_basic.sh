# The program itself: help, version, unknown commands, info on real files, and the resolved
# configuration every command that writes outputs leaves next to them (sourced by smoke.sh:
# check, $BIN, $WORK, $SHARED).
check help 0 "info" -- "$BIN" --help
check version 0 "unwedge [0-9]+\.[0-9]+" -- "$BIN" --version
check no-command 1 "subcommand" -- "$BIN"
check unknown-command 1 "unknown command .frobnicate.*known: simulate" -- "$BIN" frobnicate
if [[ -d "$SHARED" ]]; then
  check info-sample 0 "20 x 20 x 20" -- "$BIN" info --permissive "$SHARED/mrc_samples/EMD-3197.map"
  check info-sample-strict 1 "nversion 0.*--permissive" -- "$BIN" info "$SHARED/mrc_samples/EMD-3197.map"
else
  echo "skip: $SHARED absent, sample-file smoke tests not run"
fi
check info-missing 1 "nope.mrc" -- "$BIN" info "$WORK/nope.mrc"
# Resolved configurations: a folder output gets FOLDER/config.yaml, a file output OUT.config.yaml,
# with every flag (given or default) under its long name.
check config-simulate 0 "" -- "$BIN" -q simulate --preset tiny --out "$WORK/basic_sim" --seed 2
check config-simulate-written 0 "^preset: tiny" -- cat "$WORK/basic_sim/config.yaml"
check config-simulate-seed 0 "^seed: 2" -- cat "$WORK/basic_sim/config.yaml"
check config-convert 0 "" -- "$BIN" -q convert --in "$WORK/basic_sim/gt.mrc" --out "$WORK/gt16.mrc" --mode 12
check config-convert-written 0 "^mode: 12" -- cat "$WORK/gt16.config.yaml"
check config-eval 0 "" -- "$BIN" -q eval --in "$WORK/basic_sim/tomo.mrc" \
  --truth "$WORK/basic_sim/gt.mrc" --json "$WORK/eval.json"
check config-eval-written 0 "^json: .*eval.json" -- cat "$WORK/eval.config.yaml"
check config-reconstruct 0 "" -- "$BIN" -q reconstruct --tilt-series "$WORK/basic_sim/tilt_series.mrc" \
  --angles "$WORK/basic_sim/tilt_series.tlt" --thickness 32 --out "$WORK/rec.mrc"
check config-reconstruct-written 0 "^thickness: 32" -- cat "$WORK/rec.config.yaml"
