#!/usr/bin/env bash
# Runs the README quick start literally, from a fresh clone, and checks that it works:
# the server answers, the simulated charger is charging (a session with meter values),
# ctl lists it and the HTTP API returns it. Bounded: the whole run is killed after
# QUICKSTART_TIMEOUT seconds (default 600), the session check after 150 s.
#
#   scripts/quickstart_check.sh            # clones the committed HEAD of this repository
#
# The lines between the quickstart markers of README.md run unchanged in one bash shell
# (the interactive `voltaro console` line is skipped), with two deviations so that the
# check can run on a machine that already has a Voltaro: free ports instead of 9000/8080
# (by VOLTARO_PORT / VOLTARO_HTTP_PORT and a rewrite of those two numbers in the lines),
# and a control socket in the scratch directory (VOLTARO_CONTROL_SOCKET).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
timeout_s=${QUICKSTART_TIMEOUT:-600}
work=$(mktemp -d "${TMPDIR:-/tmp}/voltaro-quickstart.XXXXXX")
echo "quickstart_check: fresh clone of $repo in $work"
git clone -q "$repo" "$work/voltaro"
cd "$work/voltaro"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ocpp_port=$(free_port)
http_port=$(free_port)

lines=$(awk '/<!-- quickstart:begin/{on=1; next} /<!-- quickstart:end/{on=0} on' README.md \
    | grep -v '^```' | grep -v 'voltaro console$')
lines=${lines//127.0.0.1:9000/127.0.0.1:$ocpp_port}
lines=${lines//127.0.0.1:8080/127.0.0.1:$http_port}

cat > quickstart.sh <<SCRIPT
set -eu
# Stop what the quick start started in the background, whatever happens.
trap 'kill \$(jobs -p) 2>/dev/null; wait' EXIT
export VOLTARO_PORT=$ocpp_port VOLTARO_HTTP_PORT=$http_port
export VOLTARO_CONTROL_SOCKET=$work/control.sock
# --- the README quick start ---
$lines
# --- the checks ---
echo "quickstart_check: waiting for a charging session with meter values (up to 150 s)"
deadline=\$((SECONDS + 150))
until .venv/bin/voltaro ctl --json transactions list | .venv/bin/python -c '
import json, sys
rows = json.load(sys.stdin)
sys.exit(0 if any(r["last_meter_wh"] and r["last_meter_wh"] > r["meter_start"] for r in rows) else 1)
'; do
    if [ \$SECONDS -ge \$deadline ]; then
        echo "quickstart_check: FAILED: no charging session after 150 s"; tail -20 voltaro.log simulate.log; exit 1
    fi
    sleep 2
done
.venv/bin/voltaro ctl transactions list
code=\$(curl -s -o api.json -w '%{http_code}' -H "Authorization: Bearer \$TOKEN" "http://127.0.0.1:$http_port/sessions?active=true")
[ "\$code" = 200 ] || { echo "quickstart_check: FAILED: API answered \$code"; exit 1; }
.venv/bin/python -c 'import json; body = json.load(open("api.json")); assert body["total"] >= 1, body'
# The interactive API docs work without internet: the page and every file it names
# come from this server (no CDN).
curl -sf -o docs.html "http://127.0.0.1:$http_port/docs"
if grep -Eq '(src|href)="https?://' docs.html; then
    echo "quickstart_check: FAILED: /docs loads from another host"; exit 1
fi
for asset in \$(grep -Eo '(src|href)="/[^"]+"' docs.html | cut -d'"' -f2) /openapi.json; do
    curl -sf -o /dev/null "http://127.0.0.1:$http_port\$asset" \
        || { echo "quickstart_check: FAILED: /docs asset \$asset"; exit 1; }
done
if grep -q Traceback voltaro.log simulate.log; then
    echo "quickstart_check: FAILED: a traceback in the logs"; exit 1
fi
echo "quickstart_check: OK"
SCRIPT

start=$SECONDS
if timeout --kill-after=10 "$timeout_s" bash quickstart.sh; then
    echo "quickstart_check: passed in $((SECONDS - start)) s ($work)"
    rm -rf "$work"
else
    echo "quickstart_check: FAILED after $((SECONDS - start)) s; files kept in $work" >&2
    exit 1
fi
