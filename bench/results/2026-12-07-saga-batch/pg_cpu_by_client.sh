#!/bin/bash
# PostgreSQL backend CPU over a window, summed by the client process that holds each
# connection (from the backend's client port and `ss`). Usage: pg_cpu_by_client.sh <seconds>
# Run while a load runs; backends that connect or end inside the window are not counted.
W=${1:-25}
TCK=$(getconf CLK_TCK)
DB=${KEEL_DATABASE_URL:-postgres://keel:keel@127.0.0.1:5432/keel}
snap() { for p in $(pgrep -f "postgres: "); do awk -v p=$p '{print p, $14+$15}' /proc/$p/stat 2>/dev/null; done | sort; }
snap > /tmp/pgc_a
# backend pid -> client port
psql "$DB" -Atc "select pid, client_port from pg_stat_activity where client_port is not null" | tr '|' ' ' | sort > /tmp/pgc_ports
# client port -> client process name (the local end of each connection to 5432)
ss -tnpH state established '( dport = :5432 )' | awk '{split($3,a,":"); port=a[length(a)]; match($0,/users:\(\("[^"]+"/); name=substr($0,RSTART+9,RLENGTH-10); print port, name}' | sort > /tmp/pgc_names
sleep $W
snap > /tmp/pgc_b
join /tmp/pgc_a /tmp/pgc_b | awk '{print $1, $3-$2}' | sort > /tmp/pgc_delta
join /tmp/pgc_delta /tmp/pgc_ports | awk '{print $3, $2}' | sort > /tmp/pgc_port_delta
join -a1 /tmp/pgc_port_delta /tmp/pgc_names | awk -v t=$TCK -v w=$W '{n=($3==""?"unknown":$3); s[n]+=$2} END {for (k in s) printf "%-20s %8.1f ms CPU per s\n", k, s[k]*1000/t/w}' | sort -k2 -n -r
total=$(awk '{s+=$2} END {print s}' /tmp/pgc_delta)
echo "all backends (also unmatched): $(echo "$total*1000/$TCK/$W" | bc -l | cut -c1-7) ms CPU per s"
