# What a new user hit (issue 21): full disks, non-finite volumes, refused runs that left files,
# interrupted runs, odd files (sourced by smoke.sh: check, $BIN, $WORK, $SRC).
F="$WORK/fail"
mkdir -p "$F"
HOST=$(hostname | tr './' '__')
# Runs a command with writes limited to $1 KiB (SIGXFSZ ignored: a write past it fails with
# EFBIG, as on a full disk).
limited() {
  local kib=$1
  shift
  bash -c 'trap "" XFSZ; ulimit -f "$0"; exec "$@"' "$kib" "$@"
}
# No temporaries left in folder $1 (files or folders named .*.tmp).
no_temporaries() { [[ -z $(find "$1" -maxdepth 1 -name '.*.tmp') ]]; }
# A copy of MRC $1 as $2 with the 4-byte little-endian int32 at byte $3 set to $4.
mrc_patch_i32() {
  [[ "$1" == "$2" ]] || cp "$1" "$2"
  python3 -c "import struct,sys; f=open(sys.argv[1],'r+b'); f.seek(int(sys.argv[2])); f.write(struct.pack('<i', int(sys.argv[3])))" "$2" "$3" "$4"
}

if "$BIN" -q simulate --preset tiny --out "$F/sim" > /dev/null 2>&1 && [[ -f "$F/sim/even.mrc" ]]; then
  S="$F/sim"
  TINY=(--opt depth=1 --opt base_channels=4 --opt convs_per_level=1 --patch 16 --batch 2
        --no-progress --threads 1)
  PAIR=(--method n2n --even "$S/even.mrc" --odd "$S/odd.mrc")

  # Item 2: a checkpoint write that fails (file-size limit) is one line, rc 1, no temporary;
  # the same on --resume, where the earlier checkpoint stays readable.
  mkdir -p "$F/disk"
  check full-disk-train 1 "m.uwm: cannot write.*(File too large|No space)" -- limited 64 \
    "$BIN" train "${PAIR[@]}" --out "$F/disk/m.uwm" --steps 1 --patch 16 --batch 1 --no-progress
  check full-disk-train-no-tmp 0 "" -- no_temporaries "$F/disk"
  check full-disk-train-rerun 0 "wrote" -- "$BIN" train "${PAIR[@]}" --out "$F/disk/m.uwm" \
    --steps 2 --stop-after 1 --patch 16 --batch 1 --no-progress
  check full-disk-resume 1 "m.uwm: cannot write" -- limited 64 "$BIN" train "${PAIR[@]}" \
    --out "$F/disk/m.uwm" --steps 2 --patch 16 --batch 1 --no-progress --resume
  check full-disk-resume-no-tmp 0 "" -- no_temporaries "$F/disk"
  check full-disk-resume-model-intact 0 "resuming at step 1 of 2" -- "$BIN" train "${PAIR[@]}" \
    --out "$F/disk/m.uwm" --steps 2 --patch 16 --batch 1 --no-progress --resume
  # The same on a real full filesystem (a 1 MiB tmpfs) when this runs as root and may mount.
  mkdir -p "$F/tmpfs"
  if [[ $(id -u) -eq 0 ]] && mount -t tmpfs -o size=1m tmpfs "$F/tmpfs" 2>/dev/null; then
    check enospc-train 1 "m.uwm: cannot write.*No space left" -- "$BIN" train "${PAIR[@]}" \
      --out "$F/tmpfs/m.uwm" --steps 1 --patch 16 --batch 1 --no-progress
    check enospc-train-no-tmp 0 "" -- no_temporaries "$F/tmpfs"
    umount "$F/tmpfs"
  else
    echo "skip: not root or no tmpfs mount; the full-disk checks use a file-size limit only"
  fi

  # Item 6: simulate on a full disk keeps nothing, and the rerun is not refused.
  check full-disk-simulate 1 "(File too large|No space)" -- limited 600 "$BIN" simulate \
    --preset tiny --out "$F/sim_full"
  check full-disk-simulate-no-partial 1 "" -- test -e "$F/sim_full/gt.mrc"
  check full-disk-simulate-no-tmp 0 "" -- no_temporaries "$F"
  check full-disk-simulate-rerun 0 "wrote" -- "$BIN" simulate --preset tiny --out "$F/sim_full"

  # Item 3: non-finite volumes are refused by eval, ring and report, naming the file.
  cp "$S/tomo.mrc" "$F/nan.mrc"
  printf '\x00\x00\xc0\x7f' | dd of="$F/nan.mrc" bs=1 seek=2048 conv=notrunc status=none
  check nan-eval 1 "nan.mrc: 1 NaN" -- "$BIN" eval --in "$F/nan.mrc" --truth "$S/gt.mrc"
  check nan-eval-halves 1 "nan.mrc: 1 NaN" -- "$BIN" eval --half1 "$S/tomo.mrc" --half2 "$F/nan.mrc"
  check nan-ring 1 "nan.mrc: 1 NaN" -- "$BIN" ring --in "$F/nan.mrc"
  mkdir -p "$F/runs/nanrun"
  cp "$F/nan.mrc" "$F/runs/nanrun/restored.mrc"
  check nan-report 1 "restored.mrc: 1 NaN" -- "$BIN" report --runs "$F/runs/nanrun" \
    --truth "$S/gt.mrc" --out "$F/nan.html"

  # Item 4: a refused train touches no output, so the corrected rerun runs.
  bad_train() {  # bad_train NAME PATTERN ARGS...: refused, and no MODEL.* left behind
    local name=$1 pattern=$2
    shift 2
    check "refused-$name" 1 "$pattern" -- "$BIN" train --out "$F/bad.uwm" "$@"
    check "refused-$name-nothing-written" 0 "^0$" -- bash -c "ls '$F' | grep -c '^bad\.' || true"
  }
  bad_train patch "larger than the volume" "${PAIR[@]}" --steps 1 --patch 128
  bad_train batch "batch: -1 is negative" "${PAIR[@]}" --steps 1 --batch -1
  bad_train steps "negative" "${PAIR[@]}" --steps -5
  bad_train lr "lr: -1" "${PAIR[@]}" --steps 1 --lr -1
  bad_train val-fraction "val-fraction" "${PAIR[@]}" --steps 1 --val-fraction 2
  bad_train opt-depth "depth" "${PAIR[@]}" --steps 1 --opt depth=-1
  bad_train tilt-range "90|tilt" "${PAIR[@]}" --steps 1 --tilt-range -95 95
  bad_train wrong-input "give --in" --method n2v --even "$S/even.mrc" --odd "$S/odd.mrc" --steps 1
  check refused-then-corrected 0 "wrote" -- "$BIN" train "${PAIR[@]}" --out "$F/bad.uwm" \
    --steps 1 "${TINY[@]}"

  # Item 5: stale temporaries of the same output (dead PID on this host) are swept at the next
  # start; a live process's are kept.
  true & dead=$!
  wait "$dead"
  : > "$F/.r.mrc.$HOST.$dead.123.tmp"
  : > "$F/.r.mrc.$HOST.$$.456.tmp"
  check stale-swept 0 "removed .*\.r\.mrc\.$HOST\.$dead\.123\.tmp" -- "$BIN" restore \
    --model "$F/bad.uwm" --even "$S/even.mrc" --odd "$S/odd.mrc" --out "$F/r.mrc" --no-progress
  check stale-swept-gone 1 "" -- test -e "$F/.r.mrc.$HOST.$dead.123.tmp"
  check stale-live-kept 0 "" -- test -e "$F/.r.mrc.$HOST.$$.456.tmp"
  rm -f "$F/.r.mrc.$HOST.$$.456.tmp"
  # SIGTERM and SIGINT during a restore remove its temporaries (--save-halves: three).
  for sig in TERM INT; do
    mkdir -p "$F/sig$sig"
    "${DEFAULT_SIGNALS[@]}" "$BIN" restore --model "$F/bad.uwm" --in "$S/tomo.mrc" --out "$F/sig$sig/r.mrc" \
      --tile 16 --overlap 8 --threads 1 --no-progress > /dev/null 2>&1 &
    pid=$!
    for _ in $(seq 1 200); do
      [[ -n $(find "$F/sig$sig" -name '.r.mrc.*.tmp') ]] && break
      sleep 0.05
    done
    saw=$(find "$F/sig$sig" -name '.r.mrc.*.tmp' | wc -l)
    kill -s "$sig" "$pid" 2>/dev/null
    wait "$pid"
    rc=$?
    if [[ $saw -gt 0 && $rc -ne 0 ]]; then
      check "signal-$sig-no-tmp" 0 "" -- no_temporaries "$F/sig$sig"
    else
      echo "skip: restore ended before SIG$sig (saw $saw temporaries, rc $rc)"
    fi
  done

  # Item 8: the smaller ones.
  check minutes-last-loss 0 "last loss [0-9.]*[1-9]" -- "$BIN" train "${PAIR[@]}" \
    --out "$F/t.uwm" --minutes 0.02 --log-every 100000 "${TINY[@]}"
  check minutes-log-not-empty 0 '"step":[1-9]' -- cat "$F/t.train.jsonl"
  "$BIN" -q train "${PAIR[@]}" --out "$F/k.uwm" --steps 4 --stop-after 2 --log-every 1 \
    "${TINY[@]}" > /dev/null 2>&1
  # What a run killed between two checkpoints leaves: log lines past the checkpoint.
  echo '{"elapsed_s":1.0,"loss":9.75,"lr":0.0001,"step":3,"steps_per_s":1.0}' >> "$F/k.train.jsonl"
  check resume-says-step 0 "resuming at step 2 of 4" -- "$BIN" train "${PAIR[@]}" \
    --out "$F/k.uwm" --steps 4 --log-every 1 --resume "${TINY[@]}"
  check resume-log-once 0 "^1 1 1 1$" -- bash -c "for s in 1 2 3 4; do grep -c \"\\\"step\\\":\$s,\" '$F/k.train.jsonl'; done | xargs"
  "$BIN" -q simulate --preset tiny --nx 40 --ny 48 --nz 24 --voxel-size 3.7 --out "$F/vs" \
    > /dev/null 2>&1
  check eval-voxel-rounding 0 "^[^a]*$" -- bash -c "'$BIN' eval --in '$F/vs/tomo.mrc' \
    --truth '$F/vs/gt.mrc' 2>&1 | grep -i anisotropic; true"
  echo "this is not an MRC file, just text long enough to fill a header ..." > "$F/notes.txt"
  head -c 2000 /dev/zero | tr '\0' 'x' >> "$F/notes.txt"
  check info-not-mrc 1 "notes.txt: not an MRC file" -- "$BIN" info "$F/notes.txt"
  check info-not-mrc-no-permissive-advice 1 "" -- bash -c \
    "'$BIN' info '$F/notes.txt' 2>&1 | grep permissive"
  check cli-error-rc 1 "bogus" -- "$BIN" info "$S/gt.mrc" --bogus
  check cli-missing-value-rc 1 "steps" -- "$BIN" train --steps
  if python3 -c "import struct" 2>/dev/null; then
    # One slice: nz = mz = 1 (offsets 8 and 36), data cut to one section.
    mrc_patch_i32 "$S/gt.mrc" "$F/one.mrc" 8 1
    mrc_patch_i32 "$F/one.mrc" "$F/one.mrc" 36 1
    truncate -s $((1024 + 64 * 64 * 4)) "$F/one.mrc"
    cp "$F/one.mrc" "$F/one_b.mrc"
    check ssim-one-slice-names-file 1 "one.mrc.*SSIM" -- "$BIN" eval --in "$F/one.mrc" \
      --truth "$F/one_b.mrc"
    # A stack of two 16-section volumes (ispg 401 at byte 88, mz 16 at byte 36).
    mrc_patch_i32 "$S/gt.mrc" "$F/stack.mrc" 88 401
    mrc_patch_i32 "$F/stack.mrc" "$F/stack.mrc" 36 16
    check stack-401-refused 1 "stack.mrc: .*ispg 401.*stack of volumes" -- "$BIN" info "$F/stack.mrc"
    mrc_patch_i32 "$F/stack.mrc" "$F/stack1.mrc" 36 32
    check stack-401-one-volume-ok 0 "64 x 64 x 32" -- "$BIN" info "$F/stack1.mrc"
  fi
else
  echo "skip: simulate unavailable, failure smoke tests not run"
fi
# The walkthrough's restores write different files; restore's --tile default as --help says.
check readme-restore-outputs-distinct 0 "^$" -- bash -c \
  "grep -o 'restore .*--out [^ ]*\|^ *--out [^ ]*' '$SRC/README.md' | grep -o -- '--out [^ ]*' | sort | uniq -d"
check docs-tile-default 0 "--tile., default $("$BIN" restore --help | grep -o -- '--tile INT *[^ ]*' | head -1 | grep -o '[0-9]*$')" \
  -- grep -h -- "--tile., default" "$SRC/README.md" "$SRC/docs/training.md"
# `make demo` builds the program only; `make install PREFIX=...` installs it and its maps.
check make-demo-builds-cli-only 0 "--target unwedge_cli" -- make -n -s -C "$SRC" demo \
  BUILD="$(dirname "$BIN")"
check make-install-rule 0 "cmake --install" -- make -n -s -C "$SRC" install PREFIX="$F/prefix" \
  BUILD="$(dirname "$BIN")"
if cmake --install "$(dirname "$BIN")" --prefix "$F/prefix" > /dev/null 2>&1; then :; fi
check install-program 0 "unwedge [0-9]" -- "$F/prefix/bin/unwedge" --version
check install-maps 0 "" -- test -d "$F/prefix/share/unwedge/templates_10A"
