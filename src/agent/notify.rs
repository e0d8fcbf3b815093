//! Telling the application its files changed: a signal to a process (found by
//! pid file or by name; the pod needs `shareProcessNamespace: true` for a
//! sidecar to see the application), and/or a command run through `sh -c`.

use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// What to do when the files change.
#[derive(Clone, Debug, Default)]
pub struct Notify {
    pub signal: Option<SignalTarget>,
    /// Run through `sh -c`; its exit status is logged.
    pub command: Option<String>,
    /// How long the command may run before it is killed.
    pub command_timeout: Duration,
}

#[derive(Clone, Debug)]
pub struct SignalTarget {
    pub signal: Signal,
    pub process: Process,
}

#[derive(Clone, Debug)]
pub enum Process {
    /// A file holding the process id.
    PidFile(PathBuf),
    /// Every process whose name (`/proc/PID/comm`, or the file name of its
    /// first argument) is this.
    Name(String),
}

/// `HUP`, `SIGHUP`, `hup` or a number such as `1`.
pub fn parse_signal(text: &str) -> Result<Signal, String> {
    let upper = text.trim().to_ascii_uppercase();
    if let Ok(number) = upper.parse::<i32>() {
        return Signal::try_from(number).map_err(|_| format!("{text:?} is not a signal number"));
    }
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>()
        .map_err(|_| format!("{text:?} is not a signal name (HUP, USR1, TERM, ...)"))
}

impl Notify {
    pub fn is_empty(&self) -> bool {
        self.signal.is_none() && self.command.is_none()
    }

    /// Signals and runs the command; returns what went wrong, if anything.
    pub async fn changed(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(target) = &self.signal {
            match target.pids() {
                Ok(pids) if pids.is_empty() => {
                    problems.push(format!(
                        "no process {} to signal",
                        target.process.describe()
                    ));
                }
                Ok(pids) => {
                    for pid in pids {
                        match kill(Pid::from_raw(pid), target.signal) {
                            Ok(()) => tracing::info!(pid, signal = %target.signal, "signalled"),
                            Err(e) => {
                                problems.push(format!("signal {} to pid {pid}: {e}", target.signal))
                            }
                        }
                    }
                }
                Err(e) => problems.push(e),
            }
        }
        if let Some(command) = &self.command
            && let Err(e) = self.run(command).await
        {
            problems.push(e);
        }
        problems
    }

    async fn run(&self, command: &str) -> Result<(), String> {
        let child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .kill_on_drop(true)
            .status();
        match tokio::time::timeout(self.command_timeout, child).await {
            Err(_) => Err(format!(
                "the command did not finish within {:?} and was killed",
                self.command_timeout
            )),
            Ok(Err(e)) => Err(format!("the command could not start: {e}")),
            Ok(Ok(status)) if status.success() => {
                tracing::info!("command ran");
                Ok(())
            }
            Ok(Ok(status)) => Err(format!("the command failed: {status}")),
        }
    }
}

impl SignalTarget {
    fn pids(&self) -> Result<Vec<i32>, String> {
        match &self.process {
            Process::PidFile(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("pid file {}: {e}", path.display()))?;
                let pid: i32 = text
                    .trim()
                    .parse()
                    .ok()
                    .filter(|pid| *pid > 0)
                    .ok_or_else(|| format!("pid file {} holds no process id", path.display()))?;
                Ok(vec![pid])
            }
            Process::Name(name) => Ok(processes_named(name)),
        }
    }
}

impl Process {
    fn describe(&self) -> String {
        match self {
            Process::PidFile(path) => format!("from pid file {}", path.display()),
            Process::Name(name) => format!("named {name:?}"),
        }
    }
}

/// Pids (other than ours) whose `comm` or first argument's file name is `name`.
fn processes_named(name: &str) -> Vec<i32> {
    let own = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|pid| *pid != own)
        .filter(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
            let argv0 = String::from_utf8_lossy(argv0);
            let base = argv0.rsplit('/').next().unwrap_or_default();
            comm.trim_end() == name || base == name
        })
        .collect();
    pids.sort_unstable();
    pids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(parse_signal("HUP"), Ok(Signal::SIGHUP));
        assert_eq!(parse_signal("sigusr1"), Ok(Signal::SIGUSR1));
        assert_eq!(parse_signal("15"), Ok(Signal::SIGTERM));
        assert!(parse_signal("BOGUS").is_err());
        assert!(parse_signal("999").is_err());
    }
}
