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

# Every process started here is waited for: an orphan would be adopted by
# the container's PID 1, and many PID 1s never reap, so each would stay a
# zombie. So the shells survive the watchdog's TERM (a trap, which unlike an
# ignored signal is not passed on to the tools they run), and reap the tools
# it ends.
trap : TERM

now() {
    if [ "$clock" = date ]; then date +%s%N; else echo -; fi
}

run_job() {
    trap : TERM
    job_id=$1
    shift
    t0=$(now)
    result=$(
        trap : TERM
        exec 3>&1
        err=$("$@" 2>&1 1>&3 3>&- </dev/null)
        rc=$?
        printf '\037%s\037%s\037%s' "$rc" "$err" "${#err}"
    )
    t1=$(now)
    printf '\n@@nw-%s %s %s %s %s\n%s\n@@end-%s %s\n' \
        "$nonce" "$job_id" "${#result}" "$t0" "$t1" "$result" "$nonce" "$job_id"
}

# The watchdog: when its time is up, it sends TERM to the whole process
# group (the exec's process leads its own group), so tools that overran die
# and their shells report them; a tool that ignores TERM gets KILL two
# seconds later, the last resort, which can leave orphans behind. The script
# tells the watchdog it is done with USR1. Without `sleep` there is no
# watchdog ($1 is 0) and netwatch's own deadline is the only bound.
watchdog_pid=
if [ "$watchdog" -gt 0 ]; then
    (
        trap 'kill "$sleeper" 2>/dev/null; wait "$sleeper" 2>/dev/null; exit 0' USR1
        trap : TERM
        sleep "$watchdog" &
        sleeper=$!
        wait "$sleeper"
        printf '\n@@watchdog-%s\n' "$nonce"
        kill -TERM 0
        sleep 2 &
        sleeper=$!
        wait "$sleeper"
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

# `wait` with no operand would also wait for the watchdog. A TERM from the
# watchdog interrupts `wait`, so each child is waited for until it is gone.
for pid in $pids; do
    while kill -0 "$pid" 2>/dev/null; do
        wait "$pid"
    done
done
if [ -n "$watchdog_pid" ]; then
    kill -USR1 "$watchdog_pid" 2>/dev/null
    while kill -0 "$watchdog_pid" 2>/dev/null; do
        wait "$watchdog_pid"
    done
fi
printf '\n@@done-%s\n' "$nonce"
