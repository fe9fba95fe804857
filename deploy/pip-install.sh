#!/bin/bash
# Both images' venv at /opt/venv: pip-install.sh PIP_ARGS...
# Offline from the wheelhouse the build mounts at /wheels (`--build-context wheelhouse=DIR`, made
# on the host with `pip download`); from the package index when the build was given none.
set -euo pipefail

if [ -n "$(ls -A /wheels 2>/dev/null)" ]; then
    set -- --no-index --find-links /wheels "$@"
fi
python3 -m venv /opt/venv
/opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --quiet "$@"
