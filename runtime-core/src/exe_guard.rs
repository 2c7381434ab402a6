//! CVE-2019-5736 guard: setup processes run from a read-only view of the executable.
