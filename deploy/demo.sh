#!/usr/bin/env bash
# The one-command demo (`make demo`): a private containerd 2.x (1.6 if 2.x is not unpacked)
# runs `echo hello from mini` in the busybox image with the installed mini shim, then
# stops and leaves nothing behind.
set -euo pipefail

CACHE=${MINI_TEST_CACHE:-/var/cache/mini-test}
IMAGE_TAR=$CACHE/busybox-oci.tar
bin=$CACHE/containerd-2/usr/bin
cfg_version=3
if [[ ! -x $bin/containerd ]]; then
    bin=/usr/bin
    cfg_version=2
fi
ns=mini-demo-$$
dir=$(mktemp -d /tmp/mdXXXXXX)
pid=

cleanup() {
    if [[ -n $pid ]]; then
        kill -TERM "$pid" 2>/dev/null || true
        sleep 1
        kill -KILL "$pid" 2>/dev/null || true
    fi
    # Shims of this daemon name its socket on their command line.
    for p in $(pgrep -f -- "-address $dir/c.sock" || true); do
        kill -KILL "$p" 2>/dev/null || true
    done
    { grep -o " $dir/[^ ]*" /proc/self/mountinfo || true; } | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done
    for c in /sys/fs/cgroup/*/"$ns"; do
        if [[ -d $c ]]; then
            find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null || true
        fi
    done
    rm -rf "/run/containerd/runc/$ns"
    if ! grep -q " $dir/" /proc/self/mountinfo; then
        rm -rf "$dir"
    fi
}
trap cleanup EXIT

cat >"$dir/config.toml" <<TOML
version = $cfg_version
root = "$dir/root"
state = "$dir/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime", "io.containerd.nri.v1.nri"]
[grpc]
  address = "$dir/c.sock"
[ttrpc]
  address = "$dir/c.sock.ttrpc"
TOML

PATH=/usr/local/bin:$bin:$PATH "$bin/containerd" --config "$dir/config.toml" >"$dir/containerd.log" 2>&1 &
pid=$!
ctr() { timeout -k 5 60 "$bin/ctr" --address "$dir/c.sock" -n "$ns" "$@"; }
for _ in $(seq 100); do
    ctr version >/dev/null 2>&1 && break
    sleep 0.1
done
echo "containerd: $("$bin/containerd" --version)"
ctr images import --base-name localhost/busybox "$IMAGE_TAR" >/dev/null
ctr run --rm --runtime io.containerd.mini.v2 localhost/busybox:latest demo echo hello from mini
