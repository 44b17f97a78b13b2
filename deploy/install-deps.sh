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
libcmocka-dev libinih-dev libsystemd-dev libjansson-dev libhttp-parser-dev libcurl4-openssl-dev libssl-dev openssl
python3 python3-dev python3-setuptools python3-wheel python3-pip python3-venv python3-yaml
curl ca-certificates procps prometheus-alertmanager prometheus libsnappy-dev
chromium
dpkg-dev systemd adduser git
"

# The web page's npm packages, pinned by their lockfiles: uPlot, which the collector embeds
# (web/), and puppeteer-core, which drives Debian's chromium in tests/integration/test_web.py
# (tests/web/; it never downloads a browser). Run after the Debian packages (npm is one).
npm_ci() {
    if ! command -v npm >/dev/null 2>&1; then
        # Debian's node and npm, unless a node with its own npm is there already.
        echo "install-deps: installing: nodejs npm"
        $SUDO apt-get install -y -qq --no-install-recommends nodejs npm
    fi
    for d in web tests/web; do
        if [ ! -d "$d/node_modules" ]; then
            echo "install-deps: npm ci in $d"
            (cd "$d" && npm ci --ignore-scripts --no-audit --no-fund)
        fi
    done
}
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
    echo "install-deps: all build and test dependencies are present"
    npm_ci
    exit 0
fi

echo "install-deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
npm_ci
