#!/bin/bash
# CPU seconds per process over a window: utime+stime from /proc/<pid>/stat (clock ticks), plus PostgreSQL backends total.
W=${1:-60}
TCK=$(getconf CLK_TCK)
declare -A before
snap() { for f in ~/.local/state/keel/run/*.pid; do n=$(basename $f .pid); p=$(cat $f); if [ -r /proc/$p/stat ]; then awk -v n=$n '{print n, $14+$15+$16+$17}' /proc/$p/stat; fi; done; echo "postgres $(for p in $(pgrep -f 'postgres'); do awk '{s+=$14+$15} END {print s+0}' /proc/$p/stat 2>/dev/null; done | awk '{s+=$1} END {print s+0}')"; }
snap > /tmp/cpu_a; sleep $W; snap > /tmp/cpu_b
join /tmp/cpu_a /tmp/cpu_b | awk -v t=$TCK -v w=$W '{printf "%-16s %7.2f ms CPU per s (%5.2f %%)\n", $1, ($3-$2)*1000/t/w, ($3-$2)*100/t/w}'
