#!/usr/bin/env bash
# Builds a local stand-in for the public Python base image, for building
# netwatch's own image where no registry can be reached:
#
#   netwatch-test/python-base:bookworm   Debian 12 (minbase) with python3,
#                                        python3-venv and ca-certificates
#
# debootstrap fetches Debian's packages; about a minute. Skipped when the
# image exists already.
set -euo pipefail

tag=netwatch-test/python-base:bookworm
if [ -n "$(docker images -q "$tag")" ]; then
    echo "have $tag"
    exit 0
fi

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$root" "$mirror" >/dev/null
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' - "$tag" >/dev/null
echo "built $tag"
