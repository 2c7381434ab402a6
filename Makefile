# mini: build, install, test and demo. Tests use the debug build (target/debug); `install`
# and `bench` use the release build: a static, non-PIE executable (glibc and libseccomp
# linked in), so its pages need no relocation and every shim shares them.
CARGO      ?= cargo
PREFIX     ?= /usr/local
CACHE      ?= /var/cache/mini-test
IMAGE_TAR  := $(CACHE)/busybox-oci.tar
SHIM       := containerd-shim-mini-v2
TRIPLE     := $(shell rustc -vV | sed -n 's/^host: //p')
RELEASE    := target/$(TRIPLE)/release

export MINI_TEST_CACHE := $(CACHE)

.PHONY: all build release install test host-test vm-test vm-root unit e2e bench lint deps image demo

all: build

## build: debug build of the whole workspace (what the tests run)
build:
	$(CARGO) build --workspace

## release: the static release shim and the `mini` command in $(RELEASE) (--target keeps the
## flags off build scripts)
release:
	LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH=$${LIBSECCOMP_LIB_PATH:-/usr/lib/$$(gcc -print-multiarch)} \
	RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" \
	$(CARGO) build --release -p containerd-shim-mini -p runtime-core --bin $(SHIM) --bin mini --target $(TRIPLE)

## install: the release shim to $(PREFIX)/bin, where containerd finds it on its PATH, and the
## runc-compatible `mini` command beside it
install: release
	install -D -m 0755 $(RELEASE)/$(SHIM) $(DESTDIR)$(PREFIX)/bin/$(SHIM)
	install -D -m 0755 $(RELEASE)/mini $(DESTDIR)$(PREFIX)/bin/mini

## test: unit tests and the end-to-end tests, on this host and in the cgroup v2 VM (needs root;
## installs what is missing first)
test: host-test vm-test

host-test: deps build
	$(CARGO) test --workspace --lib --bins --tests

## vm-test: the cgroup v2 scenarios (tests/tests/cgroup_v2.rs) and the systemd cgroup driver's
## (tests/tests/systemd_cgroup.rs) in a throwaway QEMU VM with a pure cgroup v2 hierarchy:
## one boot with a plain init, one with systemd (tests/tests/vm.rs)
vm-test: deps build vm-root
	$(CARGO) test -p mini-e2e --test cgroup_v2 --test vm --test systemd_cgroup --no-run
	$(CARGO) test -p mini-e2e --test vm -- --ignored --test-threads=1 --nocapture

## vm-root: the VM's guest root, built once into $(CACHE)/vm (rebuilt when its script changes)
vm-root:
	bash tests/vm/build-rootfs.sh

unit: build
	$(CARGO) test --workspace --exclude mini-e2e

e2e: build image
	$(CARGO) test -p mini-e2e

## bench: the `mini` command's create/start/delete cycle vs Debian's runc, start-up time and
## memory of the shim vs the runc shim, then a soak of SOAK_CYCLES run/delete cycles (fds,
## mounts, cgroups, zombies before/after), on containerd 2.x (reports, never fails).
## BENCH_ARGS selects a part: --runtime-only, --cri-only, --exec-idle-only, --soak-only
SOAK_CYCLES ?= 1000
BENCH_ARGS  ?=
bench: release image
	MINI_BIN_DIR=$(CURDIR)/$(RELEASE) MINI_BENCH_SOAK_CYCLES=$(SOAK_CYCLES) \
	$(CARGO) run --release -p mini-e2e --bin bench -- $(BENCH_ARGS)

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## deps: system packages, containerd 1.7/2.x (private) and the busybox test image
deps:
	bash deploy/install-deps.sh
	bash tests/fixtures/build-busybox-image.sh $(IMAGE_TAR)

image:
	bash tests/fixtures/build-busybox-image.sh $(IMAGE_TAR)

## demo: a private containerd runs `echo hello from mini` with the installed shim
demo: deps build install
	bash deploy/demo.sh
