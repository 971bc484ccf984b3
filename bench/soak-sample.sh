#!/usr/bin/env bash
# Samples every 60 s: RSS (MiB) of each platform process, the outbox backlog (rows), the
# projectors' lag (messages, summed over partitions), each read from the running platform.
out=$1; every=${2:-60}; count=${3:-31}
run=${KEEL_STATE_DIR:-$HOME/.local/state/keel}/run
echo "time,elapsed_s,command_api_mib,outbox_relay_mib,saga_mib,projector_mib,query_api_mib,kafka_mib,registry_mib,outbox_rows,projector_lag_messages" > "$out"
start=$(date +%s)
for i in $(seq 1 "$count"); do
  row="$(date -u +%H:%M:%S),$(( $(date +%s) - start ))"
  for p in command-api outbox-relay saga projector query-api kafka schema-registry; do
    pid=$(cat "$run/$p.pid" 2>/dev/null)
    kib=$(awk '/VmRSS/{print $2}' /proc/$pid/status 2>/dev/null)
    row="$row,$(( ${kib:-0} / 1024 ))"
  done
  outbox=$(psql -XAtq postgres://keel:keel@127.0.0.1:5432/keel -c "select count(*) from outbox")
  lag=$(curl -s 127.0.0.1:9103/metrics | awk '/^keel_projector_lag_messages/{s+=$2} END{print s+0}')
  echo "$row,$outbox,$lag" >> "$out"
  sleep "$every"
done
