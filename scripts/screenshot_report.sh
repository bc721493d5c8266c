#!/usr/bin/env bash
# Screenshot an HTML report in headless Chromium, to check how it renders.
#
#   scripts/screenshot_report.sh REPORT.html [OUT.png] [WIDTH,HEIGHT]
#
# OUT.png defaults to the report's path with .png; the window is 1280x4000 unless given
# (the screenshot is the window: make it tall enough for the whole report). Needs
# Chromium ($CHROMIUM, else chromium on the PATH; Debian: apt-get install -y chromium).
# The browser runs with a throwaway profile and no background networking.
set -euo pipefail

if [[ $# -lt 1 || $# -gt 3 || ! -f "$1" ]]; then
    echo "usage: $0 REPORT.html [OUT.png] [WIDTH,HEIGHT]" >&2
    exit 2
fi
report="$(realpath "$1")"
out="$(realpath -m "${2:-${report%.*}.png}")"
size="${3:-1280,4000}"
browser="${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}"
if [[ -z "$browser" ]]; then
    echo "error: Chromium not found; install it (Debian: apt-get install -y chromium) or set CHROMIUM" >&2
    exit 1
fi

profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT

"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --hide-scrollbars --user-data-dir="$profile" --window-size="$size" \
    --screenshot="$out" "file://$report" 2> "$profile/chromium.log" || {
    echo "error: chromium failed; its log:" >&2
    cat "$profile/chromium.log" >&2
    exit 1
}
[[ -s "$out" ]] || { echo "error: no screenshot written to $out" >&2; exit 1; }
echo "$out"
