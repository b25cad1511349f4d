#!/usr/bin/env bash
# Installs Debian's chromium for the dashboard's browser test
# (crates/dashboard/tests/browser.rs, which drives it headless over its DevTools
# protocol).
#
#   scripts/chromium-test-env.sh
#
# Idempotent: does nothing when `chromium` is on PATH. Installs it with apt-get only
# as root under CI (CI set and not false/0, as .ci/run sets it) — a developer's machine
# is left alone, and the test then says it did not run. Under CI a chromium that
# cannot be had is an error (the test would fail anyway).
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    chromium --version 2>/dev/null | grep -v '^\s*$' || true
    exit 0
fi
case "${CI:-}" in
    "" | false | 0)
        echo "skipped: no chromium (apt-get install chromium), and not under CI"
        exit 0
        ;;
esac
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "error: chromium is missing and cannot be installed here (needs root and apt-get)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
command -v chromium >/dev/null 2>&1 || { echo "error: chromium did not install" >&2; exit 1; }
chromium --version 2>/dev/null | grep -v '^\s*$' || true
