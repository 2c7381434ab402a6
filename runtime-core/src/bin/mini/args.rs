//! runc's command line: global flags, then a command with its own flags and the id.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use lexopt::prelude::*;

/// runc's global flags.
#[derive(Debug)]
pub struct Global {
    pub root: PathBuf,
    pub log: Option<PathBuf>,
    pub log_json: bool,
    pub debug: bool,
    pub systemd_cgroup: bool,
}

#[derive(Debug, Default)]
pub struct CreateOpts {
    pub bundle: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
}

#[derive(Debug, Default)]
pub struct ExecOpts {
    /// `--process FILE`: the process as OCI JSON (containerd's runc shim and podman use it).
    pub process: Option<PathBuf>,
    /// The program and its arguments when there is no `--process`.
    pub args: Vec<String>,
    pub detach: bool,
    pub tty: bool,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub cwd: Option<String>,
    pub env: Vec<String>,
    pub user: Option<String>,
    /// `--cap`: capabilities added to the process's sets, as runc adds them.
    pub caps: Vec<String>,
    /// `--additional-gids/-g`: supplementary groups added to the process's.
    pub additional_gids: Vec<u32>,
    /// `--no-new-privs`: `noNewPrivileges` set for this process.
    pub no_new_privs: bool,
    pub preserve_fds: u32,
    /// `--apparmor PROFILE`: the process's `apparmorProfile`.
    pub apparmor: Option<String>,
    /// `--process-label LABEL`: the process's `selinuxLabel`.
    pub process_label: Option<String>,
    /// `--ignore-paused`: exec into a paused container too (the process stays frozen with
    /// it until it is resumed).
    pub ignore_paused: bool,
    /// `--cgroup [CONTROLLERS:]PATH` (repeatable): sub-cgroups of the container's to join.
    pub cgroups: Vec<String>,
}

#[derive(Debug)]
pub enum Command {
    Exec(String, Box<ExecOpts>),
    /// The id, the `--resources` file (`-` for stdin), and the single-value flags as a
    /// runtime-spec `LinuxResources` JSON object.
    Update(String, Option<PathBuf>, serde_json::Value),
    Create(String, CreateOpts),
    Run(String, CreateOpts, bool),
    Start(String),
    State(String),
    Kill(String, String, bool),
    Delete(String, bool),
    List(bool, bool),
    Ps(String, bool, Vec<String>),
    Pause(String),
    Resume(String),
    /// The id, `--stats` (once), the `--interval`.
    Events(String, bool, std::time::Duration),
    Features,
    Spec(Option<PathBuf>),
    Version,
    /// `--help`/`-h`: the usage of the command named, or of `mini`.
    Help(Option<String>),
}

const DEFAULT_ROOT: &str = "/run/mini";

pub fn parse(argv: Vec<OsString>) -> Result<(Global, Command), String> {
    parse_inner(argv).map_err(|e| e.to_string())
}

fn parse_inner(argv: Vec<OsString>) -> Result<(Global, Command), lexopt::Error> {
    let mut p = lexopt::Parser::from_args(argv);
    let mut g = Global {
        root: PathBuf::from(DEFAULT_ROOT),
        log: None,
        log_json: false,
        debug: false,
        systemd_cgroup: false,
    };
    let name = loop {
        match p.next()? {
            Some(Long("root")) => g.root = p.value()?.into(),
            Some(Long("log")) => g.log = Some(p.value()?.into()),
            Some(Long("log-format")) => {
                g.log_json = match p.value()?.string()?.as_str() {
                    "json" => true,
                    "text" => false,
                    other => return Err(format!("unknown log-format {other:?}").into()),
                }
            }
            Some(Long("debug")) => g.debug = true,
            Some(Long("systemd-cgroup")) => g.systemd_cgroup = true,
            Some(Long("version") | Short('v')) => return Ok((g, Command::Version)),
            Some(Long("help") | Short('h')) => return Ok((g, Command::Help(None))),
            Some(Value(v)) => break v.string()?,
            Some(arg) => return Err(arg.unexpected()),
            None => return Err("no command given (see docs/cli.md)".into()),
        }
    };
    let command = match command(&mut p, &name) {
        Err(e) if e.to_string() == HELP => Command::Help(Some(name)),
        other => other?,
    };
    Ok((g, command))
}

/// What a command's flag loop returns for `--help`/`-h`: turned into [`Command::Help`].
const HELP: &str = "\u{0}help";

fn help() -> lexopt::Error {
    HELP.into()
}

/// The usage text of `command`, or of `mini` itself; `None` for an unknown command.
pub fn usage(command: Option<&str>) -> Option<&'static str> {
    Some(match command {
        None => {
            "usage: mini [global flags] COMMAND [flags] [ID] [args]\n\n\
             An OCI runtime (runtime-spec 1.2) with runc's command line.\n\n\
             global flags:\n  \
             --root DIR            state directory (default /run/mini)\n  \
             --log FILE            log file (default stderr)\n  \
             --log-format text|json\n  \
             --debug               debug log lines\n  \
             --systemd-cgroup      the systemd cgroup driver\n  \
             --version, -v         version and spec version\n  \
             --help, -h            this text; `mini COMMAND --help` for a command\n\n\
             commands:\n  \
             create   create a container (init blocked before the user's program)\n  \
             start    run the user's program of a created container\n  \
             run      create and start a container\n  \
             state    the runtime-spec state of a container\n  \
             kill     signal a container's init (or all its processes)\n  \
             delete   delete a container\n  \
             exec     run a further process in a container\n  \
             ps       the processes of a container\n  \
             list     the containers under --root\n  \
             pause    freeze a container's processes\n  \
             resume   thaw a paused container\n  \
             update   change a container's resource limits\n  \
             events   a container's stats and OOM events\n  \
             features the runtime-spec features document\n  \
             spec     write a default config.json\n"
        }
        Some("create") | Some("run") => {
            "usage: mini create|run [flags] ID\n\n  \
             --bundle, -b DIR        the bundle (default: current directory)\n  \
             --pid-file FILE         write the init's pid there\n  \
             --console-socket PATH   where the pty master goes (process.terminal)\n  \
             --preserve-fds N        pass fds 3 … 3+N-1 on\n  \
             --no-pivot              change the root without pivot_root\n  \
             --no-new-keyring        keep the caller's session keyring\n  \
             --detach, -d            (run) do not wait for the container\n"
        }
        Some("start") => "usage: mini start ID\n",
        Some("state") => "usage: mini state ID\n",
        Some("pause") => "usage: mini pause ID\n",
        Some("resume") => "usage: mini resume ID\n",
        Some("kill") => "usage: mini kill [--all|-a] ID [SIGNAL]\n",
        Some("delete") => "usage: mini delete [--force|-f] ID\n",
        Some("list") => "usage: mini list [--format|-f table|json] [--quiet|-q]\n",
        Some("ps") => "usage: mini ps [--format|-f table|json] ID [ps arguments]\n",
        Some("events") => "usage: mini events [--stats] [--interval DURATION] ID\n",
        Some("features") => "usage: mini features\n",
        Some("spec") => "usage: mini spec [--bundle|-b DIR]\n",
        Some("exec") => {
            "usage: mini exec [flags] ID [COMMAND [ARGS…]]\n\n  \
             --process, -p FILE      the process as OCI JSON (other process flags ignored)\n  \
             --detach, -d            do not wait for the process\n  \
             --tty, -t               a terminal (needs --console-socket)\n  \
             --console-socket PATH   where the pty master goes\n  \
             --pid-file FILE         write the process's pid there\n  \
             --cwd DIR               working directory\n  \
             --env, -e NAME=VALUE    an environment variable (repeatable)\n  \
             --user, -u USER[:GROUP] names or numbers, names from the container's files\n  \
             --cap CAP               add a capability (repeatable)\n  \
             --additional-gids, -g GID  add a supplementary group (repeatable)\n  \
             --no-new-privs          set no_new_privs for the process\n  \
             --apparmor PROFILE      the process's AppArmor profile\n  \
             --process-label LABEL   the process's SELinux label\n  \
             --ignore-paused         exec into a paused container (frozen until resumed)\n  \
             --cgroup [CTRL,…:]PATH  join this existing sub-cgroup (repeatable)\n  \
             --preserve-fds N        pass fds 3 … 3+N-1 on\n"
        }
        Some("update") => {
            "usage: mini update [flags] ID\n\n  \
             --resources, -r FILE    a LinuxResources JSON document (- for stdin)\n  \
             --memory, --memory-reservation, --memory-swap, --pids-limit, --cpu-shares,\n  \
             --cpu-quota, --cpu-period, --cpuset-cpus, --cpuset-mems, --cpu-rt-period,\n  \
             --cpu-rt-runtime, --blkio-weight\n"
        }
        Some(_) => return None,
    })
}

fn command(p: &mut lexopt::Parser, name: &str) -> Result<Command, lexopt::Error> {
    let command = match name {
        "create" => {
            let (id, opts, _) = create_opts(p, false)?;
            Command::Create(id, opts)
        }
        "run" => {
            let (id, opts, detach) = create_opts(p, true)?;
            Command::Run(id, opts, detach)
        }
        "start" => Command::Start(only_id(p)?),
        "state" => Command::State(only_id(p)?),
        "pause" => Command::Pause(only_id(p)?),
        "resume" => Command::Resume(only_id(p)?),
        "kill" => {
            let mut all = false;
            let mut values = Vec::new();
            while let Some(arg) = p.next()? {
                match arg {
                    Long("help") | Short('h') => return Err(help()),
                    Long("all") | Short('a') => all = true,
                    Value(v) => values.push(v.string()?),
                    _ => return Err(arg.unexpected()),
                }
            }
            let mut values = values.into_iter();
            let id = values.next().ok_or("kill: missing container id")?;
            let signal = values.next().unwrap_or_else(|| "SIGTERM".into());
            Command::Kill(id, signal, all)
        }
        "delete" => {
            let mut force = false;
            let mut id = None;
            while let Some(arg) = p.next()? {
                match arg {
                    Long("help") | Short('h') => return Err(help()),
                    Long("force") | Short('f') => force = true,
                    Value(v) if id.is_none() => id = Some(v.string()?),
                    _ => return Err(arg.unexpected()),
                }
            }
            Command::Delete(id.ok_or("delete: missing container id")?, force)
        }
        "list" => {
            let (mut json, mut quiet) = (false, false);
            while let Some(arg) = p.next()? {
                match arg {
                    Long("help") | Short('h') => return Err(help()),
                    Long("format") | Short('f') => json = format_json(p)?,
                    Long("quiet") | Short('q') => quiet = true,
                    _ => return Err(arg.unexpected()),
                }
            }
            Command::List(json, quiet)
        }
        "ps" => {
            let mut json = false;
            let mut id = None;
            let mut ps_args = Vec::new();
            while let Some(arg) = p.next()? {
                match arg {
                    Long("help") | Short('h') => return Err(help()),
                    Long("format") | Short('f') => json = format_json(p)?,
                    Value(v) if id.is_none() => id = Some(v.string()?),
                    Value(v) => ps_args.push(v.string()?),
                    _ => return Err(arg.unexpected()),
                }
            }
            Command::Ps(id.ok_or("ps: missing container id")?, json, ps_args)
        }
        "events" => {
            let (mut stats, mut interval, mut id) = (false, Duration::from_secs(5), None);
            while let Some(arg) = p.next()? {
                match arg {
                    Long("help") | Short('h') => return Err(help()),
                    Long("stats") => stats = true,
                    Long("interval") => {
                        interval = crate::events::parse_duration(&p.value()?.string()?)?;
                    }
                    Value(v) if id.is_none() => id = Some(v.string()?),
                    _ => return Err(arg.unexpected()),
                }
            }
            Command::Events(id.ok_or("events: missing container id")?, stats, interval)
        }
        "exec" => exec_opts(p)?,
        "update" => update_opts(p)?,
        "features" => Command::Features,
        "spec" => {
            let mut bundle = None;
            while let Some(arg) = p.next()? {
                match arg {
                    Long("help") | Short('h') => return Err(help()),
                    Long("bundle") | Short('b') => bundle = Some(p.value()?.into()),
                    Long("rootless") => {
                        return Err("spec --rootless: rootless containers are not supported".into());
                    }
                    _ => return Err(arg.unexpected()),
                }
            }
            Command::Spec(bundle)
        }
        other => return Err(format!("unknown command {other:?}").into()),
    };
    Ok(command)
}

fn exec_opts(p: &mut lexopt::Parser) -> Result<Command, lexopt::Error> {
    let mut o = ExecOpts::default();
    let mut id = None;
    while let Some(arg) = p.next()? {
        match arg {
            Long("help") | Short('h') => return Err(help()),
            Long("process") | Short('p') => o.process = Some(p.value()?.into()),
            Long("detach") | Short('d') => o.detach = true,
            Long("tty") | Short('t') => o.tty = true,
            Long("pid-file") => o.pid_file = Some(p.value()?.into()),
            Long("console-socket") => o.console_socket = Some(p.value()?.into()),
            Long("cwd") => o.cwd = Some(p.value()?.string()?),
            Long("env") | Short('e') => o.env.push(p.value()?.string()?),
            Long("user") | Short('u') => o.user = Some(p.value()?.string()?),
            Long("cap") => o.caps.push(p.value()?.string()?),
            Long("additional-gids") | Short('g') => o.additional_gids.push(p.value()?.parse()?),
            Long("no-new-privs") => o.no_new_privs = true,
            Long("preserve-fds") => o.preserve_fds = p.value()?.parse()?,
            Long("apparmor") => o.apparmor = Some(p.value()?.string()?),
            Long("process-label") => o.process_label = Some(p.value()?.string()?),
            Long("ignore-paused") => o.ignore_paused = true,
            Long("cgroup") => o.cgroups.push(p.value()?.string()?),
            Value(v) if id.is_none() => id = Some(v.string()?),
            Value(v) => {
                // The rest is the program and its arguments, flags included.
                o.args.push(v.string()?);
                for rest in p.raw_args()? {
                    o.args.push(rest.string()?);
                }
            }
            _ => return Err(arg.unexpected()),
        }
    }
    let id = id.ok_or("exec: missing container id")?;
    if o.process.is_none() && o.args.is_empty() {
        return Err("exec: no process given (--process FILE or arguments)".into());
    }
    Ok(Command::Exec(id, Box::new(o)))
}

/// runc's `update` flags: `--resources/-r FILE` and the common single values.
fn update_opts(p: &mut lexopt::Parser) -> Result<Command, lexopt::Error> {
    let mut id = None;
    let mut file = None;
    let mut values = serde_json::json!({});
    while let Some(arg) = p.next()? {
        let (section, key) = match arg {
            Long("help") | Short('h') => return Err(help()),
            Long("resources") | Short('r') => {
                file = Some(p.value()?.into());
                continue;
            }
            Value(v) if id.is_none() => {
                id = Some(v.string()?);
                continue;
            }
            Long("memory") => ("memory", "limit"),
            Long("memory-reservation") => ("memory", "reservation"),
            Long("memory-swap") => ("memory", "swap"),
            Long("pids-limit") => ("pids", "limit"),
            Long("cpu-shares") => ("cpu", "shares"),
            Long("cpu-quota") => ("cpu", "quota"),
            Long("cpu-period") => ("cpu", "period"),
            Long("cpuset-cpus") => ("cpu", "cpus"),
            Long("cpuset-mems") => ("cpu", "mems"),
            Long("cpu-rt-period") => ("cpu", "realtimePeriod"),
            Long("cpu-rt-runtime") => ("cpu", "realtimeRuntime"),
            Long("blkio-weight") => ("blockIO", "weight"),
            _ => return Err(arg.unexpected()),
        };
        let raw = p.value()?.string()?;
        let value = if matches!(key, "cpus" | "mems") {
            serde_json::json!(raw)
        } else {
            serde_json::json!(raw.parse::<i64>().map_err(|_| {
                lexopt::Error::from(format!("update: {section}.{key}: {raw:?} is not a number"))
            })?)
        };
        values[section][key] = value;
    }
    let id = id.ok_or("update: missing container id")?;
    Ok(Command::Update(id, file, values))
}

fn format_json(p: &mut lexopt::Parser) -> Result<bool, lexopt::Error> {
    match p.value()?.string()?.as_str() {
        "json" => Ok(true),
        "table" => Ok(false),
        other => Err(format!("invalid format option {other:?}").into()),
    }
}

fn only_id(p: &mut lexopt::Parser) -> Result<String, lexopt::Error> {
    let mut id = None;
    while let Some(arg) = p.next()? {
        match arg {
            Long("help") | Short('h') => return Err(help()),
            Value(v) if id.is_none() => id = Some(v.string()?),
            _ => return Err(arg.unexpected()),
        }
    }
    id.ok_or_else(|| "missing container id".into())
}

fn create_opts(
    p: &mut lexopt::Parser,
    run: bool,
) -> Result<(String, CreateOpts, bool), lexopt::Error> {
    let mut o = CreateOpts::default();
    let mut id = None;
    let mut detach = false;
    while let Some(arg) = p.next()? {
        match arg {
            Long("help") | Short('h') => return Err(help()),
            Long("bundle") | Short('b') => o.bundle = Some(p.value()?.into()),
            Long("pid-file") => o.pid_file = Some(p.value()?.into()),
            Long("console-socket") => o.console_socket = Some(p.value()?.into()),
            Long("no-pivot") => o.no_pivot = true,
            Long("no-new-keyring") => o.no_new_keyring = true,
            Long("preserve-fds") => o.preserve_fds = p.value()?.parse()?,
            Long("detach") | Short('d') if run => detach = true,
            Value(v) if id.is_none() => id = Some(v.string()?),
            _ => return Err(arg.unexpected()),
        }
    }
    Ok((id.ok_or("missing container id")?, o, detach))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(args: &[&str]) -> Result<(Global, Command), String> {
        parse(args.iter().map(OsString::from).collect())
    }

    #[test]
    fn runc_style_command_lines_parse() {
        let (g, c) = parse_str(&[
            "--root",
            "/tmp/r",
            "--log=/tmp/l",
            "--log-format",
            "json",
            "create",
            "--bundle",
            "/b",
            "--pid-file=/p",
            "c1",
        ])
        .unwrap();
        assert_eq!(g.root, PathBuf::from("/tmp/r"));
        assert!(g.log_json);
        assert!(
            matches!(c, Command::Create(id, o) if id == "c1" && o.bundle.as_deref() == Some(std::path::Path::new("/b")))
        );
        let (_, c) = parse_str(&["kill", "--all", "c1", "9"]).unwrap();
        assert!(matches!(c, Command::Kill(id, s, true) if id == "c1" && s == "9"));
        let (_, c) = parse_str(&["delete", "-f", "c1"]).unwrap();
        assert!(matches!(c, Command::Delete(_, true)));
        let (_, c) = parse_str(&["run", "-d", "-b", "/b", "c1"]).unwrap();
        assert!(matches!(c, Command::Run(_, _, true)));
        assert!(parse_str(&["create", "--detach", "c1"]).is_err());
        assert!(parse_str(&["--log-format", "xml", "list"]).is_err());
    }

    #[test]
    fn help_is_asked_for_before_the_program_only() {
        assert!(matches!(parse_str(&["-h"]).unwrap().1, Command::Help(None)));
        let (_, c) = parse_str(&["--root", "/r", "exec", "--help"]).unwrap();
        assert!(matches!(c, Command::Help(Some(n)) if n == "exec"));
        // After the program, -h is the program's.
        let (_, c) = parse_str(&["exec", "c1", "ls", "-h"]).unwrap();
        assert!(matches!(c, Command::Exec(_, o) if o.args == ["ls", "-h"]));
        let (_, c) = parse_str(&["exec", "--cap", "CAP_KILL", "-g", "5", "c1", "sh"]).unwrap();
        assert!(
            matches!(c, Command::Exec(_, o) if o.caps == ["CAP_KILL"] && o.additional_gids == [5])
        );
        assert!(usage(Some("nosuch")).is_none());
    }
}
