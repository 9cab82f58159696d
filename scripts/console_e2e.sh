#!/usr/bin/env bash
# Drive the console in tmux against a running server with a simulated charger, send keys,
# and check the screen text. Cleans up only what it started. Usage:
#   bash scripts/console_e2e.sh            (needs tmux: apt-get install -y tmux)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
command -v tmux >/dev/null || { echo "tmux is not installed"; exit 2; }
WORK=$(mktemp -d /tmp/voltaro-e2e.XXXX)
SOCK="$WORK/c.sock"
PORT=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
TMUX_SOCK="voltaro-e2e-$$"
SERVER=""; SIM=""
cleanup() {
  tmux -L "$TMUX_SOCK" kill-server 2>/dev/null || true
  [ -n "$SIM" ] && kill "$SIM" 2>/dev/null || true
  [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

$PY -m voltaro serve --host 127.0.0.1 --port "$PORT" --http-port 0 \
  --database-url "sqlite:///$WORK/v.db" --control-socket "$SOCK" 2>"$WORK/serve.log" &
SERVER=$!
for _ in $(seq 1 100); do [ -S "$SOCK" ] && break; sleep 0.1; done
$PY -m voltaro ctl --socket "$SOCK" chargers add SIM-1 >/dev/null
$PY -m voltaro ctl --socket "$SOCK" tags add SIMTAG >/dev/null
$PY scripts/simulate.py "ws://127.0.0.1:$PORT/ocpp" --chargers 1 --session-every 2 \
  --session-length 30 --meter-interval 1 --duration 60 --summary-every 30 >"$WORK/sim.log" 2>&1 &
SIM=$!

tmux -L "$TMUX_SOCK" new-session -d -s console -x 120 -y 30 \
  "TERM=xterm-256color $PY -m console --socket $SOCK"
screen() { tmux -L "$TMUX_SOCK" capture-pane -p -t console; }
expect() { # text, seconds
  for _ in $(seq 1 $(( $2 * 10 ))); do screen | grep -q "$1" && return 0; sleep 0.1; done
  echo "FAIL: '$1' not on screen"; screen; exit 1
}
expect "SIM-1" 15
expect "online" 15
expect "Charging" 20
echo "ok: the table shows SIM-1 online and charging"
tmux -L "$TMUX_SOCK" send-keys -t console C-o
expect "Command for" 5
tmux -L "$TMUX_SOCK" send-keys -t console Down Down Enter   # Soft reset
expect "Soft reset" 5
tmux -L "$TMUX_SOCK" send-keys -t console Enter
expect "Soft reset on SIM-1: Accepted" 15
echo "ok: soft reset through the menu was accepted"
tmux -L "$TMUX_SOCK" send-keys -t console F1
expect "ctrl+q" 5
tmux -L "$TMUX_SOCK" send-keys -t console Escape C-q
echo "PASS: console end-to-end in tmux"
