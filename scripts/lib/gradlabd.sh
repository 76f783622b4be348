# Sourced by the scripts and benchmarks that run a gradlabd of their own.
#
#   start_gradlabd WORKDIR [FLAG...]
#     starts ${GRADLABD:-build/server/gradlabd} on free local ports (gRPC and HTTP) with its
#     state in WORKDIR/state, its output in WORKDIR/gradlabd.{out,log} and the flags given,
#     waits until it listens, and sets server_pid, port and http_port. Exits the script
#     with the server's log when it does not start.
#   stop_gradlabd
#     stops it (SIGTERM, then waits); does nothing when it is not running. Call it from
#     the caller's EXIT trap.

server_pid=
port=
http_port=

start_gradlabd() {
  local workdir=$1
  shift
  "${GRADLABD:-build/server/gradlabd}" --listen=127.0.0.1:0 --http_listen=127.0.0.1:0 \
    --state_dir="$workdir/state" "$@" >"$workdir/gradlabd.out" 2>"$workdir/gradlabd.log" &
  server_pid=$!
  for _ in $(seq 600); do
    port=$(sed -n 's/^gradlabd listening on port \([0-9]*\)$/\1/p' "$workdir/gradlabd.out")
    http_port=$(sed -n 's/^gradlabd dashboard on http port \([0-9]*\)$/\1/p' "$workdir/gradlabd.out")
    [[ -n $port && -n $http_port ]] && return 0
    kill -0 "$server_pid" 2>/dev/null || { cat "$workdir/gradlabd.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "gradlabd did not start within a minute; its log: $workdir/gradlabd.log" >&2
  exit 1
}

stop_gradlabd() {
  if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid"
    wait "$server_pid" || true
  fi
}
