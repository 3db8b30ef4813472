#!/usr/bin/env bash
# An MLflow tracking server for an autocompress cluster.
#
#   cluster/mlflow-server.sh start    start in the background (pid file), wait until it answers
#   cluster/mlflow-server.sh stop     stop the server started by `start` (its whole process group)
#   cluster/mlflow-server.sh status   exit 0 if it runs and answers, 1 otherwise
#   cluster/mlflow-server.sh run      run in the foreground (containers, systemd)
#
# A search on a multi-node Ray cluster records into this server (`--tracking-uri
# http://HOST:PORT`): a sqlite file cannot be shared across hosts. The server itself may keep
# a sqlite store on its own disk (one host, fine for a small cluster); a real cluster uses
# PostgreSQL. Artifacts are uploaded through the server (--serve-artifacts) to
# MLFLOW_ARTIFACTS_DESTINATION, so clients need no storage credentials. Job execution and the
# AI gateway are turned off: autocompress uses neither.
#
# Settings (environment; defaults in brackets):
#   MLFLOW_DIR                    state: pid file, log, default store [~/.autocompress/mlflow-server]
#   MLFLOW_ENV_FILE               sourced first if it exists [$MLFLOW_DIR/server.env]; the place
#                                 for a PostgreSQL URI with a password (chmod 600), so that it
#                                 is neither in a cluster file nor on the command line
#   MLFLOW_BACKEND_STORE_URI      [sqlite:///$MLFLOW_DIR/mlflow.db], e.g.
#                                 postgresql://USER:PASSWORD@DBHOST:5432/mlflow
#   MLFLOW_ARTIFACTS_DESTINATION  [$MLFLOW_DIR/mlartifacts], e.g. s3://BUCKET/mlartifacts
#   MLFLOW_HOST                   interface to bind [127.0.0.1]; see "Binding" below
#   MLFLOW_PORT                   [5000]
#   MLFLOW_WORKERS                server worker processes [2]
#   MLFLOW_ALLOWED_HOSTS          --allowed-hosts: Host headers accepted (MLflow's default:
#                                 localhost and private IPs); set it when clients use a DNS name
#   MLFLOW_START_TIMEOUT          seconds `start` waits for /health [120]
#   MLFLOW_BIN                    the mlflow executable [mlflow]
#
# Binding: the default, 127.0.0.1, is reachable only from this host: enough when the search
# driver runs here (the Ray head: `autocompress submit` runs the driver on the head) and for
# SSH tunnels. If other hosts must reach it, bind the host's private address (or 0.0.0.0)
# and let only the cluster's security group / network policy reach the port: the server has
# no authentication. Never expose it publicly.
set -euo pipefail

MLFLOW_DIR=${MLFLOW_DIR:-$HOME/.autocompress/mlflow-server}
MLFLOW_ENV_FILE=${MLFLOW_ENV_FILE:-$MLFLOW_DIR/server.env}
if [[ -f $MLFLOW_ENV_FILE ]]; then
    set -a
    # shellcheck disable=SC1090
    source "$MLFLOW_ENV_FILE"
    set +a
fi
MLFLOW_BACKEND_STORE_URI=${MLFLOW_BACKEND_STORE_URI:-sqlite:///$MLFLOW_DIR/mlflow.db}
MLFLOW_ARTIFACTS_DESTINATION=${MLFLOW_ARTIFACTS_DESTINATION:-$MLFLOW_DIR/mlartifacts}
MLFLOW_HOST=${MLFLOW_HOST:-127.0.0.1}
MLFLOW_PORT=${MLFLOW_PORT:-5000}
MLFLOW_WORKERS=${MLFLOW_WORKERS:-2}
MLFLOW_START_TIMEOUT=${MLFLOW_START_TIMEOUT:-120}
MLFLOW_BIN=${MLFLOW_BIN:-mlflow}
PID_FILE=$MLFLOW_DIR/mlflow-server.pid
LOG_FILE=$MLFLOW_DIR/mlflow-server.log

die() { echo "mlflow-server: $*" >&2; exit 1; }

# The address a local client uses: a wildcard bind is reached through loopback.
probe_host() {
    case $MLFLOW_HOST in
        0.0.0.0) echo 127.0.0.1 ;;
        ::|'[::]') echo '[::1]' ;;
        *:*) echo "[$MLFLOW_HOST]" ;;
        *) echo "$MLFLOW_HOST" ;;
    esac
}

healthy() {
    python3 - "http://$(probe_host):$MLFLOW_PORT/health" <<'EOF' >/dev/null 2>&1
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
    sys.exit(0 if r.status == 200 else 1)
EOF
}

# The pid in the pid file, if that process still runs.
running_pid() {
    [[ -f $PID_FILE ]] || return 1
    local pid
    pid=$(<"$PID_FILE")
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    # A recycled pid belongs to some other program: not ours to stop.
    if command -v ps >/dev/null; then
        ps -o args= -p "$pid" 2>/dev/null | grep -q mlflow || return 1
    fi
    echo "$pid"
}

prepare() {
    command -v "$MLFLOW_BIN" >/dev/null || die "'$MLFLOW_BIN' not found (set MLFLOW_BIN)"
    command -v python3 >/dev/null || die "python3 not found (used for the health check)"
    mkdir -p "$MLFLOW_DIR"
    case $MLFLOW_ARTIFACTS_DESTINATION in
        *://*) ;;
        *) mkdir -p "$MLFLOW_ARTIFACTS_DESTINATION"
           MLFLOW_ARTIFACTS_DESTINATION=$(cd "$MLFLOW_ARTIFACTS_DESTINATION" && pwd) ;;
    esac
    # The store URI goes through the environment (mlflow reads MLFLOW_BACKEND_STORE_URI), so a
    # password in it does not show in `ps`.
    export MLFLOW_BACKEND_STORE_URI
    unset MLFLOW_TRACKING_URI   # a client setting (set on the Ray head); the server needs none
    export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false MLFLOW_ENABLE_AI_GATEWAY=false
    ARGS=(server --host "$MLFLOW_HOST" --port "$MLFLOW_PORT" --workers "$MLFLOW_WORKERS"
          --serve-artifacts --artifacts-destination "$MLFLOW_ARTIFACTS_DESTINATION")
    if [[ -n ${MLFLOW_ALLOWED_HOSTS:-} ]]; then
        ARGS+=(--allowed-hosts "$MLFLOW_ALLOWED_HOSTS")
    fi
    case $MLFLOW_HOST in
        127.*|localhost|::1|'[::1]') ;;
        *) echo "mlflow-server: binding $MLFLOW_HOST: the server has no authentication;" \
                "only the cluster's own network may reach port $MLFLOW_PORT" >&2 ;;
    esac
}

start() {
    local pid
    if pid=$(running_pid); then
        echo "mlflow-server: already running (pid $pid) at http://$(probe_host):$MLFLOW_PORT"
        return 0
    fi
    prepare
    if healthy; then
        die "port $MLFLOW_PORT already answers /health: another server runs there"
    fi
    local t0=$SECONDS
    # setsid: the server and its workers form one process group that `stop` ends together.
    setsid "$MLFLOW_BIN" "${ARGS[@]}" >>"$LOG_FILE" 2>&1 </dev/null &
    echo $! >"$PID_FILE"
    pid=$!
    until healthy; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$PID_FILE"
            tail -n 20 "$LOG_FILE" >&2
            die "the server exited during start-up (log: $LOG_FILE)"
        fi
        if (( SECONDS - t0 >= MLFLOW_START_TIMEOUT )); then
            tail -n 20 "$LOG_FILE" >&2
            stop >/dev/null
            die "no answer from /health after ${MLFLOW_START_TIMEOUT}s (log: $LOG_FILE)"
        fi
        sleep 0.5
    done
    echo "mlflow-server: http://$(probe_host):$MLFLOW_PORT (pid $pid, ready in" \
         "$(( SECONDS - t0 ))s; artifacts: $MLFLOW_ARTIFACTS_DESTINATION; log: $LOG_FILE)"
}

stop() {
    local pid i
    if ! pid=$(running_pid); then
        rm -f "$PID_FILE"
        echo "mlflow-server: not running"
        return 0
    fi
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for (( i = 0; i < 40; i++ )); do
        kill -0 -- "-$pid" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 -- "-$pid" 2>/dev/null; then
        kill -KILL -- "-$pid" 2>/dev/null || true
        sleep 0.5
    fi
    kill -0 -- "-$pid" 2>/dev/null && die "process group $pid is still alive"
    rm -f "$PID_FILE"
    echo "mlflow-server: stopped (pid $pid)"
}

status() {
    local pid
    if pid=$(running_pid) && healthy; then
        echo "mlflow-server: running (pid $pid) at http://$(probe_host):$MLFLOW_PORT"
        return 0
    fi
    echo "mlflow-server: not running"
    return 1
}

run() {
    prepare
    exec "$MLFLOW_BIN" "${ARGS[@]}"
}

case ${1:-} in
    start|stop|status|run) "$1" ;;
    *) echo "usage: $0 start|stop|status|run   (settings: see the comments at the top)" >&2
       exit 2 ;;
esac
