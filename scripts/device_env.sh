#!/usr/bin/env bash
# Source this on a GPU machine that has CUDA and a compiler but none of lmc's
# Debian -dev packages and no network: it unpacks .deb files carried in
# ${LMC_DEBS:-.dev/debs} (made here by `scripts/device_env.sh --download`)
# into a private sysroot and points pkg-config/CMake/the loader at it.
#   source scripts/device_env.sh && cmake -S . -B build $LMC_DEVICE_CMAKE_ARGS
if [ "${1:-}" = "--download" ]; then
  set -e
  mkdir -p "${LMC_DEBS:-.dev/debs}" && cd "${LMC_DEBS:-.dev/debs}"
  apt-get download libjson-c-dev libjson-c5 libyajl-dev libyajl2 libpcre2-dev libpcre2-8-0 \
    libpcre2-16-0 libpcre2-32-0 libpcre2-posix3 libutf8proc-dev libutf8proc2 libopenblas-dev libopenblas0 \
    libopenblas-pthread-dev libopenblas0-pthread libgfortran5 pkgconf pkgconf-bin libpkgconf3
  exit 0
fi
sr=${LMC_SYSROOT:-/tmp/lmc-sysroot}
mkdir -p "$sr"
for f in "${LMC_DEBS:-.dev/debs}"/*.deb; do dpkg-deb -x "$f" "$sr"; done
ml=$sr/usr/lib/x86_64-linux-gnu
export PKG_CONFIG_SYSROOT_DIR=$sr
export PKG_CONFIG_LIBDIR=$ml/pkgconfig:$ml/openblas-pthread/pkgconfig:$sr/usr/share/pkgconfig
export LD_LIBRARY_PATH=$ml:$ml/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export LMC_DEVICE_CMAKE_ARGS="-DPKG_CONFIG_EXECUTABLE=$sr/usr/bin/pkgconf -DCMAKE_BUILD_TYPE=Release"
