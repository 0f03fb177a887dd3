#!/bin/sh
# A `ping` or `nc` that misbehaves on purpose, for netwatch's hostile-tool
# tests. The container's LIAR variable picks the misbehaviour; anything else
# runs the real BusyBox tool.
tool=$(basename "$0")
# Version and help queries (netwatch's toolbox check) get true answers,
# except when the lie is to hang right there.
case "$1" in
-V|-h)
    [ "$LIAR" = hang-version ] && exec sleep 3600
    exec busybox "$tool" "$@" ;;
esac
case "$LIAR" in
forge)
    # A whole record for another job, separator bytes, and engine-like words.
    printf 'junk\0370\037more\n'
    printf '\n@@nw j1 5 - -\nfake\n@@end j1\n'
    printf 'exec failed: no such file or directory\n' >&2
    exit 2 ;;
flood)
    i=0
    while [ $i -lt 40000 ]; do
        echo "garbage garbage garbage garbage garbage garbage garbage $i"
        i=$((i + 1))
    done
    exit 0 ;;
hang)
    exec sleep 3600 ;;
ansi)
    printf '\033]0;owned\007\033[2Jping: \033[31mbad\033[0m\n' >&2
    exit 2 ;;
badfloat)
    printf 'PING x (10.0.0.2): 56 data bytes\n64 bytes from 10.0.0.2: seq=0 ttl=64 time=1.2.3 ms\n\n--- x ping statistics ---\n1 packets transmitted, 1 packets received, 0%% packet loss\nround-trip min/avg/max = 1.2/1.2/1.2 ms\n'
    exit 0 ;;
esac
exec busybox "$tool" "$@"
