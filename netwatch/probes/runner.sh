# netwatch probe runner: runs every probe job of one source container at once,
# inside that container, in a single exec. POSIX sh (dash, BusyBox ash, bash).
#
# Positional parameters, all produced by netwatch (see script.py):
#   $1        watchdog: whole seconds after which every job is killed
#   $2        clock: "date" when `date +%s%N` works here, else "none"
#   $3        nonce: random, new for every exec, part of every marker
#   then, per job: ID N ARG1 .. ARGN   (the job's argv has N words)
#
# Values are only ever expanded inside double quotes. The one `eval` below
# builds a list of parameter references like "${7}" "${8}" from numbers the
# script computes itself; no value is ever parsed as code.
#
# Each job prints one record, in a single write (records stay whole when jobs
# finish together; netwatch checks the length):
#   @@nw-NONCE ID LENGTH T0 T1          (T0, T1: nanosecond clock, or "-")
#   STDOUT <US> EXIT_CODE <US> STDERR <US> LENGTH_OF_STDERR   (US: byte 0x1f)
#   @@end-NONCE ID
# STDERR's length comes last so that netwatch reads the fields from the end:
# whatever a tool prints, it cannot shift them.

watchdog=$1
clock=$2
nonce=$3
total=$#
pids=

now() {
    if [ "$clock" = date ]; then date +%s%N; else echo -; fi
}

run_job() {
    job_id=$1
    shift
    t0=$(now)
    result=$(
        exec 3>&1
        err=$("$@" 2>&1 1>&3 3>&- </dev/null)
        rc=$?
        printf '\037%s\037%s\037%s' "$rc" "$err" "${#err}"
    )
    t1=$(now)
    printf '\n@@nw-%s %s %s %s %s\n%s\n@@end-%s %s\n' \
        "$nonce" "$job_id" "${#result}" "$t0" "$t1" "$result" "$nonce" "$job_id"
}

# The exec's process is its own process group: kill 0 ends every job, and
# this script, however the tools behave. Without `sleep` there is no
# watchdog ($1 is 0) and netwatch's own deadline is the only bound.
#
# Every process started here is waited for: an orphan would be adopted by
# the container's PID 1, and many PID 1s never reap, so each would stay a
# zombie. (Only when the watchdog fires do killed tools become orphans.)
watchdog_pid=
if [ "$watchdog" -gt 0 ]; then
    (
        trap 'kill "$sleeper" 2>/dev/null; wait "$sleeper" 2>/dev/null; exit 0' TERM
        sleep "$watchdog" &
        sleeper=$!
        wait "$sleeper"
        printf '\n@@watchdog-%s\n' "$nonce"
        kill -9 0
    ) >&2 &
    watchdog_pid=$!
fi

i=4
while [ "$i" -le "$total" ]; do
    eval "job_id=\${$i} n=\${$((i + 1))}"
    refs=
    j=$((i + 2))
    last=$((i + 1 + n))
    while [ "$j" -le "$last" ]; do
        refs="$refs \"\${$j}\""
        j=$((j + 1))
    done
    eval "run_job \"\$job_id\" $refs &"
    pids="$pids $!"
    i=$((last + 1))
done

# `wait` with no operand would also wait for the watchdog.
for pid in $pids; do
    wait "$pid"
done
if [ -n "$watchdog_pid" ]; then
    kill "$watchdog_pid" 2>/dev/null
    wait "$watchdog_pid" 2>/dev/null
fi
printf '\n@@done-%s\n' "$nonce"
