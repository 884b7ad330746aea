# Fault tests through the real binary (issue 19): training SIGKILLed at random moments (also
# while it writes a checkpoint) and resumed ends with the weights of an uninterrupted run;
# SIGTERM/SIGINT stop training at a step boundary with a valid checkpoint; restore, sample,
# simulate, convert and reconstruct SIGKILLed while writing leave no output or the previous
# complete one; two runs writing one output at once leave one run's complete file.
# Sourced by smoke.sh: check, $BIN, $WORK, $SRC. Seeded: FAULT_SEED=N reruns a sequence.
Q="$WORK/faults"
mkdir -p "$Q"
FAULT_SEED=${FAULT_SEED:-$(( $(date +%s) % 100000 ))}
RANDOM=$FAULT_SEED
echo "faults: FAULT_SEED=$FAULT_SEED"
# A temporary of output $2 in folder $1 written by process $3 (`.NAME.HOST.PID.RAND.tmp`).
temps_of() { compgen -G "$1/.$2.*.$3.*.tmp" > /dev/null; }
# wait for process $1, SIGKILLing it after $2 seconds (a signal that failed to stop it must not
# hang the suite); the exit status is the process's.
wait_at_most() {
  ( sleep "$2"; kill -KILL "$1" 2>/dev/null ) &
  local dog=$! rc
  wait "$1"
  rc=$?
  kill "$dog" 2>/dev/null
  wait "$dog" 2>/dev/null
  return $rc
}
# Exit 0 when files $1 and $2 have the same bytes, or both are absent.
same_or_absent() { [[ ! -e $1 && ! -e $2 ]] || cmp -s "$1" "$2"; }

if "$BIN" -q simulate --preset tiny --out "$Q/sim" > /dev/null 2>&1 && [[ -f "$Q/sim/even.mrc" ]]; then
  S="$Q/sim"
  NET=(--method n2n --even "$S/even.mrc" --odd "$S/odd.mrc" --opt depth=1 --opt base_channels=4
       --opt convs_per_level=1 --patch 16 --batch 2 --no-progress --log-every 1 --val-every 5)
  STEPS=200  # room for the sessions it takes to catch a kill during a write (a ms-long window)

  # 1. SIGKILL at random moments, resumed each time (a run killed before its first checkpoint
  # starts afresh with --overwrite). Two kinds of kill alternate: as soon as a checkpoint's
  # temporary appears (during the write), and a random 0-30 ms after a new checkpoint was
  # renamed into place (during a step, a log line or the next write).
  "$BIN" --threads 1 -q train "${NET[@]}" --steps $STEPS --out "$Q/ref.uwm" > /dev/null 2>&1
  M="$Q/k.uwm"
  kills=0 during_write=0 starts=0 done_rc=1
  while [[ $starts -lt 250 ]]; do  # each session advances at least one step of $STEPS
    starts=$((starts + 1))
    if [[ -e $M ]]; then resume=(--resume); else resume=(--overwrite); fi
    "$BIN" --threads 1 -q train "${NET[@]}" --steps $STEPS --checkpoint-every 1 --out "$M" \
      "${resume[@]}" > "$Q/k.out" 2>&1 &
    pid=$!
    touch "$Q/k.started"
    mode=$(( kills % 3 ))  # 0: kill during a checkpoint write; 1, 2: after a new checkpoint
    # A kill aimed at a write may land just after the rename: after 24 kills, aim only at writes
    # until 3 of them hit one.
    [[ $kills -ge 24 ]] && mode=0
    enough=$(( kills >= 24 && (during_write >= 3 || starts > 60) && during_write >= 1 ))
    killed=0 seen=0
    while kill -0 "$pid" 2>/dev/null; do
      [[ $enough -eq 1 ]] && break  # enough: this session runs to the end
      if [[ $mode -eq 0 ]]; then
        if temps_of "$Q" k.uwm "$pid"; then kill -KILL "$pid"; killed=1; break; fi
        # On a loaded machine the poll can miss every write of a session, which then trains to
        # the end before the kills are done (CI, 2026-12-05: 12 kills, then a finished run).
        # A write missed twice over is followed by a kill after the rename instead.
        if [[ $seen -eq 0 && $M -nt $Q/k.started ]]; then
          touch "$Q/k.seen"
          seen=1
        elif [[ $seen -eq 1 && $M -nt $Q/k.seen ]]; then
          kill -KILL "$pid" 2>/dev/null && killed=1
          break
        fi
      else
        if [[ $M -nt $Q/k.started ]]; then  # a checkpoint renamed into place since the start
          sleep "0.0$(( RANDOM % 3 ))$(( RANDOM % 10 ))"
          kill -KILL "$pid" 2>/dev/null && killed=1
          break
        fi
      fi
    done
    wait "$pid" 2>/dev/null
    rc=$?
    if [[ $killed -eq 1 && $rc -eq 137 ]]; then
      kills=$((kills + 1))
      temps_of "$Q" k.uwm "$pid" && during_write=$((during_write + 1))
    elif [[ $rc -eq 0 ]]; then  # finished: by plan (enough kills), or a session the kills missed
      done_rc=0  # (the counts are checked below: at least 20 kills, at least 1 during a write)
      break
    elif [[ $rc -ne 137 ]]; then
      echo "faults: train session $starts ended rc $rc:"; head -5 "$Q/k.out"
      break
    fi
  done
  echo "faults: $kills SIGKILLs ($during_write while a checkpoint was being written) in $starts starts"
  check kill-resume-finished 0 "" -- test $done_rc -eq 0
  check kill-resume-at-least-20-kills 0 "" -- test $kills -ge 20
  check kill-resume-kills-during-write 0 "" -- test $during_write -ge 1
  check kill-resume-weights-equal 0 "tensors .* equal" -- \
    python3 "$SRC/tests/cli/uwm_tensors.py" "$Q/ref.uwm" "$M"
  check kill-resume-no-tmp 0 "" -- bash -c "! compgen -G '$Q/.k.uwm.*.tmp'"
  check kill-resume-log-once 0 "^$STEPS$" -- bash -c \
    "python3 -c \"import json,sys; print(len({json.loads(l)['step'] for l in open(sys.argv[1])}))\" '$Q/k.train.jsonl'"

  # 1b. The rare kill the loop above can hit: after the last step's checkpoint, before the final
  # one. Resumed, that session takes no step; its checkpoint must still equal the reference
  # (it once kept the optimizer's initial learning rate). Made deterministic with --stop-after.
  "$BIN" --threads 1 -q train "${NET[@]}" --steps 6 --out "$Q/end_ref.uwm" > /dev/null 2>&1
  "$BIN" --threads 1 -q train "${NET[@]}" --steps 6 --stop-after 6 --out "$Q/end.uwm" \
    > /dev/null 2>&1
  "$BIN" --threads 1 -q train "${NET[@]}" --steps 6 --out "$Q/end.uwm" --resume > /dev/null 2>&1
  check resume-at-end-equal 0 "tensors .* equal" -- \
    python3 "$SRC/tests/cli/uwm_tensors.py" "$Q/end_ref.uwm" "$Q/end.uwm"

  # 2. SIGTERM and SIGINT stop at a step boundary: the checkpoint holds step N, and it is the
  # model of an uninterrupted run stopped there by --stop-after N (bitwise).
  for sig in TERM INT; do
    G="$Q/sig$sig.uwm"
    "${DEFAULT_SIGNALS[@]}" "$BIN" --threads 1 train "${NET[@]}" --steps 100000 --out "$G" \
      > "$Q/sig.out" 2>&1 &
    pid=$!
    for _ in $(seq 1 600); do
      [[ $(grep -c . "$Q/sig$sig.train.jsonl" 2>/dev/null) -ge 3 ]] && break
      sleep 0.05
    done
    kill -s "$sig" "$pid"
    wait_at_most "$pid" 60
    rc=$?
    want=143
    [[ $sig == INT ]] && want=130
    n=$(grep -o "stopped by SIG$sig after step [0-9]*" "$Q/sig.out" | grep -o '[0-9]*$')
    check "sig$sig-exit-status" 0 "" -- test "$rc" -eq "$want"
    check "sig$sig-says-step" 0 "" -- test -n "$n"
    cp "$G" "$Q/sig$sig.copy.uwm"
    # Its log as a run killed while writing a line leaves it: the last line cut, no newline.
    cp "$Q/sig$sig.train.jsonl" "$Q/sig$sig.copy.train.jsonl"
    printf '{"elapsed_s":1.5,"loss":0.7' >> "$Q/sig$sig.copy.train.jsonl"
    check "sig$sig-checkpoint-resumes" 0 "resuming at step ${n:-x} of 100000" -- \
      "$BIN" --threads 1 train "${NET[@]}" --steps 100000 --out "$Q/sig$sig.copy.uwm" \
      --stop-after $(( ${n:-0} + 1 )) --resume
    check "sig$sig-resumed-log-lines-whole" 0 "^ok$" -- python3 -c "import json, sys
[json.loads(l) for l in open(sys.argv[1])]
print('ok')" "$Q/sig$sig.copy.train.jsonl"
    "$BIN" --threads 1 -q train "${NET[@]}" --steps 100000 --stop-after "${n:-1}" \
      --out "$Q/sig${sig}_ref.uwm" > /dev/null 2>&1
    check "sig$sig-weights-equal-stop-after" 0 "equal" -- \
      python3 "$SRC/tests/cli/uwm_tensors.py" "$G" "$Q/sig${sig}_ref.uwm"
  done
  # Under nohup (SIGHUP ignored at the start) a hangup does not stop training.
  nohup "$BIN" --threads 1 -q train "${NET[@]}" --steps 100000 --out "$Q/hup.uwm" \
    > "$Q/hup.out" 2>&1 &
  pid=$!
  for _ in $(seq 1 600); do
    [[ $(grep -c . "$Q/hup.train.jsonl" 2>/dev/null) -ge 2 ]] && break
    sleep 0.05
  done
  kill -s HUP "$pid"
  sleep 0.5
  check nohup-sighup-ignored 0 "" -- kill -0 "$pid"
  kill -s TERM "$pid"
  wait_at_most "$pid" 60
  rc=$?
  check nohup-then-sigterm-stops 0 "" -- test $rc -eq 143

  # 3. SIGKILL while an output is being written. Each command runs once uninterrupted (REF),
  # then again at the same path (same command line, so the same bytes: outputs are seeded) and
  # is SIGKILLed as soon as a temporary appears in its folder, up to 12 tries until one kill
  # leaves a temporary behind (it came mid-write). Afterwards every file at the output is absent
  # or equal to REF's (or, with --overwrite over an older output, equal to that one): never a
  # partial file.
  # Same bytes, but for the run time a JSON summary records ("seconds": ...).
  same_file() {
    if [[ $1 == *.json ]]; then
      cmp -s <(grep -v '"seconds"' "$1") <(grep -v '"seconds"' "$2")
    else
      cmp -s "$1" "$2"
    fi
  }
  # files_complete P REF [OLD]: each file under P (a file or a folder) equals REF's or OLD's.
  files_complete() {
    local p=$1 ref=$2 old=${3:-} f rel
    [[ -e $p ]] || return 0
    if [[ -f $p ]]; then same_file "$p" "$ref" || { [[ -n $old ]] && same_file "$p" "$old"; }; return; fi
    while IFS= read -r f; do
      rel=${f#"$p"/}
      same_file "$f" "$ref/$rel" || { [[ -n $old ]] && same_file "$f" "$old/$rel"; } || {
        echo "partial or foreign: $f"; return 1; }
    done < <(find "$p" -type f ! -name '.*.tmp' ! -path '*/.*.tmp/*')  # temporaries: swept later
  }
  # kill_mid_write NAME DIR OUT [OLD] -- command...: OUT is written in folder DIR.
  kill_mid_write() {
    local name=$1 dir=$2 out=$3 old=""
    shift 3
    if [[ $1 != -- ]]; then old=$1; shift; fi
    shift
    rm -rf "$out" "$out.ref"
    "$@" > /dev/null 2>&1
    mv "$out" "$out.ref"
    local try hit=0 pid
    for try in $(seq 1 12); do  # under load the poll can miss a short write several times
      rm -rf "$out"
      [[ -n $old ]] && cp -r "$old" "$out"
      "$@" > /dev/null 2>&1 &
      pid=$!
      while kill -0 "$pid" 2>/dev/null; do
        if compgen -G "$dir/.*.tmp" > /dev/null; then kill -KILL "$pid"; break; fi
      done
      wait "$pid" 2>/dev/null
      if compgen -G "$dir/.*.tmp" > /dev/null || find "$out" -name '.*.tmp' 2>/dev/null | grep -q .; then
        hit=1
      fi
      check "kill-$name-try$try-complete-or-previous" 0 "" -- files_complete "$out" "$out.ref" "$old"
      rm -rf "$dir"/.*.tmp
      find "$out" -name '.*.tmp' -exec rm -rf {} + 2>/dev/null
      [[ $hit -eq 1 ]] && break
    done
    check "kill-$name-mid-write" 0 "" -- test $hit -eq 1
  }
  W="$Q/w"
  mkdir -p "$W"
  kill_mid_write restore "$W" "$W/r.mrc" -- "$BIN" --threads 1 restore --model "$Q/ref.uwm" \
    --in "$S/tomo.mrc" --out "$W/r.mrc" --tile 16 --overlap 8 --no-progress --overwrite
  kill_mid_write simulate "$W" "$W/simk" -- "$BIN" simulate --preset tiny --out "$W/simk"
  kill_mid_write reconstruct "$W" "$W/rec.mrc" -- "$BIN" --threads 1 reconstruct \
    --tilt-series "$S/tilt_series.mrc" --angles "$S/tilt_series.tlt" --thickness 1024 \
    --out "$W/rec.mrc" --overwrite
  kill_mid_write convert "$W" "$W/c.mrc" -- "$BIN" convert --in "$W/rec.mrc.ref" \
    --out "$W/c.mrc" --mode 12 --overwrite
  # Over an older complete output: it stays until the new one is complete.
  kill_mid_write convert-over-old "$W" "$W/c2.mrc" "$S/tomo.mrc" -- "$BIN" convert \
    --in "$W/rec.mrc.ref" --out "$W/c2.mrc" --overwrite
  kill_mid_write restore-over-old "$W" "$W/r2.mrc" "$S/tomo.mrc" -- "$BIN" --threads 1 restore \
    --model "$Q/ref.uwm" --in "$S/tomo.mrc" --out "$W/r2.mrc" --tile 16 --overlap 8 \
    --no-progress --overwrite
  if "$BIN" methods | grep -q cryowgen-mc &&
     "$BIN" --threads 1 -q train --method cryowgen-mc --even "$S/even.mrc" --odd "$S/odd.mrc" \
       --out "$Q/mc.uwm" --opt depth=1 --opt base_channels=4 --opt convs_per_level=1 \
       --patch 16 --batch 2 --steps 2 --no-progress > /dev/null 2>&1; then
    kill_mid_write sample "$W/smp" "$W/smp" -- "$BIN" --threads 1 sample --model "$Q/mc.uwm" \
      --in "$S/tomo.mrc" --out-dir "$W/smp" --n 2 --tile 32 --overlap 8 --no-report \
      --no-progress
  fi

  # 4. Two runs writing one output at once: the file is one run's complete output (they differ:
  # float32 and float16 of the same volume), five times over.
  "$BIN" convert --in "$W/rec.mrc.ref" --out "$W/a.mrc" --mode 2 > /dev/null 2>&1
  "$BIN" convert --in "$W/rec.mrc.ref" --out "$W/b.mrc" --mode 12 > /dev/null 2>&1
  # The labels (bytes 224-1023) name the command line, whose --out differs.
  same_but_labels() {
    cmp -s <(head -c 224 "$1") <(head -c 224 "$2") && cmp -s <(tail -c +1025 "$1") <(tail -c +1025 "$2")
  }
  export -f same_but_labels
  for i in 1 2 3 4 5; do
    "$BIN" convert --in "$W/rec.mrc.ref" --out "$W/ab.mrc" --mode 2 --overwrite > /dev/null 2>&1 &
    p1=$!
    "$BIN" convert --in "$W/rec.mrc.ref" --out "$W/ab.mrc" --mode 12 --overwrite > /dev/null 2>&1 &
    p2=$!
    wait "$p1" "$p2"
    check "concurrent-convert-$i-one-run" 0 "" -- bash -c \
      "same_but_labels '$W/ab.mrc' '$W/a.mrc' || same_but_labels '$W/ab.mrc' '$W/b.mrc'"
  done
  check concurrent-convert-no-tmp 0 "" -- bash -c "! compgen -G '$W/.ab.mrc.*.tmp'"
else
  echo "skip: simulate unavailable, fault tests not run"
fi
