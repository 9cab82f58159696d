#!/usr/bin/env bash
# Drive the console in tmux (80x24, or SIZE=160x45) against a real server with a simulated
# charger, a pending one and a raw charger sending a stop that closes nothing, with real
# keys, through a server restart and (when VOLTARO_E2E_POSTGRES_URL is set) a database
# outage, asserting on the captured screen. Cleans up only what it started.
#   bash scripts/console_e2e.sh              (SQLite; needs tmux: apt-get install -y tmux)
#   SIZE=160x45 bash scripts/console_e2e.sh  (a bigger terminal)
#   VOLTARO_E2E_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test \
#     bash scripts/console_e2e.sh            (PostgreSQL: adds the database outage; a fresh
#                                              database is created and dropped)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SIZE=${SIZE:-80x24}
command -v tmux >/dev/null || { echo "tmux is not installed"; exit 2; }
WORK=$(mktemp -d /tmp/voltaro-e2e.XXXX)
SOCK="$WORK/c.sock"
PORT=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
TMUX_SOCK="voltaro-e2e-$$"
SERVER=""; SIM=""; NEWSIM=""; PGDB=""
PG_ADMIN=${VOLTARO_E2E_POSTGRES_URL:-}
if [ -n "$PG_ADMIN" ]; then
  PGDB="voltaro_e2e_$$"
  psql "$PG_ADMIN" -qc "CREATE DATABASE \"$PGDB\"" >/dev/null
  DB_URL="${PG_ADMIN%/*}/$PGDB"
else
  DB_URL="sqlite:///$WORK/v.db"
fi
cleanup() {
  tmux -L "$TMUX_SOCK" kill-server 2>/dev/null || true
  [ -n "$SIM" ] && kill "$SIM" 2>/dev/null || true
  [ -n "$NEWSIM" ] && kill "$NEWSIM" 2>/dev/null || true
  [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null || true
  wait 2>/dev/null || true
  if [ -n "$PGDB" ]; then
    psql "$PG_ADMIN" -qc "ALTER DATABASE \"$PGDB\" ALLOW_CONNECTIONS true" >/dev/null 2>&1 || true
    psql "$PG_ADMIN" -qc "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname='$PGDB'" >/dev/null 2>&1 || true
    psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS \"$PGDB\"" >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

start_server() {
  VOLTARO_UNKNOWN_CHARGERS=pending $PY -m voltaro serve --host 127.0.0.1 --port "$PORT" \
    --http-port 0 --database-url "$DB_URL" --control-socket "$SOCK" 2>>"$WORK/serve.log" &
  SERVER=$!
  for _ in $(seq 1 150); do [ -S "$SOCK" ] && return 0; sleep 0.1; done
  echo "FAIL: the server did not start"; cat "$WORK/serve.log"; exit 1
}
start_server
$PY -m voltaro ctl --socket "$SOCK" chargers add SIM-1 >/dev/null
$PY -m voltaro ctl --socket "$SOCK" tags add SIMTAG >/dev/null
$PY scripts/simulate.py "ws://127.0.0.1:$PORT/ocpp" --chargers 1 --session-every 2 \
  --session-length 60 --meter-interval 1 --duration 120 --summary-every 60 >"$WORK/sim.log" 2>&1 &
SIM=$!

tmux -L "$TMUX_SOCK" new-session -d -s console -x "${SIZE%x*}" -y "${SIZE#*x}" \
  "TERM=xterm-256color $PY -m console --socket $SOCK"
screen() { tmux -L "$TMUX_SOCK" capture-pane -p -t console; }
keys() { tmux -L "$TMUX_SOCK" send-keys -t console "$@"; }
expect() { # text, seconds
  for _ in $(seq 1 $(( $2 * 10 ))); do screen | grep -q -- "$1" && return 0; sleep 0.1; done
  echo "FAIL: '$1' not on screen"; screen; exit 1
}
expect_gone() { # text, seconds
  for _ in $(seq 1 $(( $2 * 10 ))); do screen | grep -q -- "$1" || return 0; sleep 0.1; done
  echo "FAIL: '$1' still on screen"; screen; exit 1
}

expect "SIM-1" 15
expect "1 of 1 online" 15
expect "Charging" 30
echo "ok: SIM-1 online and charging, header counts it"

keys C-o
expect "Command for SIM-1" 5
keys Down Down Enter                               # Soft reset
expect "Soft reset SIM-1:" 5                       # the question names target and effect
keys Enter                                         # Enter alone answers No
expect_gone "Soft reset SIM-1:" 5
keys C-o
expect "Command for SIM-1" 5
keys Down Down Enter
expect "Soft reset SIM-1:" 5
keys y
expect "Soft reset on SIM-1: Accepted" 15
echo "ok: soft reset asked first (Enter = No), then y sent it and the answer is shown"

keys F1
expect "ctrl+q" 5
keys Escape
expect_gone "Destructive commands" 5
echo "ok: help fits $SIZE and closes"

# A server restart: the banner says so in words, rows go stale, then everything is back.
kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=""
expect "NOT CONNECTED" 10
expect "stale" 5
echo "ok: server down: banner in words, rows stale"
start_server
expect_gone "NOT CONNECTED" 20
expect "1 of 1 online" 60                          # the simulator reconnects by itself
echo "ok: server back: banner gone, the charger counted online again without F5"

if [ -n "$PGDB" ]; then
  psql "$PG_ADMIN" -qc "ALTER DATABASE \"$PGDB\" ALLOW_CONNECTIONS false" >/dev/null
  psql "$PG_ADMIN" -qc "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname='$PGDB'" >/dev/null
  expect "DATABASE DOWN: the server cannot reach" 20  # the banner (the feed keeps history)
  expect "online · DATABASE DOWN" 5                # the header
  echo "ok: database outage: banner and header say DATABASE DOWN"
  psql "$PG_ADMIN" -qc "ALTER DATABASE \"$PGDB\" ALLOW_CONNECTIONS true" >/dev/null
  expect_gone "DATABASE DOWN: the server cannot reach" 20
  expect "online · db ok" 5
  echo "ok: database back: banner gone"
else
  echo "skip: database outage (set VOLTARO_E2E_POSTGRES_URL to include it)"
fi

# A charger nobody added: Pending, counted as needing attention and listed by F7.
$PY scripts/simulate.py "ws://127.0.0.1:$PORT/ocpp" --chargers 1 --id-prefix NEW- \
  --session-every 0 --duration 120 --summary-every 60 >"$WORK/newsim.log" 2>&1 &
NEWSIM=$!
expect "1 charger waiting for acceptance" 30
expect "need attention" 5
keys F7
expect "waiting for acceptance: select it and press F6" 5
keys Escape
echo "ok: a pending charger stands out, needs attention and is in the list F7 opens"

# A stop for a transaction the server never saw: an orphan row in F3 and an alert.
$PY -m voltaro ctl --socket "$SOCK" chargers add RAW-1 >/dev/null
$PY - "$PORT" <<'PYEOF'
import asyncio, json, sys
import websockets
async def main() -> None:
    url = f"ws://127.0.0.1:{sys.argv[1]}/ocpp/RAW-1"
    async with websockets.connect(url, subprotocols=["ocpp1.6"]) as ws:
        for n, (action, payload) in enumerate([
            ("BootNotification", {"chargePointVendor": "Raw", "chargePointModel": "R"}),
            ("StopTransaction", {"transactionId": 4242, "meterStop": 1700,
                                 "timestamp": "2026-12-04T18:00:00Z"}),
        ]):
            await ws.send(json.dumps([2, str(n), action, payload]))
            await ws.recv()
asyncio.run(main())
PYEOF
keys F3
expect "started: all" 5
expect "orphan unknown" 10
keys p
expect "started: today" 5
keys /
expect "filter by charger or tag" 5                # typed before the box has the focus,
keys -l "RAW-1"                                    # keys go to the table
keys Enter                                          # the filter is set: to the table
expect "1 shown" 5
keys Enter
expect "closed nothing" 5
keys Escape Escape
keys F7
expect "stop for an unknown transaction (4242" 5
echo "ok: an orphan stop is a row in F3 (period filter p) and an alert in F7"
keys Escape C-q
echo "PASS: console end-to-end in tmux"
