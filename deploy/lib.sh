# Shared shell helpers for deploy/up, deploy/test and deploy/bench.
# Every helper installs what is missing and starts what is not answering, so a
# fresh Debian machine needs nothing done by hand. Sourced, not executed.

TMPNB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEFAULT_STATE=/var/lib/tmpnb
OLD_DEFAULT_STATE=/var/tmp/tmpnb  # before the state folder left world-writable /var/tmp
VENV=${TMPNB_VENV:-$TMPNB_ROOT/.venv}
PROXY_DIR=$TMPNB_ROOT/deploy/proxy
STARTED_PIDS=()
ON_STOP=()

log() { echo "[tmpnb] $*" >&2; }

trusted_by_me() {
  # A folder or file we own, no symbolic link, that nobody else may write to.
  [ ! -L "$1" ] && [ "$(stat -c %u "$1")" = "$(id -u)" ] && [ $(( 0$(stat -c %a "$1") & 022 )) -eq 0 ]
}

ensure_state_dir() {
  # The database, the participants' saved work, the logs, and secrets.env,
  # which these scripts source as root: a folder another user made or can
  # write to would hand them the service and root, so it is refused.
  if [ -z "${TMPNB_STATE:-}" ]; then
    TMPNB_STATE=$DEFAULT_STATE
    if [ ! -e "$TMPNB_STATE" ] && [ -f "$OLD_DEFAULT_STATE/secrets.env" ]; then
      if trusted_by_me "$OLD_DEFAULT_STATE" && trusted_by_me "$OLD_DEFAULT_STATE/secrets.env"; then
        log "moving the state folder from $OLD_DEFAULT_STATE to $TMPNB_STATE"
        mv "$OLD_DEFAULT_STATE" "$TMPNB_STATE"
      else
        log "not moving $OLD_DEFAULT_STATE to $TMPNB_STATE: another user could have written to it; starting afresh"
      fi
    fi
  fi
  mkdir -p "$TMPNB_STATE"
  export TMPNB_STATE  # Django keeps notebooks away from its secrets.env
  if ! trusted_by_me "$TMPNB_STATE"; then
    log "refusing the state folder $TMPNB_STATE: it must be a folder of $(id -un)'s that no other user can write to (not a link)"
    exit 1
  fi
  chmod 700 "$TMPNB_STATE"
}
ensure_state_dir

apt_install() {
  # apt-get update only once per run: it is the slow part.
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  if [ -z "${_APT_UPDATED:-}" ]; then apt-get update -q >/dev/null; _APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_docker() {
  # Debian's engine; started by us when no engine answers. live-restore keeps
  # notebooks running while dockerd itself restarts.
  command -v dockerd >/dev/null || apt_install docker.io
  # pool/netguard.py keeps notebooks away from the host with iptables rules.
  command -v iptables >/dev/null || apt_install iptables
  docker info >/dev/null 2>&1 && return 0
  log "starting dockerd"
  dockerd --live-restore >"$TMPNB_STATE/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  STARTED_PIDS+=("$DOCKERD_PID")
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && return 0; sleep 0.5; done
  log "dockerd did not answer; see $TMPNB_STATE/dockerd.log"; return 1
}

ensure_python() {
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtualenv $VENV"
    python3 -m venv "$VENV"
  fi
  # pip is quick when everything is already satisfied.
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$TMPNB_ROOT/requirements.txt"
  compile_translations
}

compile_translations() {
  # The participant pages' catalogues, locale/*/LC_MESSAGES/django.po, into the
  # .mo files Django reads: gettext's msgfmt, as Django's compilemessages does
  # (whose tree walk would also find the virtualenv's and node_modules' catalogues).
  command -v msgfmt >/dev/null || apt_install gettext
  local po mo
  for po in "$TMPNB_ROOT"/locale/*/LC_MESSAGES/django.po; do
    mo=${po%.po}.mo
    [ "$po" -nt "$mo" ] || continue
    msgfmt --check -o "$mo.new" "$po" && mv "$mo.new" "$mo"
  done
}

ensure_proxy() {
  command -v node >/dev/null || apt_install nodejs npm
  # Installed again whenever the lock file or our patches change (npm ci runs
  # patch-package, which applies deploy/proxy/patches), so no machine keeps an
  # unpatched proxy.
  local wanted stamp=$PROXY_DIR/node_modules/.tmpnb-installed
  wanted=$(cat "$PROXY_DIR/package-lock.json" "$PROXY_DIR"/patches/*.patch | sha256sum)
  if [ ! -x "$PROXY_DIR/node_modules/.bin/configurable-http-proxy" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    log "installing configurable-http-proxy"
    (cd "$PROXY_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    echo "$wanted" >"$stamp"
  fi
  # configurable-http-proxy with tmpnb's listeners and per-origin rules.
  export TMPNB_PROXY="$PROXY_DIR/tmpnb-proxy.mjs"
}

ensure_axe() {
  # axe-core, pinned in deploy/a11y, for the accessibility check in the browser tests.
  command -v node >/dev/null || apt_install nodejs npm
  if [ ! -f "$TMPNB_ROOT/deploy/a11y/node_modules/axe-core/axe.min.js" ]; then
    log "installing axe-core"
    (cd "$TMPNB_ROOT/deploy/a11y" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
}

ensure_redis_server() {
  command -v redis-server >/dev/null || apt_install redis-server
}

start_test_postgres() {
  # A throwaway PostgreSQL cluster on a free loopback port, for the tests
  # that also run on PostgreSQL; exports TEST_POSTGRES_URL.
  apt_install postgresql
  local bin dir port
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  dir=$(mktemp -d /var/tmp/tmpnb-pg.XXXXXX)
  chown postgres "$dir"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  runuser -u postgres -- "$bin/initdb" -D "$dir/data" --auth=trust -U postgres >"$dir/initdb.log"
  runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off" start >/dev/null
  ON_STOP+=("runuser -u postgres -- $bin/pg_ctl -D $dir/data -m fast -w stop >/dev/null; rm -rf $dir")
  export TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/tmpnb"
}

stop_started() {
  local cmd
  for cmd in "${ON_STOP[@]}"; do eval "$cmd" || true; done
  ON_STOP=()
  # Stop what this script started, newest first, so dockerd goes last.
  local i
  for ((i=${#STARTED_PIDS[@]}-1; i>=0; i--)); do
    kill -TERM "${STARTED_PIDS[$i]}" 2>/dev/null || true
  done
  for ((i=${#STARTED_PIDS[@]}-1; i>=0; i--)); do
    wait "${STARTED_PIDS[$i]}" 2>/dev/null || true
  done
}

load_service_env() {
  # The service's ports, state folders and secrets, shared by deploy/up and deploy/down.
  # Read by the proxy (deploy/proxy/tmpnb-proxy.mjs) and by Django alike.
  export TMPNB_PUBLIC_IP=${TMPNB_PUBLIC_IP:-0.0.0.0}
  export TMPNB_PUBLIC_PORT=${TMPNB_PUBLIC_PORT:-8000}
  export TMPNB_PROXY_API_PORT=${TMPNB_PROXY_API_PORT:-8001}
  export TMPNB_NOTEBOOK_PORT=${TMPNB_NOTEBOOK_PORT:-8002}
  PUBLIC_IP=$TMPNB_PUBLIC_IP PUBLIC_PORT=$TMPNB_PUBLIC_PORT API_PORT=$TMPNB_PROXY_API_PORT
  REDIS_PORT=${TMPNB_REDIS_PORT:-6379}
  export TMPNB_PORT=${TMPNB_PORT:-9999}
  export TMPNB_IMAGE=${TMPNB_IMAGE:-tmpnb/jupyterlab:latest}
  export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:$REDIS_PORT/0}
  export CONFIGPROXY_ENDPOINT=${CONFIGPROXY_ENDPOINT:-http://127.0.0.1:$API_PORT}
  export TMPNB_VAR_DIR=${TMPNB_VAR_DIR:-$TMPNB_STATE/var}
  LOGS=$TMPNB_STATE/logs
  mkdir -p "$LOGS" "$TMPNB_VAR_DIR"
  # Made once per machine and kept, so restarts keep sessions and logins.
  local secrets=$TMPNB_STATE/secrets.env
  if [ -e "$secrets" ] && ! trusted_by_me "$secrets"; then
    log "refusing $secrets: it must be a file of $(id -un)'s that no other user can write to (not a link)"
    exit 1
  fi
  if [ ! -f "$secrets" ]; then
    (
      umask 077
      echo "DJANGO_SECRET_KEY=$(head -c 48 /dev/urandom | base64 | tr -d '\n/+=')"
      echo "CONFIGPROXY_AUTH_TOKEN=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
      echo "TMPNB_ADMIN_PASSWORD=$(head -c 12 /dev/urandom | base64 | tr -d '\n/+=')"
    ) >"$secrets.new" && mv "$secrets.new" "$secrets"
  fi
  set -a; source "$secrets"; set +a
}
