#!/usr/bin/env bash
# Data-plane benchmark: the same HTTP/1.1 load on 127.0.0.1 against
#   direct          the backend itself
#   causeway-1hop   client -> causeway-proxy -> backend
#   causeway-2hop   client -> causeway-proxy (outbound) =h2c=> causeway-proxy (inbound) -> backend
#   nginx           client -> nginx (upstream keepalive) -> backend
#   haproxy         client -> haproxy (http mode, keep-alive) -> backend
#   gofloor         client -> bench/gofloor (the least a Go proxy does, with
#                   the sidecar's runtime tuning) -> backend
# For each: latency at a fixed rate (open loop, corrected for coordinated
# omission), maximum throughput (closed loop), proxy CPU per request and peak
# RSS. Prints a markdown table and writes it to docs/benchmarks.md.
#
# Usage: make bench   (or: bash bench/run.sh)
# Knobs (environment):
#   BENCH_ROUNDS=5          times every target runs (interleaved); the report takes medians
#   BENCH_DURATION=10s      measured window of the fixed-rate phase
#   BENCH_WARMUP=1s         unrecorded warm-up before it
#   BENCH_RATE=1000         fixed rate, req/s
#   BENCH_RATE_CONNS=8      keep-alive connections for the fixed rate
#   BENCH_MAX_DURATION=5s   measured window of the max-throughput phase
#   BENCH_MAX_CONNS=32      connections for the max-throughput phase
#   BENCH_PROXY_CPUS=nproc  nginx worker_processes = haproxy nbthread = Go GOMAXPROCS
#   BENCH_TARGETS="direct causeway-1hop causeway-2hop nginx haproxy"
#   BENCH_PORT_BASE=18080   ports BASE..BASE+5 and BASE+10..BASE+12 on 127.0.0.1
#   BENCH_BODY_SIZE=128     response body bytes
#   BENCH_OUT=docs/benchmarks.md   where the report goes ("" for stdout only)
#   BENCH_INSTALL=1         apt-get install nginx-light/haproxy when missing
#   BENCH_KEEP=0            1 keeps the temp dir (configs, logs, raw JSON)
#   BENCH_CAUSEWAY_BIN=     use this causeway-proxy instead of building bin/causeway-proxy
#   BENCH_CAUSEWAY_FLAGS="-access-log off"   extra sidecar flags (nginx and haproxy log nothing either)
#   BENCH_DATAPLANE_ONLY=0  1 skips the trust and federation sections (data plane only)
#
# Every process it starts is killed on exit, on failure and on Ctrl-C.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

USER_KNOBS=$(env | grep -E '^BENCH_[A-Z_]+=' | sort | tr '\n' ' ' || true)

BENCH_ROUNDS=${BENCH_ROUNDS:-5}
BENCH_DURATION=${BENCH_DURATION:-10s}
BENCH_WARMUP=${BENCH_WARMUP:-1s}
BENCH_RATE=${BENCH_RATE:-1000}
BENCH_RATE_CONNS=${BENCH_RATE_CONNS:-8}
BENCH_MAX_DURATION=${BENCH_MAX_DURATION:-5s}
BENCH_MAX_CONNS=${BENCH_MAX_CONNS:-32}
BENCH_PROXY_CPUS=${BENCH_PROXY_CPUS:-$(nproc)}
BENCH_TARGETS=${BENCH_TARGETS:-"direct causeway-1hop causeway-2hop nginx haproxy gofloor"}
BENCH_PORT_BASE=${BENCH_PORT_BASE:-18080}
BENCH_BODY_SIZE=${BENCH_BODY_SIZE:-128}
BENCH_OUT=${BENCH_OUT-docs/benchmarks.md}
BENCH_INSTALL=${BENCH_INSTALL:-1}
BENCH_KEEP=${BENCH_KEEP:-0}
BENCH_CAUSEWAY_FLAGS=${BENCH_CAUSEWAY_FLAGS-"-access-log off"}
read -r -a CAUSEWAY_FLAGS <<<"$BENCH_CAUSEWAY_FLAGS"

BACKEND_PORT=$((BENCH_PORT_BASE + 0))
CW1_PORT=$((BENCH_PORT_BASE + 1))
CW2_OUT_PORT=$((BENCH_PORT_BASE + 2))
CW2_IN_PORT=$((BENCH_PORT_BASE + 3))
NGINX_PORT=$((BENCH_PORT_BASE + 4))
HAPROXY_PORT=$((BENCH_PORT_BASE + 5))
GOFLOOR_PORT=$((BENCH_PORT_BASE + 6))
CW1_ADMIN=$((BENCH_PORT_BASE + 10))
CW2_OUT_ADMIN=$((BENCH_PORT_BASE + 11))
CW2_IN_ADMIN=$((BENCH_PORT_BASE + 12))

WORK=$(mktemp -d /tmp/causeway-bench.XXXXXX)
RES=$WORK/results
LOGS=$WORK/logs
mkdir -p "$RES" "$LOGS" "$WORK/bin" "$WORK/nginx"

log() { printf '[bench] %s\n' "$*" >&2; }

# ---- process tracking and cleanup -------------------------------------------
PIDS=()
LAST_PID=

cleanup() {
	local rc=$? pid alive i
	trap - EXIT INT TERM
	for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for i in $(seq 30); do
		alive=0
		for pid in "${PIDS[@]}"; do
			if kill -0 "$pid" 2>/dev/null; then alive=1; fi
		done
		[ "$alive" = 0 ] && break
		sleep 0.1
	done
	for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
	if [ "$BENCH_KEEP" = 1 ]; then
		log "kept $WORK"
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

# start NAME CMD...: runs CMD in the background, logging to $LOGS/NAME.log.
start() {
	local name=$1
	shift
	"$@" >"$LOGS/$name.log" 2>&1 &
	LAST_PID=$!
	PIDS+=("$LAST_PID")
}

# http_ok PORT: one GET / on 127.0.0.1:PORT answered 2xx.
http_ok() {
	local line
	{ exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
	printf 'GET / HTTP/1.1\r\nHost: bench.local\r\nConnection: close\r\n\r\n' >&3 2>/dev/null || { exec 3<&- 3>&-; return 1; }
	if ! IFS= read -r -t 2 line <&3; then
		exec 3<&- 3>&-
		return 1
	fi
	exec 3<&- 3>&-
	[[ $line == HTTP/1.?" 2"* ]]
}

# port_busy PORT: something already listens on 127.0.0.1:PORT.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_ready PORT PID...: up to 10 s for PORT to answer 2xx while every PID lives.
wait_ready() {
	local port=$1 pid i
	shift
	for i in $(seq 100); do
		if http_ok "$port"; then return 0; fi
		for pid in "$@"; do
			if ! kill -0 "$pid" 2>/dev/null; then return 1; fi
		done
		sleep 0.1
	done
	return 1
}

wanted() { [[ " $BENCH_TARGETS " == *" $1 "* ]]; }

skip() { # NAME REASON
	log "SKIP $1: $2"
	printf '%s\n' "$2" >"$RES/$1.skip"
}

note() { printf '%s ' "$2" >>"$RES/$1.note"; }

tail_log() { tail -n "${2:-5}" "$LOGS/$1.log" 2>/dev/null | tr '\n' ' ' | sed 's/|/\\|/g' | cut -c1-400; }

# ---- tools ------------------------------------------------------------------
for p in $BACKEND_PORT $CW1_PORT $CW2_OUT_PORT $CW2_IN_PORT $NGINX_PORT $HAPROXY_PORT $CW1_ADMIN $CW2_OUT_ADMIN $CW2_IN_ADMIN; do
	if port_busy "$p"; then
		log "port 127.0.0.1:$p is in use: stop what holds it or set BENCH_PORT_BASE"
		exit 1
	fi
done

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
bin_of() { command -v "$1" 2>/dev/null || echo "/usr/sbin/$1"; }

missing=()
if wanted nginx && ! have nginx; then missing+=(nginx); fi
if wanted haproxy && ! have haproxy; then missing+=(haproxy); fi
if ((${#missing[@]})); then
	if [ "$BENCH_INSTALL" = 1 ] && [ "$(id -u)" = 0 ] && have apt-get; then
		pkgs=()
		log "installing ${missing[*]} with apt-get"
		apt-get update -qq >"$LOGS/apt.log" 2>&1 || true
		for m in "${missing[@]}"; do
			if [ "$m" = nginx ] && apt-cache show nginx-light >/dev/null 2>&1; then
				pkgs+=(nginx-light)
			else
				pkgs+=("$m")
			fi
		done
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >>"$LOGS/apt.log" 2>&1 ||
			log "apt-get install ${pkgs[*]} failed: $(tail -n 3 "$LOGS/apt.log" | tr '\n' ' ')"
	else
		log "missing ${missing[*]} and not installing (BENCH_INSTALL=$BENCH_INSTALL, uid $(id -u))"
	fi
fi

log "building backend, loadgen, report"
go build -o "$WORK/bin/backend" ./bench/backend
go build -o "$WORK/bin/loadgen" ./bench/loadgen
go build -o "$WORK/bin/report" ./bench/report
go build -o "$WORK/bin/gofloor" ./bench/gofloor

CAUSEWAY_OK=0
CAUSEWAY_BIN=${BENCH_CAUSEWAY_BIN:-bin/causeway-proxy}
if [ -n "${BENCH_CAUSEWAY_BIN:-}" ]; then
	if [ -x "$CAUSEWAY_BIN" ]; then
		CAUSEWAY_OK=1
	else
		for t in causeway-1hop causeway-2hop; do skip "$t" "BENCH_CAUSEWAY_BIN=$CAUSEWAY_BIN is not an executable"; done
	fi
elif wanted causeway-1hop || wanted causeway-2hop; then
	log "building bin/causeway-proxy"
	# Built as `make build` builds it (lean: no cgo, no grpc trace).
	if CGO_ENABLED=0 go build -tags grpcnotrace -o bin/causeway-proxy ./cmd/causeway-proxy >"$LOGS/causeway-build.log" 2>&1; then
		CAUSEWAY_OK=1
	else
		reason="causeway-proxy does not build yet: $(grep -v '^#' "$LOGS/causeway-build.log" | head -n 2 | tr '\n' ' ' | cut -c1-200)"
		log "$reason"
		for t in causeway-1hop causeway-2hop; do skip "$t" "$reason"; done
	fi
fi

# ---- run description ----------------------------------------------------------
{
	echo "COMMAND=${USER_KNOBS}bash bench/run.sh"
	echo "DATE=$(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "NPROC=$(nproc)"
	echo "CPU_MODEL=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
	echo "KERNEL=$(uname -sr)"
	echo "GO_VERSION=$(go env GOVERSION)"
	echo "NGINX_VERSION=$( (have nginx && "$(bin_of nginx)" -v 2>&1) | sed 's/^nginx version: //' || echo none)"
	echo "HAPROXY_VERSION=$( (have haproxy && "$(bin_of haproxy)" -v 2>/dev/null | head -n 1 | cut -d' ' -f1-3) || echo none)"
	echo "PROXY_CPUS=$BENCH_PROXY_CPUS (nginx worker_processes, haproxy nbthread, Go GOMAXPROCS)"
	echo "LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)"
	echo "BODY_SIZE=$BENCH_BODY_SIZE"
	echo "ROUNDS=$BENCH_ROUNDS"
	echo "RATE=$BENCH_RATE"
	echo "RATE_CONNS=$BENCH_RATE_CONNS"
	echo "DURATION=$BENCH_DURATION"
	echo "WARMUP=$BENCH_WARMUP"
	echo "MAX_CONNS=$BENCH_MAX_CONNS"
	echo "MAX_DURATION=$BENCH_MAX_DURATION"
} >"$RES/meta.env"

# ---- load -------------------------------------------------------------------
# run_loadgen NAME ARGS...: the load generator in the background, waited for,
# so that a signal to this script interrupts the wait at once and cleanup
# stops the load generator too.
run_loadgen() {
	local name=$1 lg
	shift
	"$WORK/bin/loadgen" -label "$name" "$@" 2>>"$LOGS/$name.loadgen.log" &
	lg=$!
	PIDS+=("$lg")
	wait "$lg"
}

# gomaxprocs ADMIN_PORT: the Causeway proxy's current GOMAXPROCS, from its
# metrics (go_sched_gomaxprocs_threads), or "?".
gomaxprocs() {
	local line v="?"
	if { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null; then
		printf 'GET /stats/prometheus HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n' >&3 2>/dev/null || true
		while IFS= read -r -t 2 line <&3; do
			if [[ $line == go_sched_gomaxprocs_threads\ * ]]; then v=${line#* }; v=${v%$'\r'}; fi
		done
		exec 3<&- 3>&-
	fi
	echo "$v"
}

# load NAME PORT PIDS [ADMIN_PORT...]: both phases against 127.0.0.1:PORT;
# PIDS (comma separated, may be empty) are the proxy processes to account
# for. With ADMIN_PORTs (Causeway proxies), the last round notes their
# GOMAXPROCS at the end of each phase (they adapt it to the load).
load() {
	local name=$1 port=$2 pids=$3 err at_rate="" at_max="" a
	shift 3
	log "$name: ${BENCH_RATE} req/s for $BENCH_WARMUP + $BENCH_DURATION"
	if ! run_loadgen "$name" -rate "$BENCH_RATE" -conns "$BENCH_RATE_CONNS" -warmup "$BENCH_WARMUP" \
		-duration "$BENCH_DURATION" -addr "127.0.0.1:$port" -pids "$pids" -out "$RES/$name.r$ROUND.rate.json"; then
		err=$(tail -n 2 "$LOGS/$name.loadgen.log" | tr '\n' ' ')
		skip "$name" "load generator failed at the fixed rate: $err"
		return 0
	fi
	for a in "$@"; do at_rate+="$(gomaxprocs "$a") "; done
	log "$name: max throughput, $BENCH_MAX_CONNS connections for $BENCH_MAX_DURATION"
	if ! run_loadgen "$name" -max -conns "$BENCH_MAX_CONNS" -warmup 500ms \
		-duration "$BENCH_MAX_DURATION" -addr "127.0.0.1:$port" -pids "$pids" -out "$RES/$name.r$ROUND.max.json"; then
		err=$(tail -n 2 "$LOGS/$name.loadgen.log" | tr '\n' ' ')
		rm -f "$RES/$name.r$ROUND.rate.json"
		skip "$name" "load generator failed at max throughput: $err"
		return 0
	fi
	for a in "$@"; do at_max+="$(gomaxprocs "$a") "; done
	if [ $# -gt 0 ] && [ "$ROUND" = "$BENCH_ROUNDS" ]; then
		note "$name" "GOMAXPROCS of the sidecar(s) (adaptive, ceiling $BENCH_PROXY_CPUS): ${at_rate% } at the end of the fixed-rate phase, ${at_max% } at the end of max load."
	fi
}

# stop_all PID...: TERM, then wait up to 3 s (cleanup KILLs what is left).
stop_all() {
	local pid i
	for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
	for i in $(seq 30); do
		local alive=0
		for pid in "$@"; do
			if kill -0 "$pid" 2>/dev/null; then alive=1; fi
		done
		[ "$alive" = 0 ] && return 0
		sleep 0.1
	done
}

children() { cat "/proc/$1/task/$1/children" 2>/dev/null || true; }

render() { # TEMPLATE OUT STAT_PREFIX ADMIN LISTEN UPSTREAM
	sed -e "s/\${STAT_PREFIX}/$3/g" -e "s/\${ADMIN_PORT}/$4/g" \
		-e "s/\${LISTEN_PORT}/$5/g" -e "s/\${UPSTREAM_PORT}/$6/g" "$1" >"$2"
}

start backend "$WORK/bin/backend" --addr "127.0.0.1:$BACKEND_PORT" --body-size "$BENCH_BODY_SIZE"
BACKEND_PID=$LAST_PID
if ! wait_ready "$BACKEND_PORT" "$BACKEND_PID"; then
	log "backend did not come up: $(tail_log backend)"
	exit 1
fi

# Every target runs once per round, in table order; rounds repeat the whole
# sequence so that slow drift of the shared machine hits every target alike.
# The report takes each number's median over the rounds.
for ROUND in $(seq "$BENCH_ROUNDS"); do
	log "round $ROUND of $BENCH_ROUNDS"
	# (a) direct
	if wanted direct; then
		load direct "$BACKEND_PORT" ""
	else
		skip direct "not in BENCH_TARGETS"
	fi

	# (b) one Causeway hop
	if ! wanted causeway-1hop; then
		skip causeway-1hop "not in BENCH_TARGETS"
	elif [ "$CAUSEWAY_OK" = 1 ]; then
		render bench/bootstrap/sidecar-http1.yaml "$WORK/cw1.yaml" bench_1hop "$CW1_ADMIN" "$CW1_PORT" "$BACKEND_PORT"
		start causeway-1hop env GOMAXPROCS="$BENCH_PROXY_CPUS" "$CAUSEWAY_BIN" sidecar --bootstrap "$WORK/cw1.yaml" ${CAUSEWAY_FLAGS[@]+"${CAUSEWAY_FLAGS[@]}"}
		cw1=$LAST_PID
		if wait_ready "$CW1_PORT" "$cw1"; then
			load causeway-1hop "$CW1_PORT" "$cw1" "$CW1_ADMIN"
		else
			skip causeway-1hop "causeway-proxy did not serve 127.0.0.1:$CW1_PORT within 10 s; its log: $(tail_log causeway-1hop)"
		fi
		stop_all "$cw1"
	fi

	# (c) two Causeway hops, h2c between the sidecars
	if ! wanted causeway-2hop; then
		skip causeway-2hop "not in BENCH_TARGETS"
	elif [ "$CAUSEWAY_OK" = 1 ]; then
		render bench/bootstrap/sidecar-http1.yaml "$WORK/cw2-in.yaml" bench_2hop_inbound "$CW2_IN_ADMIN" "$CW2_IN_PORT" "$BACKEND_PORT"
		render bench/bootstrap/sidecar-h2c.yaml "$WORK/cw2-out.yaml" bench_2hop_outbound "$CW2_OUT_ADMIN" "$CW2_OUT_PORT" "$CW2_IN_PORT"
		start causeway-2hop-inbound env GOMAXPROCS="$BENCH_PROXY_CPUS" "$CAUSEWAY_BIN" sidecar --bootstrap "$WORK/cw2-in.yaml" ${CAUSEWAY_FLAGS[@]+"${CAUSEWAY_FLAGS[@]}"}
		cw2in=$LAST_PID
		start causeway-2hop-outbound env GOMAXPROCS="$BENCH_PROXY_CPUS" "$CAUSEWAY_BIN" sidecar --bootstrap "$WORK/cw2-out.yaml" ${CAUSEWAY_FLAGS[@]+"${CAUSEWAY_FLAGS[@]}"}
		cw2out=$LAST_PID
		if wait_ready "$CW2_IN_PORT" "$cw2in" && wait_ready "$CW2_OUT_PORT" "$cw2out" "$cw2in"; then
			load causeway-2hop "$CW2_OUT_PORT" "$cw2out,$cw2in" "$CW2_OUT_ADMIN" "$CW2_IN_ADMIN"
			if have ss && [ "$ROUND" = "$BENCH_ROUNDS" ]; then
				n=$(ss -Htn state established "( dport = :$CW2_IN_PORT )" 2>/dev/null | wc -l)
				note causeway-2hop "$n TCP connection(s) from the outbound to the inbound sidecar after the max-throughput phase (the client used $BENCH_MAX_CONNS; h2c multiplexing should need 1 or a few)."
			fi
		else
			skip causeway-2hop "the two sidecars did not serve within 10 s; inbound log: $(tail_log causeway-2hop-inbound 3); outbound log: $(tail_log causeway-2hop-outbound 3)"
		fi
		stop_all "$cw2out" "$cw2in"
	fi

	# (d) nginx
	if ! wanted nginx; then
		skip nginx "not in BENCH_TARGETS"
	elif ! have nginx; then
		skip nginx "nginx is not installed"
	else
		mkdir -p "$WORK/nginx/tmp"
		cat >"$WORK/nginx/nginx.conf" <<-EOF
	worker_processes $BENCH_PROXY_CPUS;
	daemon off;
	master_process on;
	pid $WORK/nginx/nginx.pid;
	error_log $WORK/nginx/error.log warn;
	events { worker_connections 4096; }
	http {
	    access_log off;
	    client_body_temp_path $WORK/nginx/tmp/body;
	    proxy_temp_path $WORK/nginx/tmp/proxy;
	    fastcgi_temp_path $WORK/nginx/tmp/fastcgi;
	    uwsgi_temp_path $WORK/nginx/tmp/uwsgi;
	    scgi_temp_path $WORK/nginx/tmp/scgi;
	    keepalive_requests 10000000;
	    keepalive_timeout 60s;
	    upstream backend {
	        server 127.0.0.1:$BACKEND_PORT;
	        keepalive 64;
	        keepalive_requests 10000000;
	    }
	    server {
	        listen 127.0.0.1:$NGINX_PORT;
	        location / {
	            proxy_pass http://backend;
	            proxy_http_version 1.1;
	            proxy_set_header Connection "";
	        }
	    }
	}
	EOF
		start nginx "$(bin_of nginx)" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log"
		ngx=$LAST_PID
		if wait_ready "$NGINX_PORT" "$ngx"; then
			workers=$(children "$ngx")
			for w in $workers; do PIDS+=("$w"); done
			load nginx "$NGINX_PORT" "$(echo "$ngx $workers" | tr -s ' ' ',' | sed 's/,$//')"
		else
			skip nginx "nginx did not serve 127.0.0.1:$NGINX_PORT within 10 s: $(tail -n 3 "$WORK/nginx/error.log" 2>/dev/null | tr '\n' ' ') $(tail_log nginx)"
		fi
		stop_all "$ngx"
	fi

	# (e) haproxy
	if ! wanted haproxy; then
		skip haproxy "not in BENCH_TARGETS"
	elif ! have haproxy; then
		skip haproxy "haproxy is not installed"
	else
		cat >"$WORK/haproxy.cfg" <<-EOF
	global
	    nbthread $BENCH_PROXY_CPUS
	    maxconn 4096
	defaults
	    mode http
	    option http-keep-alive
	    http-reuse always
	    timeout connect 1s
	    timeout client 60s
	    timeout server 60s
	    timeout http-keep-alive 60s
	frontend bench
	    bind 127.0.0.1:$HAPROXY_PORT
	    default_backend backend
	backend backend
	    server s1 127.0.0.1:$BACKEND_PORT
	EOF
		start haproxy "$(bin_of haproxy)" -db -f "$WORK/haproxy.cfg"
		hap=$LAST_PID
		if wait_ready "$HAPROXY_PORT" "$hap"; then
			load haproxy "$HAPROXY_PORT" "$hap"
		else
			skip haproxy "haproxy did not serve 127.0.0.1:$HAPROXY_PORT within 10 s: $(tail_log haproxy)"
		fi
		stop_all "$hap"
	fi

	# (f) the Go floor
	if ! wanted gofloor; then
		skip gofloor "not in BENCH_TARGETS"
	else
		start gofloor env GOMAXPROCS="$BENCH_PROXY_CPUS" "$WORK/bin/gofloor" -listen "127.0.0.1:$GOFLOOR_PORT" -upstream "127.0.0.1:$BACKEND_PORT"
		gf=$LAST_PID
		if wait_ready "$GOFLOOR_PORT" "$gf"; then
			load gofloor "$GOFLOOR_PORT" "$gf"
		else
			skip gofloor "gofloor did not serve 127.0.0.1:$GOFLOOR_PORT within 10 s: $(tail_log gofloor)"
		fi
		stop_all "$gf"
	fi
done

echo "LOADAVG_END=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$RES/meta.env"

# ---- report -----------------------------------------------------------------
if [ -n "$BENCH_OUT" ]; then
	"$WORK/bin/report" -results "$RES" -out "$BENCH_OUT"
	log "wrote $BENCH_OUT"
else
	"$WORK/bin/report" -results "$RES"
fi

# ---- optional: control-plane convergence -------------------------------------
# BENCH_CONTROLPLANE=1 also runs bench/controlplane: S services, simulated xDS
# clients on real ADS streams to 127.0.0.1 in one process, the time from a
# model change (controlplane.Offer; the apiserver and informer are not in the
# path) to every affected client's ACK, and the process's CPU and peak RSS.
# Its section replaces "## Control plane convergence" in $BENCH_OUT (or is
# appended); it runs after the data-plane report, which rewrites that file.
#   BENCH_CP_FLAGS="-services 1000 -endpoints-per-service 10 -clients 100 -changes 10"
#   (issue 4's target is -clients 1000; see docs/benchmarks.md for why the
#   default is lower on a small machine)
if [ "${BENCH_CONTROLPLANE:-0}" = 1 ]; then
	read -r -a CP_FLAGS <<<"${BENCH_CP_FLAGS:-"-services 1000 -endpoints-per-service 10 -clients 100 -changes 10"}"
	log "building bench/controlplane"
	go build -o "$WORK/bin/controlplane" ./bench/controlplane
	CP_OUT=()
	if [ -n "$BENCH_OUT" ]; then CP_OUT=(-out "$BENCH_OUT"); fi
	log "control plane convergence: ${CP_FLAGS[*]}"
	"$WORK/bin/controlplane" "${CP_FLAGS[@]}" ${CP_OUT[@]+"${CP_OUT[@]}"} &
	cpb=$!
	PIDS+=("$cpb")
	wait "$cpb"
	if [ -n "$BENCH_OUT" ]; then log "wrote the control plane section of $BENCH_OUT"; fi
fi

# ---- trust: SVID issuance rate and mTLS handshake cost (issue 5) -------------
# Go benchmarks of trust/issuer over real gRPC/TLS on 127.0.0.1; their section
# replaces "## Trust: SVID issuance and mTLS handshakes" in $BENCH_OUT.
# BENCH_DATAPLANE_ONLY=1 stops here (the two sections below keep what the file has).
if [ "${BENCH_DATAPLANE_ONLY:-0}" = 1 ]; then exit 0; fi
log "trust: SVID issuance and mTLS handshakes"
bash bench/trust/run.sh "${BENCH_OUT:-}"

# ---- federation: propagation and fan-out (issue 7) ----------------------------
log "federation: propagation and 256-peer fan-out"
bash bench/federation/run.sh "${BENCH_OUT:-}"
