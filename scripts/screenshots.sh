#!/usr/bin/env bash
# The web UI's screenshots in the README: the browser test (tests/web_ui.rs)
# run with PITAP_SCREENSHOTS, which keeps a PNG of each page it visits.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
out="$PWD/docs/screenshots"
mkdir -p "$out"
PITAP_SCREENSHOTS="$out" cargo test -q --locked -p pitap --test web_ui the_pages_in_chromium
ls -l "$out"
