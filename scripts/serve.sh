#!/usr/bin/env bash
# Run chatweb on a machine that is set up (scripts/run.sh sets up first): Redis on
# 127.0.0.1, daphne, one worker, and a knowledge worker (indexing uploaded files).
# Ctrl-C (or SIGTERM) stops everything.
#
# A worker that dies (the kernel's OOM killer picks the process holding the model; an
# engine crash) is started again after a backoff, as docker-compose's restart policy
# does, while daphne and Redis stay up: signed-in users keep their pages, and the
# answers it was writing are failed when the new worker starts. Daphne or our own
# Redis dying ends the run: they hold no model, so their death is a fault (a port
# taken, a bad setting) that restarting in a loop would only hide.
#
#   PORT=8000 HOST=127.0.0.1 CHATWEB_MODEL=auto scripts/serve.sh
set -euo pipefail
if ((BASH_VERSINFO[0] * 100 + BASH_VERSINFO[1] < 501)); then
    echo "scripts/serve.sh needs bash 5.1 or later" >&2
    exit 1
fi
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export PATH=$ROOT/.venv/bin:$PATH
[[ -z ${SECRET_KEY:-} ]] && export SECRET_KEY_FILE=${SECRET_KEY_FILE:-$ROOT/var/secret_key}

HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
log() { printf '\033[1m[run]\033[0m %s\n' "$*"; }

RESTART_FIRST=1   # seconds before the first restart of a dead worker; doubled each time
RESTART_MOST=30   # the longest wait between restarts
WORKER_STEADY=60  # a worker up this long starts the backoff over when it dies
WORKER_GRACE=30   # seconds a stopping worker gets to finish before it is killed

declare -A parts=()  # pid -> redis-server | daphne | worker | knowledge
worker_pid=
nap_pid=  # the sleep the watch loop waits on, ended with it

# The worker runs in a process group of its own (setsid: the same pid, a new group),
# so the engine processes vLLM spawns go with it: they are killed when it dies and
# when the run stops, and a terminal's Ctrl-C reaches the worker only through us.
start_worker() {
    setsid python manage.py run_worker --model "$MODEL" ${CHATWEB_GPU:+--gpu "$CHATWEB_GPU"} --loglevel WARNING &
    worker_pid=$!
    worker_since=$SECONDS
    parts[$worker_pid]=worker
}

# Uploaded files are converted and embedded here, never in daphne or the model's worker.
# It holds no model: one that dies is started again at once (its file is failed, with a retry).
start_knowledge() {
    python manage.py run_knowledge_worker --loglevel WARNING &
    parts[$!]=knowledge
}

stop_worker() {
    local group=$1
    kill -TERM -- "-$group" 2>/dev/null || return 0
    for ((i = 0; i < WORKER_GRACE * 10; i++)); do
        kill -0 -- "-$group" 2>/dev/null || return 0
        sleep 0.1
    done
    log "the worker did not stop within $WORKER_GRACE s: killing it"
    kill -KILL -- "-$group" 2>/dev/null || true
}

how_it_ended() {
    local status=$1
    if ((status > 128)); then
        echo "killed by SIG$(kill -l $((status - 128))), exit status $status"
    else
        echo "exit status $status"
    fi
}

cleanup() {
    local code=${1:-0} stopper=
    trap - INT TERM EXIT
    log "stopping"
    [[ -z $nap_pid ]] || kill "$nap_pid" 2>/dev/null || true
    if [[ -n $worker_pid ]]; then
        stop_worker "$worker_pid" &
        stopper=$!
    fi
    for pid in "${!parts[@]}"; do
        [[ $pid == "$worker_pid" ]] || kill -TERM "$pid" 2>/dev/null || true
    done
    # The nap too: an orphaned sleep still in our group when we exit outlives us by a moment.
    wait "${!parts[@]}" $stopper ${nap_pid:+"$nap_pid"} 2>/dev/null || true
    log "stopped"
    exit "$code"
}
trap 'cleanup 0' INT TERM
trap 'cleanup $?' EXIT

# Redis: reuse one that answers at REDIS_URL, else start our own (no persistence:
# it carries queues, channel messages and counters only).
if python -c "import redis,os,sys; redis.Redis.from_url(os.environ['REDIS_URL'], socket_timeout=1).ping()" 2>/dev/null; then
    log "using the Redis at $REDIS_URL"
else
    redis_port=$(python -c "import os,urllib.parse as u; print(u.urlparse(os.environ['REDIS_URL']).port or 6379)")
    mkdir -p var/redis
    redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no --dir "$ROOT/var/redis" \
        --logfile "$ROOT/var/redis/redis.log" &
    parts[$!]=redis-server
    for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    log "Redis started on 127.0.0.1:$redis_port"
fi

daphne -b "$HOST" -p "$PORT" chatweb.asgi:application &
parts[$!]=daphne

# One worker for the default model: gpt-oss-20b where a GPU is seen, else the local SmolLM2.
MODEL=${CHATWEB_MODEL:-auto}
if [[ $MODEL == auto ]]; then
    if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then MODEL=gpt-oss-20b; else MODEL=smollm2-135m-instruct; fi
fi
if [[ $MODEL == gpt-oss-20b ]]; then python manage.py register_local_models --gpu >/dev/null; fi
start_worker
start_knowledge

for _ in $(seq 100); do curl -s -o /dev/null "http://$HOST:$PORT/health" && break; sleep 0.2; done
cat <<MSG

  chatweb is running: http://$HOST:$PORT/   (model: $MODEL, loading in the background;
  http://$HOST:$PORT/health says "ready" once it can answer)
  First time? Sign up at http://$HOST:$PORT/accounts/signup/ — the first account becomes the admin.
  (Or: .venv/bin/python manage.py createsuperuser)
  Ctrl-C stops everything.

MSG

# Watch the parts. Each pass looks at every part rather than trusting `wait -n` alone:
# bash forgets, for `wait -n`, a child killed by a signal while the script was busy
# elsewhere (the start-up above, a backoff), but `wait PID` still has its status.
backoff=$RESTART_FIRST
while true; do
    sleep 1 &
    nap_pid=$!
    wait -n "$nap_pid" "${!parts[@]}" 2>/dev/null || true
    kill "$nap_pid" 2>/dev/null || true
    for pid in "${!parts[@]}"; do
        kill -0 "$pid" 2>/dev/null && continue
        status=0
        wait "$pid" 2>/dev/null || status=$?
        part=${parts[$pid]}
        unset "parts[$pid]"
        if [[ $part == knowledge ]]; then
            log "the knowledge worker stopped ($(how_it_ended "$status")); starting it again"
            sleep 2
            start_knowledge
            continue
        fi
        if [[ $part != worker ]]; then
            log "$part stopped ($(how_it_ended "$status")): stopping everything"
            cleanup 1
        fi
        worker_pid=
        kill -KILL -- "-$pid" 2>/dev/null || true # engine processes it left behind hold the memory
        up=$((SECONDS - worker_since))
        ((up < WORKER_STEADY)) || backoff=$RESTART_FIRST
        log "worker stopped ($(how_it_ended "$status")) after $up s; starting it again in $backoff s"
        sleep "$backoff" &
        nap_pid=$!
        wait "$nap_pid" || true
        start_worker
        log "worker started again (pid $worker_pid)"
        backoff=$((backoff * 2 < RESTART_MOST ? backoff * 2 : RESTART_MOST))
    done
done
