#!/usr/bin/env bash
# Builds the root directory of the pure cgroup v2 test VM (tests/src/vm.rs boots it), once:
# a Debian bookworm root from `mmdebstrap` with Debian's kernel, an initramfs that can mount
# its root over virtio 9p, containerd 1.6 + runc from bookworm, and systemd (so one root
# boots with tests/vm/guest-init.sh as PID 1 or with systemd).
#
# Usage: build-rootfs.sh [DEST]   (default $MINI_TEST_CACHE/vm/bookworm-v2, run as root)
#
# Its only own program is the boot stub /sbin/mini-vm-init: it runs the `init` the host puts
# into the VM's job share (tests/vm/guest-init.sh), so the guest's init can change without a
# new root. The root is keyed by a hash of this script: DEST/.mini-vm-key holds it, and a
# different key rebuilds. The build happens in DEST.tmp.* and is renamed into place
# only when complete, so an interrupted build is never used. Prints DEST.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
CACHE=${MINI_TEST_CACHE:-/var/cache/mini-test}
DEST=${1:-$CACHE/vm/bookworm-v2}

if [[ $(id -u) -ne 0 ]]; then
    echo "build-rootfs.sh: must run as root" >&2
    exit 1
fi
key=$(sha256sum <"$here/build-rootfs.sh" | cut -d' ' -f1)
mkdir -p "$(dirname "$DEST")"
# One builder at a time (two test runs may ask at once); the second finds the root built.
exec 9>"$DEST.lock"
flock 9
if [[ -f $DEST/.mini-vm-key && $(cat "$DEST/.mini-vm-key") == "$key" ]]; then
    echo "$DEST"
    exit 0
fi
for tool in mmdebstrap qemu-system-x86_64; do
    command -v "$tool" >/dev/null || {
        echo "build-rootfs.sh: $tool missing: run deploy/install-deps.sh" >&2
        exit 1
    }
done

# Kernel, initramfs and module tools; what the tests run (containerd 1.6, ctr, runc; the
# shim and test binaries are the host's, built on bookworm, and need only libc and
# libseccomp2); systemd as PID 1 for the systemd boot mode.
PKGS=linux-image-amd64,initramfs-tools,kmod,udev,procps,util-linux,mount,busybox-static
PKGS+=,containerd,runc,libseccomp2
PKGS+=,systemd-sysv,dbus
# Modules the initramfs needs for a root over virtio 9p, and overlay (the guest init puts a
# throwaway tmpfs over the read-only shared root).
MODULES="9p 9pnet 9pnet_virtio virtio_pci overlay"

tmp=$(mktemp -d "$DEST.tmp.XXXXXX")
stub=$tmp.init
trap 'rm -rf "$tmp" "$stub"' EXIT
cat >"$stub" <<'STUB'
#!/bin/sh
# Boot stub of the mini test VM (tests/vm/build-rootfs.sh): mounts the job share (9p tag
# `job`) at /mnt/job and runs the init the host put there (tests/vm/guest-init.sh).
exec </dev/console >/dev/console 2>&1
mount -t tmpfs -o mode=0755 mini-vm /mnt && mkdir -p /mnt/job &&
    mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=none job /mnt/job &&
    exec /bin/sh /mnt/job/init
echo "mini-vm: no job share with an init"
echo o >/proc/sysrq-trigger
STUB
started=$SECONDS
mmdebstrap --variant=minbase --include="$PKGS" \
    --customize-hook="printf '%s\n' $MODULES >>\"\$1/etc/initramfs-tools/modules\"" \
    --customize-hook='chroot "$1" update-initramfs -u -k all' \
    --customize-hook="install -m 0755 '$stub' \"\$1/sbin/mini-vm-init\"" \
    --customize-hook='rm -f "$1"/var/cache/apt/archives/*.deb' \
    bookworm "$tmp" >&2
echo "$key" >"$tmp/.mini-vm-key"
chmod 0755 "$tmp"

# Swap in: the old root (if any) moves aside first, then goes.
old=
if [[ -e $DEST ]]; then
    old=$(mktemp -d "$DEST.old.XXXXXX")
    mv "$DEST" "$old/root"
fi
mv "$tmp" "$DEST"
rm -f "$stub"
trap - EXIT
[[ -n $old ]] && rm -rf "$old"
# Leftovers of builds that crashed before this one.
rm -rf "$DEST".tmp.* "$DEST".old.* 2>/dev/null || true
echo "build-rootfs.sh: built $DEST in $((SECONDS - started)) s ($(du -sh "$DEST" | cut -f1))" >&2
echo "$DEST"
