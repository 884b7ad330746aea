# Smoke tests of the representation commands (sourced by smoke.sh: $BIN, $WORK, check):
# mae/contrastive training, embed, eval-embed, and demo-mask's report with its figures.
RS="$WORK/repr_sim"
if "$BIN" -q simulate --preset tiny --out "$RS" --seed 5 > /dev/null 2>&1 && [[ -f "$RS/tomo.mrc" ]]; then
  MAE_TINY=(--opt dim=24 --opt depth=1 --opt heads=2 --opt decoder_dim=12 --opt decoder_depth=1
            --opt decoder_heads=2 --patch 16 --batch 2 --steps 3 --no-progress --threads 1)
  # The transformer methods train in fp32 whatever the CPU: auto says so, bf16 is refused.
  check repr-train-mae 0 "precision fp32 \(auto: mae runs in fp32 only" -- "$BIN" train \
    --method mae --in "$RS/tomo.mrc" --out "$WORK/mae.uwm" "${MAE_TINY[@]}"
  check repr-train-mae-bf16 1 "--precision bf16: method mae runs in fp32 only" -- "$BIN" train \
    --method mae --in "$RS/tomo.mrc" --out "$WORK/mae_bf16.uwm" "${MAE_TINY[@]}" --precision bf16
  check repr-train-mae-bf16-nothing 1 "" -- test -e "$WORK/mae_bf16.uwm"
  check repr-train-contrastive 0 "wrote" -- "$BIN" train --method contrastive --in "$RS/tomo.mrc" \
    --out "$WORK/con.uwm" --opt base=4 --opt levels=2 --patch 16 --batch 2 --steps 2 \
    --no-progress --threads 1
  check repr-embed-mae 0 "wrote [0-9]+ embeddings of dimension 24 \(mae model, box 16, pool mean, mean over 4 wedge-keeping flips\)" -- "$BIN" embed \
    --model "$WORK/mae.uwm" --in "$RS/tomo.mrc" --coords "$RS/particles.csv" \
    --out "$WORK/mae.emb.csv" --box 16 --pool mean
  # The defaults: the box from the particles' measured size (or 32, said, where the mean of the
  # boxes shows no particle), the tokens concatenated for mae.
  check repr-embed-mae-defaults 0 "box (16|24|32).*pool concat, mean over 4 wedge-keeping flips" -- \
    "$BIN" embed --model "$WORK/mae.uwm" --in "$RS/tomo.mrc" --coords "$RS/particles.csv" \
    --out "$WORK/mae.auto.csv"
  check repr-embed-no-flips 0 "box 16, pool mean\) to" -- "$BIN" embed --model "$WORK/mae.uwm" \
    --in "$RS/tomo.mrc" --coords "$RS/particles.csv" --out "$WORK/mae.noflip.csv" --box 16 \
    --pool mean --flips false
  check repr-embed-exists 1 "exists.*--overwrite" -- "$BIN" embed --model "$WORK/mae.uwm" \
    --in "$RS/tomo.mrc" --coords "$RS/particles.csv" --out "$WORK/mae.emb.csv" --box 16
  check repr-embed-contrastive 0 "contrastive model" -- "$BIN" embed --model "$WORK/con.uwm" \
    --in "$RS/tomo.mrc" --coords "$RS/particles.csv" --out "$WORK/con.emb.csv" --box 16
  check repr-embed-mae-concat 0 "dimension 192 \(mae model, box 16, pool concat" -- "$BIN" embed \
    --model "$WORK/mae.uwm" --in "$RS/tomo.mrc" --coords "$RS/particles.csv" \
    --out "$WORK/mae.cat.csv" --box 16 --pool concat
  check repr-embed-contrastive-concat 1 "pool: mean only" -- "$BIN" embed --model "$WORK/con.uwm" \
    --in "$RS/tomo.mrc" --coords "$RS/particles.csv" --out "$WORK/con.cat.csv" --box 16 \
    --pool concat
  check repr-eval-embed 0 "raw-voxels" -- "$BIN" eval-embed --emb "$WORK/mae.emb.csv" \
    --labels "$RS/particles.csv" --raw "$RS/tomo.mrc" --coords "$RS/particles.csv" --box 16 \
    --folds 2 --k 1 --json "$WORK/e.json" --svg "$WORK/e.svg"
  cut -d, -f3-5 "$RS/particles.csv" > "$WORK/coords_only.csv"
  check repr-eval-embed-no-class 1 "coords_only.csv: no class column" -- "$BIN" eval-embed \
    --emb "$WORK/mae.emb.csv" --labels "$WORK/coords_only.csv"
  check repr-contrastive-restore 1 "cannot restore" -- "$BIN" restore --model "$WORK/con.uwm" \
    --in "$RS/tomo.mrc" --out "$WORK/con_r.mrc"
  # demo-mask on a 16^3 cube of the tiny ground truth, 2 training steps per model: the report
  # must hold both montages (PNG data URIs) and both error plots (inline SVG).
  D="$WORK/demo_mask"
  check repr-demo-mask 0 "report.html" -- "$BIN" --threads 1 demo-mask --in "$RS/gt.mrc" \
    --out "$D" --size 16 --steps 2 --ratios 0.25,0.75 --widths 30,60
  # Each figure is in the report: the PNG montages byte for byte (base64 under the section's
  # title), the SVG plots' own <svg> text.
  check repr-demo-report-figures 0 "^figures 4$" -- /usr/bin/python3 -c "
import base64, sys
d = sys.argv[1]
html = open(d + '/report.html').read()
n = 0
for title, png in (('Hidden patches: masked input and reconstruction', 'mask_patches.png'),
                   ('Hidden Fourier wedge: wedged input and reconstruction', 'mask_wedge.png')):
    b64 = base64.b64encode(open(d + '/' + png, 'rb').read()).decode()
    n += ('alt=\"%s\" src=\"data:image/png;base64,%s\"' % (title, b64)) in html
for svg in ('error_vs_ratio.svg', 'error_vs_wedge.svg'):
    t = open(d + '/' + svg).read()
    n += t[t.index('<svg'):].strip() in html
print('figures', n)
" "$D"
  check repr-demo-exists 1 "exists.*--overwrite" -- "$BIN" --threads 1 demo-mask --in "$RS/gt.mrc" \
    --out "$D" --size 16 --steps 2
  check repr-demo-bad-size 1 "--size 12" -- "$BIN" demo-mask --in "$RS/gt.mrc" --out "$WORK/dm2" \
    --size 12
else
  echo "FAIL repr: simulate --preset tiny did not run"
  fails=$((fails + 1))
fi
