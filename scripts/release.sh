#!/usr/bin/env bash
# Reproducible release build: static binaries (CGO_ENABLED=0, -trimpath,
# stamped version/commit/date) for linux and darwin on amd64 and arm64, and
# SHA256SUMS over them. The same commit gives the same bytes: the date is the
# commit's, not the clock's, and no local path is embedded.
#
#   scripts/release.sh                 all four targets into dist/
#   scripts/release.sh linux/amd64     one target (CI builds this one)
#   VERSION=v1.2.3 scripts/release.sh  override the version (default: git describe)
set -euo pipefail
cd "$(dirname "$0")/.."

out=${OUT:-dist}
commit=$(git rev-parse HEAD)
date=$(git log -1 --format=%cI HEAD)
version=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo "$commit")}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(linux/amd64 linux/arm64 darwin/amd64 darwin/arm64)

rm -rf "$out" && mkdir -p "$out"
ldflags="-s -w -buildid= -X main.buildVersion=$version -X main.buildCommit=$commit -X main.buildDate=$date"
for t in "${targets[@]}"; do
  os=${t%/*} arch=${t#*/}
  bin="$out/gatehouse_${version}_${os}_${arch}"
  echo "building $bin"
  CGO_ENABLED=0 GOOS=$os GOARCH=$arch go build -trimpath -buildvcs=true -ldflags "$ldflags" -o "$bin" ./cmd/gatehouse
done
(cd "$out" && sha256sum gatehouse_* > SHA256SUMS)
cat "$out/SHA256SUMS"
