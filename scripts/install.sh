#!/usr/bin/env bash
# Install everything into .venv from pinned versions (registries only, no model hub).
# Rasa 3.6.21 declares Python < 3.11 but runs on 3.11: its dependencies come pinned from
# requirements/lock.txt, then rasa and rasa-sdk are added with --no-deps --ignore-requires-python.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
"$python" -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required"'

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
.venv/bin/bot --version
echo "Installed. Activate with: source .venv/bin/activate"
