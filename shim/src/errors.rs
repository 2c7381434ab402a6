//! Errors of the Task service and their ttrpc codes: the one place runtime-core's errors
//! and the containers' and processes' refusals become what containerd sees.

use ttrpc::{Code, Error as TtrpcError, get_status};

/// Why an operation on a container or a process failed: [`failure`] maps it to a ttrpc code.
#[derive(Debug)]
pub enum Failure {
    /// The spec or request is wrong.
    Invalid(String),
    /// Building the container failed.
    Runtime(&'static str, runtime_core::Error),
    /// Not allowed in the current state.
    State(String),
    /// The id is taken.
    Exists(String),
    /// Gone already (e.g. deleted by another request).
    NotFound(String),
    Internal(String),
}

/// The ttrpc error of a [`Failure`].
pub fn failure(err: Failure) -> TtrpcError {
    match err {
        Failure::Invalid(msg) => invalid_argument(msg),
        Failure::Runtime(context, e) => runtime(context, e),
        Failure::State(msg) => failed_precondition(msg),
        Failure::Exists(what) => already_exists(what),
        Failure::NotFound(what) => not_found(what),
        Failure::Internal(msg) => internal(msg),
    }
}

pub fn status(code: Code, msg: impl ToString) -> TtrpcError {
    TtrpcError::RpcStatus(get_status(code, msg))
}

pub fn not_found(what: impl std::fmt::Display) -> TtrpcError {
    status(Code::NOT_FOUND, format!("{what}: not found"))
}

pub fn already_exists(what: impl std::fmt::Display) -> TtrpcError {
    status(Code::ALREADY_EXISTS, format!("{what}: already exists"))
}

pub fn failed_precondition(msg: impl ToString) -> TtrpcError {
    status(Code::FAILED_PRECONDITION, msg)
}

pub fn invalid_argument(msg: impl ToString) -> TtrpcError {
    status(Code::INVALID_ARGUMENT, msg)
}

pub fn internal(msg: impl ToString) -> TtrpcError {
    status(Code::INTERNAL, msg)
}

pub fn unimplemented(method: &str) -> TtrpcError {
    status(
        Code::UNIMPLEMENTED,
        format!("{method} is not implemented by mini yet"),
    )
}

/// A runtime-core error, prefixed with what the shim was doing.
pub fn runtime(context: &str, err: runtime_core::Error) -> TtrpcError {
    use runtime_core::Error as E;
    let code = match &err {
        E::InvalidSpec { .. } => Code::INVALID_ARGUMENT,
        E::Setup(_) => Code::FAILED_PRECONDITION,
        E::Io { .. } | E::Sys { .. } | E::Cgroup { .. } => Code::INTERNAL,
    };
    status(code, format!("{context}: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(e: TtrpcError) -> Code {
        match e {
            TtrpcError::RpcStatus(s) => s.code(),
            other => panic!("not a status: {other:?}"),
        }
    }

    #[test]
    fn spec_errors_are_invalid_argument_and_setup_errors_failed_precondition() {
        assert_eq!(
            code(runtime(
                "create",
                runtime_core::Error::invalid("process.args", "empty")
            )),
            Code::INVALID_ARGUMENT
        );
        assert_eq!(
            code(runtime(
                "create",
                runtime_core::Error::Setup("exec: x".into())
            )),
            Code::FAILED_PRECONDITION
        );
        assert_eq!(code(unimplemented("Pause")), Code::UNIMPLEMENTED);
    }
}
