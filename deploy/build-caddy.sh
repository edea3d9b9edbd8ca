#!/bin/sh
# Builds Caddy with caddy-dingtalk from this checkout, with xcaddy: the
# Dockerfile runs it in caddy:<version>-builder, and .ci/run runs it too, so
# the image's build is tested where images cannot be pulled.
#
#   deploy/build-caddy.sh [output]     (default: ./caddy)
#
# CADDY_VERSION names the Caddy release (default: the one go.mod pins);
# GOPROXY, as for any Go build, where modules come from.
set -eu
out="${1:-caddy}"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
cd "$(dirname "$0")/.."
version="${CADDY_VERSION:-$(sed -n 's#^\tgithub.com/caddyserver/caddy/v2 \(v[^ ]*\)$#\1#p' go.mod)}"
# A version for the replaced module spares Go a lookup of its latest release.
xcaddy build "$version" --with "github.com/caddy-dingtalk/caddy-dingtalk@v0.0.0=$PWD" --output "$out"
"$out" list-modules | grep -qx 'http.handlers.dingtalk'
echo "built $out: Caddy $version with caddy-dingtalk"
