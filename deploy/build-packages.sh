#!/bin/sh
# Builds the three Debian packages the way Debian builds its own: with the
# compiler and linker flags of dpkg-buildflags (-O2, -D_FORTIFY_SOURCE=2,
# -fstack-protector-strong, -Wl,-z,relro and whatever the distribution adds),
# and CMAKE_BUILD_TYPE=None so that no flags of ours override them.
#   deploy/build-packages.sh [DIR]     (default build-pkg; the .debs land there)
# Warnings are not errors here: a packager's newer compiler must not stop the build.
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-build-pkg}
jobs=$(nproc 2>/dev/null || echo 2)

cflags="$(dpkg-buildflags --get CFLAGS) $(dpkg-buildflags --get CPPFLAGS)"
ldflags=$(dpkg-buildflags --get LDFLAGS)

cmake -S "$src" -B "$dir" -DCMAKE_BUILD_TYPE=None -DAPM_WERROR=OFF -DAPM_SANITIZE=OFF \
    -DAPM_TSAN=OFF -DAPM_FUZZ=OFF -DCMAKE_SKIP_INSTALL_ALL_DEPENDENCY=ON \
    "-DCMAKE_C_FLAGS=$cflags" "-DCMAKE_EXE_LINKER_FLAGS=$ldflags" >/dev/null
# CFLAGS and LDFLAGS in the environment reach setuptools, which compiles the extension in
# the probe's pip wheel (agent/python/CMakeLists.txt) with the same flags.
CFLAGS="$cflags" LDFLAGS="$ldflags" cmake --build "$dir" -j "$jobs" --target apm-agent apm-collector apm-cli apm_man
rm -f "$dir"/*.deb
(cd "$dir" && cpack -G DEB)
