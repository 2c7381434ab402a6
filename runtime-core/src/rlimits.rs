//! `process.rlimits` and `process.oomScoreAdj`.

use oci_spec::runtime::PosixRlimit;

use crate::Result;

/// Sets each rlimit; an error names the limit (e.g. `RLIMIT_NOFILE`) and the values asked.
pub fn apply(rlimits: &[PosixRlimit]) -> Result<()> {
    let _ = rlimits;
    todo!("rlimits::apply")
}

/// Writes `/proc/self/oom_score_adj`; an error names `process.oomScoreAdj` and the value.
pub fn set_oom_score_adj(value: i32) -> Result<()> {
    let _ = value;
    todo!("rlimits::set_oom_score_adj")
}
