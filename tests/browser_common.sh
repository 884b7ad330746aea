# Sourced by the headless-Chromium page tests (report_browser_test.sh, demo_page_browser_test.sh):
# finds the browser (exit 77, skip, without it) and defines `chrome LOGFILE ARGS...`, one headless
# run from the file system with networking, updates and sync off and a fresh profile under $WORK.
# The sourcing script sets WORK (a temporary folder it removes) before calling chrome.
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [[ ! -x "$CHROMIUM" ]]; then
  echo "skip: $CHROMIUM not found"
  exit 77
fi

chrome() {  # chrome LOGFILE ARGS...
  local log=$1
  shift
  timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$WORK/profile-$RANDOM" --enable-logging=stderr --v=0 \
    --virtual-time-budget=5000 "$@" 2>"$log"
}
