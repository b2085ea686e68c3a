#!/usr/bin/env bash
# Set up (idempotent) and run chatweb: Redis on 127.0.0.1, daphne, and the
# worker(s). Ctrl-C stops everything.
#
#   PORT=8000 HOST=127.0.0.1 CHATWEB_MODEL=auto scripts/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
scripts/setup.sh
export PATH=$ROOT/.venv/bin:$PATH
[[ -z ${SECRET_KEY:-} ]] && export SECRET_KEY_FILE=${SECRET_KEY_FILE:-$ROOT/var/secret_key}

HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
log() { printf '\033[1m[run]\033[0m %s\n' "$*"; }

pids=()
cleanup() {
    trap - INT TERM EXIT
    log "stopping"
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    log "stopped"
}
trap cleanup INT TERM EXIT

# Redis: reuse one that answers at REDIS_URL, else start our own (no persistence:
# it carries queues, channel messages and counters only).
if python -c "import redis,os,sys; redis.Redis.from_url(os.environ['REDIS_URL'], socket_timeout=1).ping()" 2>/dev/null; then
    log "using the Redis at $REDIS_URL"
else
    redis_port=$(python -c "import os,urllib.parse as u; print(u.urlparse(os.environ['REDIS_URL']).port or 6379)")
    mkdir -p var/redis
    redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no --dir "$ROOT/var/redis" \
        --logfile "$ROOT/var/redis/redis.log" &
    pids+=($!)
    for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    log "Redis started on 127.0.0.1:$redis_port"
fi

daphne -b "$HOST" -p "$PORT" chatweb.asgi:application &
pids+=($!)

# One worker for the default model: gpt-oss-20b where a GPU is seen, else the local SmolLM2.
MODEL=${CHATWEB_MODEL:-auto}
if [[ $MODEL == auto ]]; then
    if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then MODEL=gpt-oss-20b; else MODEL=smollm2-135m-instruct; fi
fi
if [[ $MODEL == gpt-oss-20b ]]; then python manage.py register_local_models --gpu >/dev/null; fi
python manage.py run_worker --model "$MODEL" ${CHATWEB_GPU:+--gpu "$CHATWEB_GPU"} --loglevel WARNING &
pids+=($!)

for _ in $(seq 100); do curl -s -o /dev/null "http://$HOST:$PORT/health" && break; sleep 0.2; done
cat <<MSG

  chatweb is running: http://$HOST:$PORT/   (model: $MODEL, loading in the background;
  http://$HOST:$PORT/health says "ready" once it can answer)
  First time? Sign up at http://$HOST:$PORT/accounts/signup/ — the first account becomes the admin.
  (Or: .venv/bin/python manage.py createsuperuser)
  Ctrl-C stops everything.

MSG
wait -n "${pids[@]}"
