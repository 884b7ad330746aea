#!/usr/bin/env bash
# Opens an `unwedge report` page in headless Chromium from the file system (file://, no
# network), checks that it loaded without console errors and that every <img> decoded with a
# non-zero size, and takes a screenshot.
# usage: report_browser_test.sh UNWEDGE_BINARY SOURCE_DIR [SCREENSHOT_COPY.png]
# Exit 77 (skip) when chromium, /usr/bin/python3 + numpy + mrcfile are absent.
set -uo pipefail
BIN=$1
SRC=$2
COPY=${3:-}
source "$SRC/tests/browser_common.sh"  # CHROMIUM (or skip) and chrome()
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
/usr/bin/python3 "$SRC/tests/report_fixture.py" "$WORK/data" 40 >/dev/null
rc=$?
if [[ $rc -eq 77 ]]; then echo "skip: numpy/mrcfile missing for the fixture"; exit 77; fi
[[ $rc -eq 0 ]] || { echo "FAIL: fixture rc=$rc"; exit 1; }

"$BIN" report --json "$WORK/data/report.json" --out "$WORK/report.html" || {
  echo "FAIL: unwedge report"; exit 1; }
if grep -qE '(src|href)="(https?:)?//' "$WORK/report.html"; then
  echo "FAIL: the report references the network"
  exit 1
fi

chrome "$WORK/dom.log" --dump-dom "file://$WORK/report.html" >"$WORK/dom.html"
fails=0
if ! grep -q 'data-images-ok="yes"' "$WORK/dom.html"; then
  echo "FAIL: not every image decoded (body attributes: $(grep -o '<body[^>]*>' "$WORK/dom.html"))"
  fails=$((fails + 1))
fi
nimg=$(grep -o 'data-images="[0-9]*"' "$WORK/dom.html" | grep -o '[0-9]*')
if [[ -z "$nimg" || "$nimg" -lt 10 ]]; then
  echo "FAIL: expected at least 10 images, page reports '${nimg}'"
  fails=$((fails + 1))
fi
nsvg=$(grep -o '<svg' "$WORK/dom.html" | wc -l)
if [[ "$nsvg" -lt 2 ]]; then
  echo "FAIL: expected the FSC and loss plots (2 <svg>), found $nsvg"
  fails=$((fails + 1))
fi
if grep -E 'CONSOLE|Uncaught|ERR_FILE_NOT_FOUND|Failed to load' "$WORK/dom.log" | grep -v 'dbus'; then
  echo "FAIL: console errors while loading the page (above)"
  fails=$((fails + 1))
fi

chrome "$WORK/shot.log" --hide-scrollbars --window-size=1200,900 --run-all-compositor-stages-before-draw \
  --screenshot="$WORK/report.png" "file://$WORK/report.html" >/dev/null
size=$(stat -c %s "$WORK/report.png" 2>/dev/null || echo 0)
if [[ "$size" -lt 10000 ]]; then
  echo "FAIL: screenshot missing or tiny ($size bytes)"
  fails=$((fails + 1))
fi
read -r w h < <(/usr/bin/python3 -c "import struct,sys; d=open(sys.argv[1],'rb').read(24); print(*struct.unpack('>II', d[16:24]))" "$WORK/report.png" 2>/dev/null || echo "0 0")
if [[ "$w" != 1200 || "$h" != 900 ]]; then
  echo "FAIL: screenshot is ${w}x${h}, expected 1200x900"
  fails=$((fails + 1))
fi
# The first slice panels (below the table and the FSC plot) must be drawn, not blank.
drawn=$(/usr/bin/python3 - "$WORK/report.png" <<'PY' 2>/dev/null
import sys
from PIL import Image
im = Image.open(sys.argv[1]).convert("L").crop((200, 770, 860, 900))
px = list(im.getdata())
print(sum(1 for v in px if 40 < v < 250) * 100 // len(px))
PY
)
if [[ -n "$drawn" && "$drawn" -lt 5 ]]; then
  echo "FAIL: the slice panels look blank in the screenshot ($drawn % drawn pixels)"
  fails=$((fails + 1))
fi
if [[ $fails -eq 0 && -n "$COPY" ]]; then
  cp "$WORK/report.png" "$COPY" && echo "screenshot copied to $COPY"
fi
echo "report browser test: $nimg images, $nsvg plots, screenshot $size bytes (${drawn:-?} % of the first panels drawn), $fails failures"
[[ $fails -eq 0 ]]
