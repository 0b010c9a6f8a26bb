#!/bin/sh
# Fetch CPython's source tarball without python.org (unreachable on the test machines):
# Debian's source package python3.11 carries the upstream tarball unchanged as
# python3.11_3.11.2.orig.tar.gz (Python 3.11.2). A private apt configuration with a deb-src
# entry on the machine's own Debian mirror is used, so the machine's apt setup is untouched.
# Usage: fetch_cpython_source.sh DEST_DIR   (prints the tarball's path)
set -eu
dest=${1:?usage: $0 DEST_DIR}
mirror=${JBM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
tarball="$dest/python3.11_3.11.2.orig.tar.gz"
if [ ! -s "$tarball" ]; then
    mkdir -p "$dest/apt-lists/partial"
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror bookworm main" \
        > "$dest/deb-src.list"
    set -- -o "Dir::Etc::SourceList=$dest/deb-src.list" -o Dir::Etc::SourceParts=/dev/null \
           -o "Dir::State::Lists=$dest/apt-lists"
    apt-get "$@" update -q >/dev/null
    (cd "$dest" && apt-get "$@" source --download-only python3.11 >/dev/null 2>&1)
fi
echo "$tarball"
