#!/usr/bin/env bash
# The reference Python client's scenario against ran-emulator: its examples multicast.py
# and upstream_downstream_simple.py, with the URL and token filled in, over TLS (the
# Python client speaks https/wss only).
#
#   git clone https://github.com/everynet/ran.routing.pyclient /tmp/pyclient
#   python3 -m venv /tmp/pyenv && /tmp/pyenv/bin/pip install /tmp/pyclient
#   cargo build -p ran-routing-emulator --bin ran-emulator
#   emulator/tests/pyclient/run.sh /tmp/pyclient /tmp/pyenv/bin/python target/debug/ran-emulator
#
# Not part of CI: it needs the Python client and its dependencies from PyPI.
set -euo pipefail
PYCLIENT=$1
PYTHON=$2
BIN=$3
WORK=$(mktemp -d)
PORT=${PORT:-18765}
"$BIN" --port "$PORT" --token pytoken --tls --cert-out "$WORK/cert.pem" >"$WORK/emulator.log" 2>&1 &
PID=$!
trap 'kill $PID' EXIT
for _ in $(seq 50); do [ -s "$WORK/cert.pem" ] && break; sleep 0.1; done
BASE="https://127.0.0.1:$PORT"
export SSL_CERT_FILE="$WORK/cert.pem"
for ex in multicast upstream_downstream_simple; do
  sed -e 's|access_token="..."|access_token="pytoken"|' -e "s|url=\"...\"|url=\"$BASE/api/v1\"|" \
    "$PYCLIENT/examples/$ex.py" >"$WORK/$ex.py"
done
"$PYTHON" "$WORK/multicast.py" >"$WORK/multicast.out"
echo "multicast.py: ok"
# The upstream example waits for an uplink: the control API sends one.
"$PYTHON" "$WORK/upstream_downstream_simple.py" >"$WORK/updown.out" 2>&1 &
PY=$!
curl_() { curl -s --cacert "$WORK/cert.pem" "$@"; }
for _ in $(seq 50); do
  curl_ "$BASE/emulator/status" | grep -q '"upstream_connections":1' && break
  sleep 0.2
done
curl_ -X POST -H 'Content-Type: application/json' "$BASE/emulator/upstream" -d \
  '{"ProtocolVersion":1,"TransactionID":4,"DevEUIs":[8844537008791951183],
    "Radio":{"Frequency":868100000,"LoRa":{"Spreading":7,"Bandwidth":125000},"RSSI":-60,"SNR":7.5},
    "PHYPayloadNoMIC":[64,1,2,3,4,0,1,0,1,2],"MICChallenge":[1,2]}' >/dev/null
wait $PY || { cat "$WORK/updown.out"; exit 1; }
echo "upstream_downstream_simple.py: ok"
