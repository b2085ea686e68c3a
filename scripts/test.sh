#!/usr/bin/env bash
# Set up (idempotent), then run the whole suite: unit, real Redis, real daphne,
# real worker and engine, real browser. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH=$PWD/.venv/bin:$PATH
# Tests use their own Redis (127.0.0.1:6399 unless REDIS_URL names another, started by conftest.py), their own
# settings (pytest.ini) and a file test database under var/.
unset DATABASE_URL REDIS_URL SECRET_KEY SECRET_KEY_FILE DEBUG HTTPS
lint-imports --no-cache  # the layers of .importlinter: inference_worker imports nothing of the product
exec python -m pytest "$@"
