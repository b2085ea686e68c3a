#!/usr/bin/env bash
# Set up (idempotent) and run chatweb: Redis on 127.0.0.1, daphne, and the worker,
# restarted when it dies (scripts/serve.sh). Ctrl-C stops everything.
#
#   PORT=8000 HOST=127.0.0.1 CHATWEB_MODEL=auto scripts/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec scripts/serve.sh
