//! The command line containerd gives a shim (Go `flag` syntax: `-name value`, `-name=value`,
//! `--name value`; bool flags take no value).

use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start,
    Delete,
    Daemon,
    Version,
    Info,
}

#[derive(Debug, Clone)]
pub struct Args {
    pub namespace: String,
    pub id: String,
    /// containerd's gRPC address (`-address`).
    pub address: String,
    pub publish_binary: String,
    /// `-bundle`; defaults to the working directory containerd starts us in.
    pub bundle: Option<PathBuf>,
    pub debug: bool,
    pub action: Action,
}

impl Args {
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut out = Args {
            namespace: String::new(),
            id: String::new(),
            address: String::new(),
            publish_binary: String::new(),
            bundle: None,
            debug: false,
            action: Action::Daemon,
        };
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
                out.action = match arg.as_str() {
                    "start" => Action::Start,
                    "delete" => Action::Delete,
                    other => return Err(format!("unknown action {other:?}")),
                };
                continue;
            };
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (flag, None),
            };
            match name {
                "debug" => out.debug = inline.as_deref() != Some("false"),
                "v" | "version" => out.action = Action::Version,
                "info" => out.action = Action::Info,
                "namespace" | "id" | "address" | "publish-binary" | "bundle" | "socket" => {
                    let value = match inline {
                        Some(v) => v,
                        None => it
                            .next()
                            .ok_or_else(|| format!("flag -{name} needs a value"))?,
                    };
                    match name {
                        "namespace" => out.namespace = value,
                        "id" => out.id = value,
                        "address" => out.address = value,
                        "publish-binary" => out.publish_binary = value,
                        "bundle" => out.bundle = Some(PathBuf::from(value)),
                        _ => {}
                    }
                }
                other => return Err(format!("unknown flag -{other}")),
            }
        }
        if matches!(out.action, Action::Start | Action::Delete | Action::Daemon) {
            if out.id.is_empty() {
                return Err("-id is required".into());
            }
            if out.namespace.is_empty() {
                return Err("-namespace is required".into());
            }
        }
        Ok(out)
    }

    /// The bundle directory: `-bundle`, else the working directory.
    pub fn bundle_dir(&self) -> std::io::Result<PathBuf> {
        match &self.bundle {
            Some(b) => Ok(b.clone()),
            None => std::env::current_dir(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Args, String> {
        Args::parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn containerd_start_command_line_parses() {
        let a = parse("-namespace default -address /run/containerd/containerd.sock -publish-binary /usr/bin/containerd -id c1 -debug start").unwrap();
        assert_eq!(a.action, Action::Start);
        assert_eq!(a.namespace, "default");
        assert_eq!(a.id, "c1");
        assert_eq!(a.address, "/run/containerd/containerd.sock");
        assert!(a.debug);
    }

    #[test]
    fn delete_takes_a_bundle_and_equals_form_works() {
        let a = parse("--namespace=ns -id=c1 -bundle /b -address a delete").unwrap();
        assert_eq!(a.action, Action::Delete);
        assert_eq!(a.bundle, Some(PathBuf::from("/b")));
        assert_eq!(a.namespace, "ns");
    }

    #[test]
    fn version_needs_no_id_but_start_does() {
        assert_eq!(parse("-v").unwrap().action, Action::Version);
        assert!(parse("-namespace n start").unwrap_err().contains("-id"));
        assert!(
            parse("-id x -namespace n bogus")
                .unwrap_err()
                .contains("bogus")
        );
    }
}
