#!/bin/sh
# Installs every Debian package needed to build, test and run the project.
# Idempotent: when everything is present it installs nothing and says so.
set -eu

# prometheus-alertmanager is for tests/integration/test_alertmanager.py, which runs its own
# on loopback; the package also enables a system service on :9093, which a build machine
# may turn off with `systemctl disable --now prometheus-alertmanager`.
# prometheus (and its promtool) is for tests/integration/test_prometheus.py, which likewise
# runs its own on a free loopback port with its own TSDB; the package's service is on :9090;
# tests/integration/test_remote_write.py runs one as a remote-write receiver the same way.
# libsnappy-dev compresses what the collector remote-writes.
PACKAGES="
build-essential cmake pkg-config clang clang-format libclang-rt-14-dev
libuv1-dev libprotobuf-c-dev protobuf-c-compiler liblmdb-dev lmdb-utils
libcmocka-dev libinih-dev libjansson-dev libhttp-parser-dev libcurl4-openssl-dev libssl-dev openssl
python3 python3-dev python3-setuptools python3-wheel python3-pip python3-venv python3-yaml
curl ca-certificates procps prometheus-alertmanager prometheus libsnappy-dev
dpkg-dev systemd adduser git
"

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
    echo "install-deps: all build and test dependencies are present"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
echo "install-deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
