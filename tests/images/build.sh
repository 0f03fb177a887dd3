#!/usr/bin/env bash
# Builds the container images the integration tests use, from this machine's
# own binaries: no registry is needed (see README, "Tests").
#
#   netwatch-test/tools      sh (dash), sleep, date, iputils ping,
#                            netcat-openbsd nc, iperf3: a full toolbox
#   netwatch-test/busybox    BusyBox only: its ping format, its nc without -z
#   netwatch-test/ncat       sh and Nmap's ncat installed as nc
#   netwatch-test/liar       dash and BusyBox, whose ping and nc misbehave on
#                            request
#   netwatch-test/distroless one static sleeper: no shell, no tools
#
# Needs: docker, gcc with static glibc, and the Debian packages dash,
# iputils-ping, netcat-openbsd, iperf3, ncat, busybox-static.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# copy_with_libs ROOT BINARY [NAME]: puts BINARY into ROOT/bin (as NAME) with
# every shared library ldd lists for it, at the same paths.
copy_with_libs() {
    local root=$1 binary=$2 name=${3:-$(basename "$2")}
    install -D -m 0755 "$(readlink -f "$binary")" "$root/bin/$name"
    ldd "$binary" | grep -o '/[^ ]*' | while read -r lib; do
        install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
    done
}

import_dir() {
    local root=$1 tag=$2
    mkdir -p "$root/tmp" "$root/etc"
    chmod 1777 "$root/tmp"
    echo 'root:x:0:0:root:/:/bin/sh' > "$root/etc/passwd"
    echo 'root:x:0:' > "$root/etc/group"
    tar -C "$root" -c . | docker import - "$tag" > /dev/null
    echo "built $tag"
}

gcc -static -Os -o "$work/sleeper" "$here/sleeper.c"

root=$work/tools
copy_with_libs "$root" /bin/dash sh
for tool in /bin/sleep /bin/date /usr/bin/ping /usr/bin/iperf3; do
    copy_with_libs "$root" "$tool"
done
copy_with_libs "$root" /bin/nc.openbsd nc
# ping needs CAP_NET_RAW as a file capability only for non-root users;
# containers run it as root here.
import_dir "$root" netwatch-test/tools:latest

root=$work/busybox
install -D -m 0755 /bin/busybox "$root/bin/busybox"
for applet in sh ping nc sleep date cat true httpd; do
    ln -s busybox "$root/bin/$applet"
done
import_dir "$root" netwatch-test/busybox:latest

root=$work/ncat
copy_with_libs "$root" /bin/dash sh
copy_with_libs "$root" /bin/sleep
copy_with_libs "$root" /usr/bin/ncat nc
import_dir "$root" netwatch-test/ncat:latest

# A `ping` and an `nc` that lie, hang or flood when asked (LIAR=...). The
# shell is dash: BusyBox's own sh would run its built-in ping instead.
root=$work/liar
copy_with_libs "$root" /bin/dash sh
install -D -m 0755 /bin/busybox "$root/bin/busybox"
for applet in sleep date cat basename; do
    ln -s busybox "$root/bin/$applet"
done
install -m 0755 "$here/liar.sh" "$root/bin/ping"
install -m 0755 "$here/liar.sh" "$root/bin/nc"
import_dir "$root" netwatch-test/liar:latest

root=$work/distroless
install -D -m 0755 "$work/sleeper" "$root/sleeper"
import_dir "$root" netwatch-test/distroless:latest
