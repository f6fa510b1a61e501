#!/usr/bin/env bash
# Interleaved A/B of Tayori's MX: a git revision (BASE) against the working tree, on one host.
#
#   bash bench/ab_smtp.sh BASE [--pairs 4] [--messages 3000] [--concurrency 50]
#                              [--processes 1] [--size 5271]
#
# The shared 2-core machines drift by tens of percent within an hour, so two versions are
# only compared in pairs run back to back, the order alternating from pair to pair (use an
# even number: the first run of a pair tends to differ; one pair of the same code against
# itself has shown ±10 %, so a few per cent needs several pairs). Each run
# gets a fresh instance (`tayori init` in a temp dir, SMTP only on 127.0.0.1:$SMTP_PORT,
# inbound checks off, 100 recipients user00..user99), started from that side's own code:
# BASE comes from `git archive BASE src`, put first on PYTHONPATH (init, accounts and serve
# all run BASE's code, so each side's migrations make its own schema). Load from
# smtp_inbound.py; prints msg/s and server CPU ms/msg per run and the means per side.
# Every process is bounded in time; nothing leaves loopback. Needs `make install` first.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
PY=$REPO/.venv/bin/python
SMTP_PORT=${SMTP_PORT:-21025}
PAIRS=4
MESSAGES=3000
CONCURRENCY=50
PROCESSES=1
SIZE=5271

[ $# -ge 1 ] || { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2; }
case "$1" in -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
BASE=$1; shift
while [ $# -gt 0 ]; do
  case "$1" in
    --pairs) PAIRS=$2; shift 2 ;;
    --messages) MESSAGES=$2; shift 2 ;;
    --concurrency) CONCURRENCY=$2; shift 2 ;;
    --processes) PROCESSES=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

[ -x "$PY" ] || { echo "no Tayori venv at $PY: run 'make install' first" >&2; exit 2; }
BASE_REV=$(git -C "$REPO" rev-parse --short "$BASE^{commit}") \
  || { echo "$BASE is not a revision of $REPO" >&2; exit 2; }
RUN_DIR=$(mktemp -d /var/tmp/tayori-ab.XXXXXX)
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$RUN_DIR"
}
trap cleanup EXIT
mkdir -p "$RUN_DIR/base"
git -C "$REPO" archive "$BASE_REV" src | tar -x -C "$RUN_DIR/base"
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# run_one SIDE PAIR: one fresh instance of SIDE ("base" or "tree"), one load run; appends
# "side msg_s cpu_ms_per_msg" to $RUN_DIR/results.
run_one() {
  local side=$1 pair=$2 path=""
  [ "$side" = base ] && path=$RUN_DIR/base/src
  local d=$RUN_DIR/$side-$pair
  PYTHONPATH=$path timeout 120 "$PY" -m tayori init --data-dir "$d" --domain example.test \
    > "$d.init.log"
  sed -i \
    -e "s/^smtp = .*/smtp = \"127.0.0.1:$SMTP_PORT\"/" \
    -e 's/^\(submission\|submissions\|pop3\|pop3s\|imap\|imaps\|http\) = .*/\1 = ""/' \
    -e 's/^# *max_connections_per_ip = .*/max_connections_per_ip = 2000/' \
    -e 's/^# *max_connections = .*/max_connections = 4000/' \
    -e 's/^# *checks = .*/checks = false/' \
    "$d/tayori.toml"
  if [ "$PROCESSES" != 1 ]; then
    sed -i "s/^\[server\]\$/[server]\nsmtp_processes = $PROCESSES/" "$d/tayori.toml"
  fi
  (cd "$HERE" && PYTHONPATH=$path timeout 300 "$PY" -c '
import sys
from _common import create_accounts
create_accounts(sys.argv[1], "user{i:02d}@example.test", 100, "benchpass")
' "$d/tayori.toml")
  PYTHONPATH=$path "$PY" -m tayori serve --config "$d/tayori.toml" > "$d.serve.log" 2>&1 &
  SERVER_PID=$!
  local ready=0
  for _ in $(seq 1 600); do
    if grep -qx ready "$d.serve.log"; then ready=1; break; fi
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  [ "$ready" = 1 ] || { log "$side did not become ready:"; tail -20 "$d.serve.log" >&2; exit 1; }
  timeout 900 "$PY" "$HERE/smtp_inbound.py" --port "$SMTP_PORT" --messages "$MESSAGES" \
    --concurrency "$CONCURRENCY" --size "$SIZE" --rcpt 'user{i:02d}@example.test' \
    --rcpt-count 100 --server-pid "$SERVER_PID" --timeout 800 --json > "$d.json" \
    || log "$side pair $pair: not every message got 250"
  kill "$SERVER_PID"
  timeout 60 tail --pid="$SERVER_PID" -f /dev/null || kill -9 "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
  "$PY" -c 'import json, sys
r = json.load(open(sys.argv[1]))
print(sys.argv[2], round(r["msgs_per_s"] or 0, 1), round(r["server_cpu_ms_per_msg"] or 0, 2), r["ok"])
' "$d.json" "$side" | tee -a "$RUN_DIR/results" >&2
  rm -rf "$d"
}

log "A/B: base $BASE_REV against the working tree ($(git -C "$REPO" rev-parse --short HEAD)" \
  "+ uncommitted changes, if any); $PAIRS pairs of $MESSAGES x $SIZE B, $CONCURRENCY sessions," \
  "$PROCESSES MX process(es)"
for pair in $(seq 1 "$PAIRS"); do
  if [ $((pair % 2)) = 1 ]; then run_one base "$pair"; run_one tree "$pair"
  else run_one tree "$pair"; run_one base "$pair"; fi
done
"$PY" - "$RUN_DIR/results" "$BASE_REV" <<'EOF'
import statistics
import sys

rows = [line.split() for line in open(sys.argv[1])]
print("| side | msg/s per run | CPU ms/msg per run | mean msg/s | mean CPU ms/msg |")
print("|---|---|---|---|---|")
means = {}
for side, label in (("base", f"base {sys.argv[2]}"), ("tree", "working tree")):
    mine = [(float(r[1]), float(r[2])) for r in rows if r[0] == side]
    rate = statistics.mean(m[0] for m in mine)
    cpu = statistics.mean(m[1] for m in mine)
    means[side] = (rate, cpu)
    print(f"| {label} | {' · '.join(f'{m[0]:.0f}' for m in mine)} | "
          f"{' · '.join(f'{m[1]:.2f}' for m in mine)} | {rate:.1f} | {cpu:.2f} |")
(base_rate, base_cpu), (tree_rate, tree_cpu) = means["base"], means["tree"]
print(f"\nworking tree against base: msg/s {100 * (tree_rate / base_rate - 1):+.1f} %, "
      f"CPU per message {100 * (tree_cpu / base_cpu - 1):+.1f} %")
EOF
