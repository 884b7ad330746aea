#!/usr/bin/env bash
# Opens the page `unwedge demo-mask` writes (demo_mask.html) in headless Chromium from the file
# system, moves its mask-ratio slider through the query parameter the page reads (?ratio=I,
# ?mode=wedge) and checks from screenshots, read back with python3 + PIL, that the shown images
# changed while the rest of the page stayed put; also that the page is self-contained (no
# network reference), loads without console errors and reports the state asked for.
# A tiny run: a 16^3 view of the tiny simulated preset, 2 training steps per model.
# usage: demo_page_browser_test.sh UNWEDGE_BINARY SOURCE_DIR [SCREENSHOT_DIR]
# Exit 77 (skip) when chromium or /usr/bin/python3 with PIL is absent.
set -uo pipefail
BIN=$1
SRC=$2
COPY=${3:-}
source "$SRC/tests/browser_common.sh"  # CHROMIUM (or skip) and chrome()
if ! /usr/bin/python3 -c "import PIL" 2>/dev/null; then
  echo "skip: python3 PIL missing"
  exit 77
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

"$BIN" -q --threads 1 simulate --preset tiny --seed 3 --out "$WORK/sim" >/dev/null || {
  echo "FAIL: simulate"; exit 1; }
"$BIN" -q --threads 1 demo-mask --in "$WORK/sim/gt.mrc" --out "$WORK/demo" --size 16 \
  --patch 4 --steps 2 --batch 2 --ratios 0.15,0.5,0.9 --widths 30,75 \
  --view "specimen=$WORK/sim/gt.mrc" --map "protein=$SRC/data/templates_10A/1f4a.mrc" || {
  echo "FAIL: unwedge demo-mask"; exit 1; }
PAGE="$WORK/demo/demo_mask.html"
fails=0
if grep -qE '(src|href)="(https?:)?//|<script[^>]* src=|<link ' "$PAGE"; then
  echo "FAIL: the page references an external resource"
  fails=$((fails + 1))
fi

# The page reads the query parameters: the DOM says which state it shows, and where its three
# images are (for the pixel checks below, at the screenshots' window size).
chrome "$WORK/dom.log" --window-size=1000,700 --dump-dom "file://$PAGE?view=1&mode=patch&ratio=2" \
  >"$WORK/dom.html"
boxes=$(grep -o 'data-boxes="[^"]*"' "$WORK/dom.html" | sed 's/data-boxes="//; s/"$//')
if ! grep -q 'data-state="1/patch/2"' "$WORK/dom.html"; then
  echo "FAIL: ?view=1&mode=patch&ratio=2 not shown (body: $(grep -o '<body[^>]*>' "$WORK/dom.html"))"
  fails=$((fails + 1))
fi
if ! grep -q '90 % of patches hidden' "$WORK/dom.html"; then
  echo "FAIL: the state label does not say 90 % hidden"
  fails=$((fails + 1))
fi
if grep -E 'CONSOLE|Uncaught|ERR_FILE_NOT_FOUND|Failed to load' "$WORK/dom.log" | grep -v 'dbus'; then
  echo "FAIL: console errors while loading the page (above)"
  fails=$((fails + 1))
fi

shot() {  # shot NAME QUERY
  chrome "$WORK/shot_$1.log" --hide-scrollbars --window-size=1000,700 \
    --run-all-compositor-stages-before-draw --screenshot="$WORK/$1.png" "file://$PAGE?$2" \
    >/dev/null
}
shot r0 "view=0&mode=patch&ratio=0"
shot r0b "view=0&mode=patch&ratio=0"
shot r2 "view=0&mode=patch&ratio=2"
shot w1 "view=0&mode=wedge&ratio=1"
# Changed pixels between screenshots, in the image row (the three <img>) and elsewhere;
# the same state twice must give the same picture.
verdict=$(/usr/bin/python3 - "$WORK" "$boxes" <<'PY'
import sys
from PIL import Image, ImageChops
w = sys.argv[1]
boxes = [tuple(int(v) for v in b.split(",")) for b in sys.argv[2].split(";")] if sys.argv[2] else []
ims = {n: Image.open(f"{w}/{n}.png").convert("RGB") for n in ("r0", "r0b", "r2", "w1")}
def changed(a, b, box=None):
    d = ImageChops.difference(ims[a], ims[b]).convert("L").point(lambda v: 255 if v > 24 else 0)
    if box:
        d = d.crop((box[0], box[1], box[0] + box[2], box[1] + box[3]))
    return sum(1 for v in d.getdata() if v), d.getbbox()
fails = []
if len(boxes) != 3 or any(b[2] < 16 or b[3] < 16 for b in boxes):
    fails.append(f"image boxes not reported: {boxes}")
else:
    # Moving the slider changes the masked input and the reconstruction, not the structure.
    for i, name in enumerate(("structure", "masked input", "reconstruction")):
        n, _ = changed("r0", "r2", boxes[i])
        area = boxes[i][2] * boxes[i][3]
        print(f"{name}: {n} of {area} pixels changed between ratio 0 and 2")
        if i == 0 and n:
            fails.append(f"the structure image changed with the slider ({n} pixels)")
        if i > 0 and n < area // 20:
            fails.append(f"the {name} barely changed with the slider ({n} of {area} pixels)")
same, _ = changed("r0", "r0b")
if same:
    fails.append(f"the same state rendered twice differs in {same} pixels")
for other in ("r2", "w1"):
    n, box = changed("r0", other)
    if n < 2000:
        fails.append(f"ratio 0 -> {other}: only {n} pixels changed")
print(f"pixels changed: r0/r0b {same}, r0/r2 {changed('r0','r2')[0]} in {changed('r0','r2')[1]}, "
      f"r0/w1 {changed('r0','w1')[0]}")
print("FAIL: " + "; ".join(fails) if fails else "ok")
PY
)
echo "$verdict"
if [[ "$verdict" != *ok ]]; then
  fails=$((fails + 1))
fi
if [[ $fails -eq 0 && -n "$COPY" ]]; then
  mkdir -p "$COPY" && cp "$WORK"/r0.png "$WORK"/r2.png "$WORK"/w1.png "$COPY"/ &&
    echo "screenshots copied to $COPY"
fi
echo "demo page browser test: $fails failures"
[[ $fails -eq 0 ]]
