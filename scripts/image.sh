#!/usr/bin/env bash
# Builds the container image from deploy/Dockerfile with buildah (no daemon,
# no registry needed: the base is scratch) and, with --check, asserts its
# configuration: non-root user, entrypoint, exposed ports, no shell.
#
#   scripts/image.sh [--check] [ARCH]      ARCH defaults to the host's (amd64, arm64)
#   IMAGE=gatehouse:dev scripts/image.sh   the tag (default localhost/gatehouse:<version>)
set -euo pipefail
cd "$(dirname "$0")/.."

check=false
if [ "${1:-}" = --check ]; then check=true; shift; fi
arch=${1:-$(go env GOARCH)}
command -v buildah >/dev/null 2>&1 || { echo "buildah not found: apt-get install buildah" >&2; exit 1; }

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
OUT="$ctx/dist" scripts/release.sh "linux/$arch" >/dev/null
cp "$ctx"/dist/gatehouse_*_linux_"$arch" "$ctx/gatehouse"
version=$("$ctx/gatehouse" version 2>/dev/null | awk '{print $2}' || true)
[ -n "$version" ] || version=$(git rev-parse --short HEAD)
ca=/etc/ssl/certs/ca-certificates.crt
[ -f "$ca" ] || { echo "$ca not found: apt-get install ca-certificates" >&2; exit 1; }
cp "$ca" "$ctx/ca-certificates.crt"
printf 'nonroot:x:65532:65532:nonroot:/data:/sbin/nologin\n' > "$ctx/passwd"
printf 'nonroot:x:65532:\n' > "$ctx/group"
mkdir "$ctx/data"
image=${IMAGE:-localhost/gatehouse:$version}

# Inside an unprivileged container (CI, sandboxes) overlay mounts and
# namespaces may be refused: vfs storage and chroot isolation work anywhere.
export STORAGE_DRIVER=${STORAGE_DRIVER:-vfs} BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot}
buildah --storage-driver "$STORAGE_DRIVER" bud --isolation "$BUILDAH_ISOLATION" \
  --timestamp 0 --layers=false -f "$PWD/deploy/Dockerfile" -t "$image" "$ctx"
echo "built $image"

$check || exit 0
fail() { echo "image check failed: $*" >&2; exit 1; }
inspect() { buildah --storage-driver "$STORAGE_DRIVER" inspect --type image --format "$1" "$image"; }
user=$(inspect '{{.OCIv1.Config.User}}')
[ "$user" = "65532:65532" ] || fail "user is '$user', want 65532:65532 (non-root)"
ep=$(inspect '{{range .OCIv1.Config.Entrypoint}}{{.}} {{end}}')
[ "$ep" = "/usr/local/bin/gatehouse " ] || fail "entrypoint is '$ep', want /usr/local/bin/gatehouse"
ports=$(inspect '{{range $p, $_ := .OCIv1.Config.ExposedPorts}}{{$p}} {{end}}')
[ "$ports" = "8080/tcp 9090/tcp " ] || fail "exposed ports are '$ports', want 8080/tcp 9090/tcp"
vols=$(inspect '{{range $v, $_ := .OCIv1.Config.Volumes}}{{$v}} {{end}}')
[ "$vols" = "/data " ] || fail "volumes are '$vols', want /data"
# No shell, nor anything else but our files, in the root filesystem.
ctr=$(buildah --storage-driver "$STORAGE_DRIVER" from "$image")
mnt=$(buildah --storage-driver "$STORAGE_DRIVER" mount "$ctr")
files=$(cd "$mnt" && find . -not -type d | sort | tr '\n' ' ')
buildah --storage-driver "$STORAGE_DRIVER" umount "$ctr" >/dev/null
buildah --storage-driver "$STORAGE_DRIVER" rm "$ctr" >/dev/null
want="./etc/group ./etc/passwd ./etc/ssl/certs/ca-certificates.crt ./usr/local/bin/gatehouse "
[ "$files" = "$want" ] || fail "image files are '$files', want '$want' (no shell, nothing else)"
for sh in bin/sh bin/bash usr/bin/sh; do
  case " $files " in *"./$sh "*) fail "a shell ($sh) is in the image" ;; esac
done
echo "image check passed: user $user, entrypoint $ep, ports $ports, volume $vols, files $files"
