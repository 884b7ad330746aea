#!/usr/bin/env bash
# Assembles README.md from docs/readme/head.md, the per-area sections in docs/sections/ and
# docs/readme/tail.md (edit those, then run this).
set -euo pipefail
cd "$(dirname "$0")/.."
shift_headings() { sed -E 's/^(#+) /\1# /' "$1"; }  # a top-level '# ' section becomes '## '
fix_paths() { sed -e 's#](\.\./img/#](docs/img/#g' -e 's#](\.\./report\.png)#](docs/report.png)#g'; }
{
  cat docs/readme/head.md
  for s in sim physics train methods wedge-methods posterior representations eval io cluster; do
    f="docs/sections/$s.md"
    echo
    if head -1 "$f" | grep -q '^# '; then shift_headings "$f"; else cat "$f"; fi
  done
  echo
  cat docs/readme/tail.md
} | fix_paths > README.md
echo "README.md: $(wc -l < README.md) lines"
