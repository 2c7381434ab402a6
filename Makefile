# mini: build, install, test and demo. Tests use the debug build (target/debug); `install`
# and `bench` use the release build.
CARGO      ?= cargo
PREFIX     ?= /usr/local
CACHE      ?= /var/cache/mini-test
IMAGE_TAR  := $(CACHE)/busybox-oci.tar
SHIM       := containerd-shim-mini-v2

export MINI_TEST_CACHE := $(CACHE)

.PHONY: all build release install test unit e2e bench lint deps image demo

all: build

## build: debug build of the whole workspace (what the tests run)
build:
	$(CARGO) build --workspace

release:
	$(CARGO) build --release -p containerd-shim-mini

## install: the release shim to $(PREFIX)/bin, where containerd finds it on its PATH
install: release
	install -D -m 0755 target/release/$(SHIM) $(DESTDIR)$(PREFIX)/bin/$(SHIM)

## test: unit tests and the end-to-end tests (needs root and `make deps`)
test: build image
	$(CARGO) test --workspace

unit: build
	$(CARGO) test --workspace --exclude mini-e2e

e2e: build image
	$(CARGO) test -p mini-e2e

## bench: start-up time and memory, mini vs runc, on containerd 2.x (reports, never fails)
bench: release image
	MINI_BIN_DIR=$(CURDIR)/target/release $(CARGO) run --release -p mini-e2e --bin bench

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
