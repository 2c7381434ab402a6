#!/usr/bin/env bash
# Installs what building and testing mini needs on a Debian bookworm host (run as root).
#
# - system packages from bookworm: containerd 1.6 (with ctr and the runc shim), runc,
#   podman, busybox-static (the test image is built from it), libseccomp-dev, pkg-config, ...
# - qemu-system-x86 and mmdebstrap: the pure cgroup v2 VM of `make vm-test` (its guest root
#   is built by tests/vm/build-rootfs.sh, on first use, into the test cache).
# - containerd 1.7 (trixie) and 2.x (sid), unpacked into private directories and NOT
#   installed system-wide: the end-to-end tests run them as private daemons.
#
# Idempotent: a second run only refreshes the package lists and re-extracts when the
# downloaded package changed. Network: Debian's mirror only.
set -euo pipefail

CACHE=${MINI_TEST_CACHE:-/var/cache/mini-test}
export DEBIAN_FRONTEND=noninteractive

if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps.sh: must run as root" >&2
    exit 1
fi

# --- 1. bookworm packages -------------------------------------------------------------
# protobuf-compiler (+ libprotobuf-dev, its well-known types): `protoc` for the gRPC clients
# of the end-to-end tests (containerd-client, and k8s-cri for the CRI API).
# qemu-system-x86 + mmdebstrap: the cgroup v2 VM (tests/vm/).
# podman (4.3, with conmon; no recommends needed): the `mini` command under podman
# (tests/tests/interop_podman.rs). runc (/usr/sbin/runc) is also the reference of `make bench`.
# dbus-daemon: a private bus with a systemd that never answers (the systemd driver's time limits).
PKGS=(containerd runc busybox-static libseccomp-dev pkg-config iproute2 procps python3 ca-certificates protobuf-compiler libprotobuf-dev
    qemu-system-x86 mmdebstrap podman dbus-daemon)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
    apt-get update
    apt-get install -y --no-install-recommends "${missing[@]}"
fi

# --- 2. containerd 1.7 (trixie) and 2.x (sid), private --------------------------------
# The mirror of the host's own Debian sources (deb822 or one-line form).
mirror=$(
    {
        grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}'
        grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
            sed -E 's/^deb (\[[^]]*\] )?//' | awk '{print $1}' || true
    } | grep -E '/debian/?$' | head -n1 || true
)
mirror=${mirror:-http://deb.debian.org/debian}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

APT_DIR=$CACHE/apt
mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial" "$CACHE/debs"
SRC=$APT_DIR/sources.list
cat >"$SRC.new" <<SOURCES
deb [signed-by=$keyring] $mirror trixie main
deb [signed-by=$keyring] $mirror sid main
SOURCES
mv "$SRC.new" "$SRC"

APT_OPTS=(
    -o "Dir::Etc::SourceList=$SRC"
    -o "Dir::Etc::SourceParts=-"
    -o "Dir::State::Lists=$APT_DIR/lists"
    -o "Dir::Cache=$APT_DIR/cache"
    -o "Dir::State::status=/var/lib/dpkg/status"
    -o "APT::Sandbox::User=root"
)
apt-get "${APT_OPTS[@]}" update

# Downloads SUITE's PKG into $CACHE/debs and prints the .deb's path.
download() {
    local pkg=$1 suite=$2 ver
    ver=$(apt-cache "${APT_OPTS[@]}" show "$pkg/$suite" 2>/dev/null | awk '/^Version:/{print $2; exit}')
    if [[ -z $ver ]]; then
        return 1
    fi
    (cd "$CACHE/debs" && apt-get "${APT_OPTS[@]}" download "$pkg/$suite" >/dev/null)
    local f
    f=$(ls "$CACHE/debs/${pkg}_${ver#*:}_"*.deb 2>/dev/null | head -n1)
    [[ -n $f ]] && echo "$f"
}

# Unpacks containerd of SUITE into DEST; newer Debian packages split ctr and the runc shim
# out of `containerd`, so each binary is looked for in the packages that may hold it.
install_suite() {
    local suite=$1 dest=$2 stamp deb debs=()
    for pkg in containerd containerd-ctr golang-github-containerd-containerd-ctr containerd-shim-runc-v2; do
        if deb=$(download "$pkg" "$suite"); then
            debs+=("$deb")
        fi
    done
    stamp=$(printf '%s\n' "${debs[@]}" | xargs -n1 basename | sort | tr '\n' ' ')
    if [[ -f $dest/.debs && $(cat "$dest/.debs") == "$stamp" && -x $dest/usr/bin/containerd ]]; then
        return 0
    fi
    rm -rf "$dest.tmp"
    mkdir -p "$dest.tmp"
    for deb in "${debs[@]}"; do
        dpkg -x "$deb" "$dest.tmp"
    done
    echo "$stamp" >"$dest.tmp/.debs"
    rm -rf "$dest"
    mv "$dest.tmp" "$dest"
}

install_suite trixie "$CACHE/containerd-1.7"
install_suite sid "$CACHE/containerd-2"

# --- 3. report ------------------------------------------------------------------------
status=0
for d in /usr "$CACHE/containerd-1.7/usr" "$CACHE/containerd-2/usr"; do
    for b in containerd ctr containerd-shim-runc-v2; do
        if [[ ! -x $d/bin/$b ]]; then
            echo "install-deps.sh: missing $d/bin/$b" >&2
            status=1
        fi
    done
    [[ -x $d/bin/containerd ]] && echo "$d/bin: $("$d/bin/containerd" --version)"
done
echo "runc: $(runc --version | head -n1)"
echo "podman: $(podman --version)"
exit $status
