//! A child process spoken to one line at a time, as the tests drive an instrumented "function"
//! (`function_sdk.py --serve`, the `rust-function` example): it prints `ready` once set up, then
//! answers each line written to its stdin with one line on its stdout.

#![allow(dead_code)]

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// See the module documentation. Dropping it kills the child.
pub struct LineProcess {
    name: String,
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl LineProcess {
    /// Spawns `command` (stdin and stdout piped, stderr inherited) and waits up to `within` for
    /// its `ready` line; `name` names it in failure messages.
    pub async fn start(name: &str, mut command: Command, within: Duration) -> LineProcess {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{name} does not start: {e}"));
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let ready = tokio::time::timeout(within, stdout.next_line())
            .await
            .unwrap_or_else(|_| panic!("{name} is not ready within {within:?}"))
            .expect("stdout");
        assert_eq!(ready.as_deref(), Some("ready"), "{name}");
        LineProcess {
            name: name.to_owned(),
            child,
            stdin,
            stdout,
        }
    }

    /// Writes `line` and returns the answer line, waiting up to `within`.
    pub async fn ask(&mut self, line: &str, within: Duration) -> String {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write");
        self.stdin.flush().await.expect("flush");
        tokio::time::timeout(within, self.stdout.next_line())
            .await
            .unwrap_or_else(|_| panic!("{} gave no answer to {line:?} in {within:?}", self.name))
            .expect("stdout")
            .unwrap_or_else(|| panic!("{} exited before answering {line:?}", self.name))
    }

    /// Closes its stdin and waits up to `within` for it to exit (`None` if it did not).
    pub async fn stop(mut self, within: Duration) -> Option<ExitStatus> {
        drop(self.stdin);
        tokio::time::timeout(within, self.child.wait())
            .await
            .ok()
            .map(|r| r.expect("wait"))
    }
}
