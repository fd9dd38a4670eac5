# Helpers the benchmarks share; `source loadtest/lib.sh` after `cd` to the repository.
# cpu PID            user+system CPU ticks of a process so far (/proc/PID/stat); ticks per
#                    second: $tck
# us_per A B N       CPU microseconds per item: ticks A before, B after, N items ("n/a" if none)
# median N...        the median of the numbers given
# to_ms D            wrk's durations (812.00us, 1.23ms, 1.02s) in milliseconds
# need_wrk           installs wrk (Debian) when it is missing and we are root, else fails
# until_bought NS GOODS WANT PID  while PID (wrk buying) runs, waits until WANT shoppers of the
#                    sale are its buyers, or none more came for half a second (a shopper refused,
#                    or a request wrk drops as it stops, never becomes one)
# check NAME OK DETAIL  one line of a drill's verdict ("ok" when OK is 1, else "FAIL"), counted
#                    in $passes / $failures (the caller sets both to 0 first)
tck=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
us_per() { awk -v a="$1" -v b="$2" -v n="$3" -v t="$tck" 'BEGIN { if (n > 0) printf "%.1f", (b - a) / t / n * 1e6; else print "n/a" }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
to_ms() {
  echo "$1" | awk '/us$/ {sub(/us/,""); printf "%.3f", $1/1000; next}
                   /ms$/ {sub(/ms/,""); printf "%.3f", $1; next}
                   /s$/  {sub(/s/,"");  printf "%.3f", $1*1000}'
}
until_bought() {
  local seen=-1 now still=0
  while kill -0 "$4" 2>/dev/null; do
    now=$(redis-cli SCARD "${1}sk:{g:$2}:buyers")
    [ "$now" -ge "$3" ] && return
    if [ "$now" = "$seen" ]; then still=$((still + 1)); [ "$still" -ge 25 ] && return; else still=0; fi
    seen=$now
    sleep 0.02
  done
}
check() {
  printf '  %-58s %s  %s\n' "$1" "$([ "$2" = 1 ] && echo ok || echo FAIL)" "$3"
  if [ "$2" = 1 ]; then passes=$((passes + 1)); else failures=$((failures + 1)); fi
}
need_wrk() {
  command -v wrk >/dev/null || { [ "$(id -u)" = 0 ] && apt-get install -y -qq wrk >/dev/null; }
  command -v wrk >/dev/null || { echo "this benchmark needs wrk (apt-get install wrk)" >&2; exit 1; }
}
