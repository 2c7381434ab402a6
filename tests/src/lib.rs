//! Fixtures for the end-to-end tests: private containerd daemons, the busybox image, ctr.
