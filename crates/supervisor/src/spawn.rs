//! An instance's process: its `sh -c` line and environment from a [`ProcessSpec`], started
//! through [`crate::command::Command`] like every other child of berth, but without the death
//! signal: instances outlive the daemon (see `pipes.rs` and `adopt.rs`).

use std::process::Stdio;

use crate::command::Command;
use crate::confine::Confinement;
use crate::pipes::WriteEnds;
use crate::types::ProcessSpec;

/// The `sh -c` argument: `exec COMMAND` when that is safe, so no shell stays in between.
pub(crate) fn shell_line(command: &str) -> String {
    if is_simple(command) {
        format!("exec {command}")
    } else {
        command.to_owned()
    }
}

/// A single simple command: no list/pipe/subshell operators outside quotes, and a first word
/// that is neither an assignment nor a shell keyword or builtin that `exec` would break.
fn is_simple(command: &str) -> bool {
    let command = command.trim();
    let Some(first) = command.split_whitespace().next() else {
        return false;
    };
    const NOT_EXECABLE: &[&str] = &[
        "if", "then", "else", "elif", "fi", "case", "esac", "for", "while", "until", "do", "done",
        "function", "!", "{", "}", "[[", "exec", "cd", "export", "set", "unset", ".", "source",
        "eval", "time", "trap", "ulimit", "umask", "wait", "exit", "readonly",
    ];
    if NOT_EXECABLE.contains(&first) || first.contains('=') {
        return false;
    }
    let (mut single, mut double, mut escaped) = (false, false, false);
    for c in command.chars() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if !single => escaped = true,
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            ';' | '&' | '|' | '\n' | '(' | ')' | '`' if !single && !double => return false,
            _ => {}
        }
    }
    !single && !double && !escaped
}

/// The command for one attempt, confined as `confinement` says (the spec's, with the
/// instance's cgroup and rlimit fallbacks added), its stdout and stderr the instance's log
/// pipes. It outlives the daemon: a restart or an upgrade of berth adopts it.
pub(crate) fn command(spec: &ProcessSpec, confinement: Confinement, logs: WriteEnds) -> Command {
    Command::shell(shell_line(&spec.command))
        .current_dir(&spec.cwd)
        .envs(&spec.env)
        .env("PORT", spec.port.to_string())
        .env("BERTH_APP", &spec.app)
        .env("BERTH_SERVICE", &spec.service)
        .env("BERTH_RELEASE", &spec.release)
        .env("BERTH_INSTANCE", spec.instance.to_string())
        .stdout(Stdio::from(logs.out))
        .stderr(Stdio::from(logs.err))
        .confine(confinement)
        .outlive_daemon()
}

#[cfg(test)]
mod tests {
    use super::shell_line;

    #[test]
    fn exec_only_simple_commands() {
        let check = |cmd: &str, exec: bool| {
            let want = if exec {
                format!("exec {cmd}")
            } else {
                cmd.to_owned()
            };
            assert_eq!(shell_line(cmd), want);
        };
        check("target/release/hello", true);
        check("python3 web.py --port 80", true);
        check("python3 -c 'import os; print(1)'", true);
        check("node \"a;b\"", true);
        check("cd x && ./run", false);
        check("a; b", false);
        check("a | b", false);
        check("FOO=1 ./run", false);
        check("exec ./run", false);
        check("(./run)", false);
        check("sleep 1 &", false);
        check("", false);
    }
}
