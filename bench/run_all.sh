#!/bin/bash
# Tayori and its peers (Postfix + Dovecot, bare aiosmtpd) on loopback, in one run, side by side.
#
#   bash bench/run_all.sh                      # everything: ~50-70 min on a 2-core machine
#   bash bench/run_all.sh --quick              # 500 messages, 1 rep, 100 idle conns: smoke test
#   bash bench/run_all.sh --skip-peers         # Tayori only
#
# Tayori: every measurement gets a fresh instance (`tayori init` in a temp data dir, ports
# $SMTP_PORT/$POP3_PORT on 127.0.0.1, other listeners off, connection limits raised so that 50
# sessions and 500 idle connections from 127.0.0.1 fit), started with `tayori serve` and
# stopped by PID. SMTP at concurrency 1, 10, 50 (10,000 x 5,271 B: what smtp-source -l 5120
# sends to the peers), POP3 download of 5,000 messages, memory per idle logged-in POP3
# connection (500). Tayori rep 1 runs before the peers and rep 2 after them, so that drift in
# the machine's other load hits both. Then ../shared/bench/run_peers.sh with matching options.
# Needs root (the peers run private Postfix/Dovecot instances) and Tayori's venv in .venv.
#
# Options: --reps N (Tayori, default 2), --peer-reps N (default 2), --messages N (SMTP, 10000),
#   --pop3-messages N (5000), --idle-conns K (500), --concurrency LIST (1,10,50),
#   --mem-reps N (idle-memory runs, default 1: 500 argon2 logins take minutes),
#   --checks-concurrency LIST (10,50; "" to skip): extra SMTP runs with Tayori's inbound
#   checks on (FCrDNS, HELO, sender domain, SPF, DKIM, DMARC) against a loopback DNS server;
#   the main SMTP runs have them off, as the peers do no DNS checks either,
#   --quiet-wait S (20), --skip-peers, --quick, --keep (keep the scratch dir),
#   --smtp-processes N (Tayori's `[server] smtp_processes`, default 1: MX in N processes).
# Env: SMTP_PORT (21025), POP3_PORT (21110), BENCH_MAX_SECONDS (overall bound, 7200),
#   BENCH_RUN_ROOT (peers' scratch, default /var/tmp/tayori-bench-run).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
PY=$REPO/.venv/bin/python
PEERS=${PEERS_DIR:-$(cd "$REPO/../shared/bench" 2>/dev/null && pwd || echo /work/shared/bench)}
SMTP_PORT=${SMTP_PORT:-21025}
POP3_PORT=${POP3_PORT:-21110}
MAX_SECONDS=${BENCH_MAX_SECONDS:-7200}
REPS=2
PEER_REPS=2
MESSAGES=10000
POP3_MESSAGES=5000
IDLE_CONNS=500
CONCURRENCY=1,10,50
CHECKS_CONCURRENCY=10,50
MEM_REPS=1
SMTP_PROCESSES=1
QUIET_WAIT=20
SKIP_PEERS=0
KEEP=0
SIZE=5271        # bytes on the wire per message, = smtp-source -l 5120 (what the peers get)
PASSWORD=benchpass
ARGS="$*"

while [ $# -gt 0 ]; do
  case "$1" in
    --reps) REPS=$2; shift 2 ;;
    --peer-reps) PEER_REPS=$2; shift 2 ;;
    --messages) MESSAGES=$2; shift 2 ;;
    --pop3-messages) POP3_MESSAGES=$2; shift 2 ;;
    --idle-conns) IDLE_CONNS=$2; shift 2 ;;
    --concurrency) CONCURRENCY=$2; shift 2 ;;
    --checks-concurrency) CHECKS_CONCURRENCY=$2; shift 2 ;;
    --mem-reps) MEM_REPS=$2; shift 2 ;;
    --quiet-wait) QUIET_WAIT=$2; shift 2 ;;
    --smtp-processes) SMTP_PROCESSES=$2; shift 2 ;;
    --skip-peers) SKIP_PEERS=1; shift ;;
    --keep) KEEP=1; shift ;;
    --quick) REPS=1; PEER_REPS=1; MESSAGES=500; POP3_MESSAGES=500; IDLE_CONNS=100
             QUIET_WAIT=2; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

[ -x "$PY" ] || { echo "no Tayori venv at $PY: run 'make install' first" >&2; exit 2; }
START=$(date +%s)
DEADLINE=$((START + MAX_SECONDS))
RUN_DIR=$(mktemp -d /var/tmp/tayori-bench.XXXXXX)
OUT=$RUN_DIR/results
mkdir -p "$OUT"
printf '%s\n' "$PASSWORD" > "$RUN_DIR/password"
chmod 600 "$RUN_DIR/password"
TAYORI_PID=""
DNS_PID=""
DNS_PORT=""

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

remaining() {  # seconds left of the overall bound (at least 1)
  local left=$((DEADLINE - $(date +%s)))
  [ "$left" -gt 0 ] || { log "overall time bound of ${MAX_SECONDS}s reached"; exit 3; }
  echo "$left"
}

bounded() {  # bounded SECONDS CMD...: run CMD with min(SECONDS, time left) as its limit
  local limit=$1; shift
  local left; left=$(remaining)
  [ "$limit" -lt "$left" ] || limit=$left
  timeout --signal=TERM --kill-after=30 "$limit" "$@"
}

stop_tayori() {
  [ -n "$TAYORI_PID" ] || return 0
  local pid=$TAYORI_PID
  TAYORI_PID=""
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "tayori pid $pid did not stop within 30s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
}

stop_dns() {
  [ -n "$DNS_PID" ] || return 0
  kill -TERM "$DNS_PID" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$DNS_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$DNS_PID" 2>/dev/null || true
  wait "$DNS_PID" 2>/dev/null || true
  DNS_PID=""
}

# A loopback DNS server (Tayori's test server) that makes the load client look like a
# well-configured sending MTA: FCrDNS, HELO name, sender domain with MX, SPF pass, DMARC p=none.
start_dns() {
  [ -z "$DNS_PID" ] || return 0
  cat > "$RUN_DIR/zone.json" <<'ZONE'
{"records": [
  {"name": "client.bench.test", "type": "A", "value": "127.0.0.1"},
  {"name": "client.bench.test", "type": "MX", "value": "10 client.bench.test"},
  {"name": "client.bench.test", "type": "TXT", "value": "v=spf1 ip4:127.0.0.0/8 -all"},
  {"name": "_dmarc.client.bench.test", "type": "TXT", "value": "v=DMARC1; p=none"},
  {"name": "1.0.0.127.in-addr.arpa", "type": "PTR", "value": "client.bench.test."}
]}
ZONE
  "$PY" -m tayori.testing.dns_server --zone "$RUN_DIR/zone.json" > "$RUN_DIR/dns.port" \
    2> "$RUN_DIR/dns.log" &
  DNS_PID=$!
  for _ in $(seq 1 100); do
    DNS_PORT=$(head -1 "$RUN_DIR/dns.port" 2>/dev/null || true)
    [ -z "$DNS_PORT" ] || break
    sleep 0.1
  done
  [ -n "$DNS_PORT" ] || { log "test DNS server did not start"; cat "$RUN_DIR/dns.log" >&2; exit 1; }
  log "test DNS server pid $DNS_PID on 127.0.0.1:$DNS_PORT"
}

cleanup() {
  local rc=$?
  stop_tayori
  stop_dns
  if [ "$KEEP" = 1 ] || [ "$rc" != 0 ]; then
    log "scratch dir kept: $RUN_DIR"
  else
    rm -rf "$RUN_DIR"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in "$SMTP_PORT" "$POP3_PORT"; do
  if port_busy "$port"; then
    echo "port $port is in use on 127.0.0.1: set SMTP_PORT/POP3_PORT to free ones" >&2
    exit 2
  fi
done

# start_tayori NAME [IDLE_ACCOUNTS] [checks]: fresh instance in $RUN_DIR/NAME, sets TAYORI_PID, D.
# Inbound checks are off unless the third argument is "checks" (then DNS is our test server).
start_tayori() {
  local name=$1 idle=${2:-0} checks=${3:-}
  D=$RUN_DIR/$name
  bounded 120 "$PY" -m tayori init --data-dir "$D" --domain example.test > "$D.init.log"
  # Ports: only SMTP and POP3 listen; limits raised for 50 sessions / 500 idle connections
  # from one address (defaults: 20 per IP, 1000 in all).
  sed -i \
    -e "s/^smtp = .*/smtp = \"127.0.0.1:$SMTP_PORT\"/" \
    -e "s/^pop3 = .*/pop3 = \"127.0.0.1:$POP3_PORT\"/" \
    -e 's/^\(submission\|submissions\|pop3s\|imap\|imaps\|http\) = .*/\1 = ""/' \
    -e 's/^# *max_connections_per_ip = .*/max_connections_per_ip = 2000/' \
    -e 's/^# *max_connections = .*/max_connections = 4000/' \
    "$D/tayori.toml"
  grep -q "^max_connections_per_ip = 2000" "$D/tayori.toml" \
    || { log "could not set limits in $D/tayori.toml"; exit 1; }
  if [ "$SMTP_PROCESSES" != 1 ]; then
    sed -i "s/^\[server\]\$/[server]\nsmtp_processes = $SMTP_PROCESSES/" "$D/tayori.toml"
    grep -q "^smtp_processes = $SMTP_PROCESSES" "$D/tayori.toml" \
      || { log "could not set smtp_processes in $D/tayori.toml"; exit 1; }
  fi
  if [ "$checks" = checks ]; then
    sed -i "s/^# *nameservers = .*/nameservers = [\"127.0.0.1:$DNS_PORT\"]/" "$D/tayori.toml"
    grep -q "^nameservers = " "$D/tayori.toml" || { log "could not set [dns] nameservers"; exit 1; }
  elif grep -q "^# *checks = " "$D/tayori.toml"; then
    sed -i 's/^# *checks = .*/checks = false/' "$D/tayori.toml"
  fi
  bounded 120 "$PY" -m tayori --config "$D/tayori.toml" config check > /dev/null
  bounded 120 "$PY" -m tayori --config "$D/tayori.toml" user add bench@example.test \
    --password-stdin --quota 0 < "$RUN_DIR/password" > /dev/null
  # 100 SMTP recipients (the peers spread smtp-source's load over user00..user99 too) and the
  # idle-connection accounts, through Tayori's store API in one process (see _common.py).
  (cd "$HERE" && bounded 300 "$PY" -c '
import sys
from _common import create_accounts
config, idle, password = sys.argv[1], int(sys.argv[2]), open(sys.argv[3]).read().strip()
create_accounts(config, "user{i:02d}@example.test", 100, password)
create_accounts(config, "idle{i:04d}@example.test", idle, password)
' "$D/tayori.toml" "$idle" "$RUN_DIR/password")
  "$PY" -m tayori serve --config "$D/tayori.toml" > "$D.serve.log" 2>&1 &
  TAYORI_PID=$!
  for _ in $(seq 1 600); do
    if grep -qx ready "$D.serve.log"; then
      log "tayori $name: pid $TAYORI_PID ready"
      return 0
    fi
    kill -0 "$TAYORI_PID" 2>/dev/null || break
    sleep 0.1
  done
  log "tayori $name did not become ready:"; tail -20 "$D.serve.log" >&2
  exit 1
}

smtp_run() {  # smtp_run CONC REP [checks]
  local conc=$1 rep=$2 checks=${3:-} kind=smtp
  if [ "$checks" = checks ]; then start_dns; kind=smtpchecks; fi
  start_tayori "$kind-c$conc-r$rep" 0 "$checks"
  local json="$OUT/tayori-$kind-c$conc-r$rep.json"
  bounded 900 "$PY" "$HERE/smtp_inbound.py" --port "$SMTP_PORT" --messages "$MESSAGES" \
    --concurrency "$conc" --size "$SIZE" --rcpt 'user{i:02d}@example.test' --rcpt-count 100 \
    --server-pid "$TAYORI_PID" --quiet-wait "$QUIET_WAIT" --timeout 800 --json \
    > "$json" || log "$kind c=$conc rep $rep: not every message got 250"
  "$PY" -c 'import json,sys; r=json.load(open(sys.argv[1])); print("tayori %s c=%d: %s msg/s, p50 %s ms, p99 %s ms, server CPU %.2f ms/msg, ok %d, other load %.2f cores, refused %s" % (sys.argv[2], r["concurrency"], round(r["msgs_per_s"] or 0), r["latency_ms"]["p50"], r["latency_ms"]["p99"], r["server_cpu_ms_per_msg"] or 0, r["ok"], r["other_load_cores"] or 0, r["refused"] or r["errors"] or 0))' \
    "$json" "$kind" >&2 || log "no result in $json"
  stop_tayori
}

smtp_source_run() {  # the peers' own load tool against Tayori: 1 message per connection
  local conc=$1 rep=$2
  command -v smtp-source > /dev/null || return 0
  start_tayori "smtpsource-c$conc-r$rep"
  "$PY" -c 'import sys; sys.path.insert(0, sys.argv[1]); from _common import wait_quiet; wait_quiet(float(sys.argv[2]))' \
    "$HERE" "$QUIET_WAIT"
  local t0 t1 rc=0
  t0=$(date +%s.%N)
  bounded 900 smtp-source -m "$MESSAGES" -s "$conc" -l 5120 -M client.bench.test \
    -f sender@client.bench.test -t bench@example.test "127.0.0.1:$SMTP_PORT" || rc=$?
  t1=$(date +%s.%N)
  local delivered
  delivered=$(bounded 300 "$PY" -m tayori --config "$D/tayori.toml" outcomes --json \
    --limit $((MESSAGES * 2)) | grep -c '"outcome": "delivered"' || true)
  echo "{\"tool\": \"smtp-source\", \"concurrency\": $conc, \"messages\": $MESSAGES," \
    "\"delivered\": $delivered, \"rc\": $rc, \"seconds\": $("$PY" -c "print($t1 - $t0)")}" \
    > "$OUT/tayori-smtpsource-c$conc-r$rep.json"
  log "tayori via smtp-source c=$conc: $(cat "$OUT/tayori-smtpsource-c$conc-r$rep.json")"
  stop_tayori
}

pop3_run() {
  local rep=$1
  start_tayori "pop3-r$rep"
  bounded 900 "$PY" "$HERE/pop3_retr.py" --port "$POP3_PORT" --user bench@example.test \
    --password-file "$RUN_DIR/password" --messages "$POP3_MESSAGES" --fill \
    --smtp-port "$SMTP_PORT" --size "$SIZE" --sessions 2 --server-pid "$TAYORI_PID" \
    --quiet-wait "$QUIET_WAIT" --timeout 600 --json > "$OUT/tayori-pop3-r$rep.json" \
    || log "pop3 rep $rep: download incomplete"
  stop_tayori
}

mem_run() {
  local rep=$1
  start_tayori "mem-r$rep" "$IDLE_CONNS"
  bounded 1200 "$PY" "$HERE/pop3_idle_memory.py" --port "$POP3_PORT" --pid "$TAYORI_PID" \
    --connections "$IDLE_CONNS" --user-pattern 'idle{i:04d}@example.test' \
    --password-file "$RUN_DIR/password" --timeout 1100 --json > "$OUT/tayori-mem-r$rep.json" \
    || log "memory rep $rep failed"
  cat "$OUT/tayori-mem-r$rep.json" >&2
  stop_tayori
}

tayori_rep() {
  local rep=$1
  log "=== Tayori rep $rep ==="
  for conc in ${CONCURRENCY//,/ }; do smtp_run "$conc" "$rep"; done
  for conc in ${CHECKS_CONCURRENCY//,/ }; do smtp_run "$conc" "$rep" checks; done
  smtp_source_run 10 "$rep"
  pop3_run "$rep"
  if [ "$rep" -le "$MEM_REPS" ]; then mem_run "$rep"; fi
}

{
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "host: $(uname -srm), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB RAM", $2/1048576}' /proc/meminfo)"
  echo "fs: $(df -T /var/tmp | awk 'NR==2 {print $2, $1}')"
  dirty=""
  [ -n "$(cd "$REPO" && git status --porcelain --untracked-files=no 2>/dev/null)" ] \
    && dirty=" (+ uncommitted changes)"
  echo "tayori: $(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null)$dirty"
  echo "python: $("$PY" -c 'import sys, uvloop, aiosmtpd, sqlalchemy; print(sys.version.split()[0], "uvloop", uvloop.__version__, "aiosmtpd", aiosmtpd.__version__, "sqlalchemy", sqlalchemy.__version__)')"
  echo "command: bash bench/run_all.sh $ARGS"
  echo "options: reps=$REPS peer_reps=$PEER_REPS messages=$MESSAGES size=$SIZE concurrency=$CONCURRENCY checks_concurrency=$CHECKS_CONCURRENCY smtp_processes=$SMTP_PROCESSES pop3_messages=$POP3_MESSAGES idle_conns=$IDLE_CONNS quiet_wait=$QUIET_WAIT"
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$OUT/meta.txt"
cat "$OUT/meta.txt" >&2

tayori_rep 1
if [ "$SKIP_PEERS" = 0 ]; then
  log "=== peers: Postfix + Dovecot, bare aiosmtpd (run_peers.sh) ==="
  BENCH_MAX_SECONDS=$(remaining) bash "$PEERS/run_peers.sh" \
    --only fsync,smtp,py,pop3,mem --reps "$PEER_REPS" --smtp-messages "$MESSAGES" \
    --concurrency "$CONCURRENCY" --pop3-messages "$POP3_MESSAGES" \
    --idle-conns "$IDLE_CONNS" --py-loops asyncio,uvloop --py-modes inline \
    --mem-targets "dovecot pop3,aiosmtpd" --quiet-wait "$QUIET_WAIT" \
    --json "$OUT/peers.json" > "$OUT/peers.md" || log "peer bench reported failures (see $OUT/peers.md)"
fi
for rep in $(seq 2 "$REPS"); do tayori_rep "$rep"; done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg); total $(( $(date +%s) - START ))s" >> "$OUT/meta.txt"

"$PY" "$HERE/_common.py" report "$OUT" | tee "$OUT/report.md"
if [ "$KEEP" = 0 ]; then
  mkdir -p /var/tmp/tayori-bench-results
  keep=/var/tmp/tayori-bench-results/$(date +%Y%m%d-%H%M%S)
  cp -r "$OUT" "$keep"
  log "raw results copied to $keep"
fi
