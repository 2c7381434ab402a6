#!/bin/sh
# Init of the test VM (tests/src/vm.rs). The host copies it into the job share (9p tag `job`)
# as `init`; the boot stub of the root (/sbin/mini-vm-init, tests/vm/build-rootfs.sh) mounts
# that share at /mnt/job and runs it, so changing this script needs no new root.
#
# Stage 1 puts a throwaway tmpfs over the read-only shared root (overlayfs) and pivots into
# it, so the guest can write anywhere and the cached root stays untouched. Stage 2 mounts
# the API file systems, moves the job share to /mini-job (`shares` there lists "<tag> <path>"
# read-only 9p shares to mount at the same path as on the host, `run.sh` is the job) and
# then, by the kernel command line's `mini.boot=`:
#   init     mounts a pure cgroup2 hierarchy, enables every controller for the children of
#            the root, runs the job (output to /mini-job/output and the console), powers off;
#   systemd  installs the job as a oneshot unit that powers off when done, execs systemd.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
# The read-only shares do not change while the VM runs: cache=loose keeps the pages of the
# big Go binaries (containerd, ctr) in the guest's page cache instead of reading them over 9p
# again on every exec (seconds each under TCG).
RO_OPTS=trans=virtio,version=9p2000.L,msize=262144,cache=loose,ro
fail() {
    echo "mini-vm: $*"
    echo o >/proc/sysrq-trigger
    sleep 60
}

if [ "${1:-}" != stage2 ]; then
    mkdir -p /mnt/upper /mnt/work /mnt/root
    mount -t overlay -o lowerdir=/,upperdir=/mnt/upper,workdir=/mnt/work overlay /mnt/root ||
        fail "overlay root failed"
    mkdir -p /mnt/root/.oldroot
    cd /mnt/root && pivot_root . .oldroot || fail "pivot_root failed"
    exec /bin/sh /.oldroot/mnt/job/init stage2
fi

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
mount -t tmpfs -o mode=1777 shm /dev/shm
# /tmp and /var/lib/containerd hold containerd's overlay snapshots: an overlay upper dir
# cannot live on overlayfs (nor on 9p).
for d in /run /tmp /var/lib/containerd /var/log /var/tmp; do
    mkdir -p "$d"
    mount -t tmpfs tmpfs "$d"
done
chmod 1777 /tmp /var/tmp
mkdir -p /mini-job
mount --move /.oldroot/mnt/job /mini-job || fail "moving the job share failed"
umount -l /.oldroot
if [ -f /mini-job/shares ]; then
    while read -r tag path; do
        mkdir -p "$path"
        mount -t 9p -o "$RO_OPTS" "$tag" "$path" || echo "mini-vm: mounting $tag at $path failed"
    done </mini-job/shares
fi
hostname mini-vm
# containerd's CRI copies the host's /etc/hosts into every pod sandbox: mmdebstrap makes none.
[ -e /etc/hosts ] || printf '127.0.0.1 localhost\n127.0.1.1 mini-vm\n::1 localhost\n' >/etc/hosts
ip link set lo up 2>/dev/null || busybox ip link set lo up

boot=init
for arg in $(cat /proc/cmdline); do
    case $arg in mini.boot=*) boot=${arg#mini.boot=} ;; esac
done

if [ "$boot" = systemd ]; then
    mkdir -p /etc/systemd/system/multi-user.target.wants
    cat >/etc/systemd/system/mini-vm-job.service <<UNIT
[Unit]
Description=mini VM test job
After=basic.target
SuccessAction=poweroff-force
FailureAction=poweroff-force

[Service]
Type=oneshot
Delegate=yes
ExecStart=/bin/sh -c 'sh /mini-job/run.sh 2>&1 | tee /mini-job/output >/dev/ttyS0'
TimeoutStartSec=infinity
UNIT
    ln -sf /etc/systemd/system/mini-vm-job.service \
        /etc/systemd/system/multi-user.target.wants/mini-vm-job.service
    # No login prompt on the console the output goes to.
    ln -sf /dev/null /etc/systemd/system/serial-getty@ttyS0.service
    exec /lib/systemd/systemd
fi

mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
controllers=""
for c in $(cat /sys/fs/cgroup/cgroup.controllers); do controllers="$controllers +$c"; done
echo "$controllers" >/sys/fs/cgroup/cgroup.subtree_control
echo "mini-vm: cgroup2 with$controllers"
sh /mini-job/run.sh 2>&1 | tee /mini-job/output
sync
echo o >/proc/sysrq-trigger
sleep 60
