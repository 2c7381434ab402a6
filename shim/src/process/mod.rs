//! The processes of a container: its init (in `container`) and its execs.

pub mod exec;
