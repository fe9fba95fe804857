#!/usr/bin/env bash
# A local debian:bookworm-slim for machines that reach Debian's mirror but no image registry:
#   deploy/debian-base.sh IMAGE [ENGINE]      e.g. deploy/debian-base.sh debian:bookworm-slim
# debootstrap's minbase plus what makes the official image what it is: its apt sources
# (bookworm, bookworm-updates, bookworm-security) and their updates, no docs, man pages or
# locales (now or in any package installed later), no apt lists. About a minute.
set -euo pipefail

image=${1:?usage: deploy/debian-base.sh IMAGE [ENGINE]}
engine=${2:-podman}
# The host's own Debian mirror when it has one (a snapshot or a proxy), else Debian's.
mirror=${DEBIAN_MIRROR:-$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources \
    2>/dev/null || true)}
mirror=${mirror:-http://deb.debian.org/debian}

rootfs=$(mktemp -d /var/tmp/petseg-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
# Every path below is inside the new root: never let an empty variable point one at the host's.
[[ -n "$rootfs" && "$rootfs" != / ]]
chmod 0755 "$rootfs" # the image's / (mktemp makes it 0700)

debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >/dev/null

printf '%s\n' '# As in the official slim image: packages installed later skip these too.' \
    'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
    'path-exclude /usr/share/man/*' 'path-exclude /usr/share/groff/*' \
    'path-exclude /usr/share/info/*' 'path-exclude /usr/share/lintian/*' \
    'path-exclude /usr/share/linda/*' 'path-exclude /usr/share/locale/*' \
    >"$rootfs/etc/dpkg/dpkg.cfg.d/slim"

rm "$rootfs/etc/apt/sources.list"
for suites in "$mirror|bookworm bookworm-updates" "${mirror%/debian}/debian-security|bookworm-security"; do
    printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\n' "${suites%%|*}" "${suites#*|}"
    printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n'
done >"$rootfs/etc/apt/sources.list.d/debian.sources"
DEBIAN_FRONTEND=noninteractive chroot "$rootfs" \
    sh -c 'apt-get update -qq && apt-get upgrade -y -qq >/dev/null && apt-get clean'

find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
for folder in man groff info lintian linda locale; do
    rm -rf "${rootfs:?}/usr/share/$folder"/*
done
rm -rf "${rootfs:?}"/var/cache/apt/*.bin "${rootfs:?}"/var/lib/apt/lists/* "${rootfs:?}"/var/log/*

tar -C "$rootfs" -c . | "$engine" import --quiet --change 'CMD ["bash"]' - "$image" >/dev/null
echo "built $image from $mirror"
