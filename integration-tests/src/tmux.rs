//! Driving a terminal program as a person would: it runs in a tmux pane of a known size,
//! keys are typed into it, and the screen is read back as text.
//!
//! Each [`Tmux`] has its own tmux server on a socket in its own temporary directory
//! (`tmux -S`), started with no configuration file; the user's tmux server is never
//! touched. Dropping it kills that server only. The pane stays on the screen after its
//! program exits, so that the last screen and the exit status can still be read.
//!
//! ```no_run
//! use std::time::Duration;
//! use netjail_integration_tests::tmux::Tmux;
//!
//! let tui = Tmux::start(&["netjail", "top", "--control", "/tmp/c.sock"], &[], 120, 40);
//! tui.wait_for("Pending", Duration::from_secs(5)).expect("top is up");
//! tui.send_keys("q");
//! assert_eq!(tui.wait_exit(Duration::from_secs(5)), Some(0));
//! ```

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::TempDir;

/// The name of the one session each server holds.
const SESSION: &str = "nj";

/// A program running in a tmux pane on a private tmux server.
pub struct Tmux {
    dir: TempDir,
}

impl Tmux {
    /// True when a `tmux` binary runs here.
    pub fn available() -> bool {
        Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Starts `command` (program and arguments, run directly, not through a shell) in a
    /// pane of `width` x `height` cells, with `env` added to its environment.
    ///
    /// Panics when tmux cannot be started (see [`Tmux::available`]).
    pub fn start(command: &[&str], env: &[(&str, &str)], width: u16, height: u16) -> Tmux {
        assert!(!command.is_empty(), "Tmux::start needs a program");
        let dir = TempDir::new();
        let config = dir.path().join("tmux.conf");
        // No status bar: the pane is the whole screen. The pane outlives its program and
        // keeps its last screen as it was (no "Pane is dead" line, which scrolls it; `-q`
        // for tmux before 3.3, which lacks the option).
        std::fs::write(
            &config,
            "set -g status off\nset -g remain-on-exit on\nset -gq remain-on-exit-format ''\n",
        )
        .expect("write tmux.conf");
        let tmux = Tmux { dir };
        let mut args: Vec<String> = vec![
            "-f".into(),
            config.display().to_string(),
            "new-session".into(),
            "-d".into(),
            "-s".into(),
            SESSION.into(),
            "-x".into(),
            width.to_string(),
            "-y".into(),
            height.to_string(),
        ];
        for (key, value) in env {
            args.push("-e".into());
            args.push(format!("{key}={value}"));
        }
        // The program runs under a shell that writes its exit status to a file: tmux 3.3
        // sometimes marks a pane dead on the pty's end of file before it has the status, and
        // then never reports it (`#{pane_dead_status}` stays empty).
        let status_file = tmux.dir.path().join("exit-status");
        args.push("--".into());
        args.push("sh".into());
        args.push("-c".into());
        args.push(format!(
            "\"$@\"; s=$?; echo $s > '{}'; exit $s",
            status_file.display()
        ));
        args.push("sh".into());
        args.extend(command.iter().map(|s| s.to_string()));
        let out = tmux.tmux(&args);
        assert!(
            out.status.success(),
            "tmux new-session {command:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tmux
    }

    /// The server's socket.
    fn socket(&self) -> std::path::PathBuf {
        self.dir.path().join("tmux.sock")
    }

    /// Runs `tmux -S <own socket> ARGS`.
    fn tmux<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Output {
        Command::new("tmux")
            .arg("-S")
            .arg(self.socket())
            .args(args)
            // A test run inside tmux must not reach the outer server by accident.
            .env_remove("TMUX")
            .env_remove("TMUX_PANE")
            .output()
            .unwrap_or_else(|e| panic!("cannot run tmux: {e}"))
    }

    /// Types `keys`, as tmux's `send-keys` reads one argument: a key name (`Enter`,
    /// `Escape`, `Up`, `C-c`, `q`) or, when it names no key, the text itself.
    pub fn send_keys(&self, keys: &str) {
        let out = self.tmux(&["send-keys", "-t", SESSION, keys]);
        assert!(
            out.status.success(),
            "tmux send-keys {keys:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Types `text` literally, even when it spells a key name.
    pub fn send_text(&self, text: &str) {
        let out = self.tmux(&["send-keys", "-t", SESSION, "-l", text]);
        assert!(
            out.status.success(),
            "tmux send-keys -l {text:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The screen as text, one line per row (`capture-pane -p`).
    pub fn capture(&self) -> String {
        let out = self.tmux(&["capture-pane", "-p", "-t", SESSION]);
        assert!(
            out.status.success(),
            "tmux capture-pane: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the screen shows `text`, and returns that screen; after `timeout`, the
    /// error holds the last screen.
    pub fn wait_for(&self, text: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.capture();
            if screen.contains(text) {
                return Ok(screen);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "`{text}` not on the screen after {timeout:?}; the screen:\n{screen}"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The program's exit status once it has exited (`None` while it runs); a program killed
    /// by a signal reports 128 + the signal's number, as a shell does.
    pub fn exit_status(&self) -> Option<i32> {
        std::fs::read_to_string(self.dir.path().join("exit-status"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Waits up to `timeout` for the program to exit and returns its exit status.
    pub fn wait_exit(&self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // Only this fixture's own server, by its own socket; the directory goes after.
        let _ = self.tmux(&["kill-server"]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_into_a_program_and_reads_its_screen() {
        if !Tmux::available() {
            crate::skip(
                "types_into_a_program_and_reads_its_screen",
                "no tmux here (apt-get install tmux)",
            );
            return;
        }
        let tui = Tmux::start(
            &[
                "sh",
                "-c",
                "echo ready:$NJ_GREETING; read x; echo got:$x; sleep 5",
            ],
            &[("NJ_GREETING", "hello")],
            60,
            10,
        );
        tui.wait_for("ready:hello", Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(tui.exit_status(), None, "still running");
        tui.send_text("Enter");
        tui.send_keys("Enter");
        let screen = tui
            .wait_for("got:Enter", Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(screen.lines().count() <= 10, "{screen}");
        let e = tui
            .wait_for("never shown", Duration::from_millis(200))
            .expect_err("absent");
        assert!(e.contains("got:Enter"), "the error holds the screen: {e}");
    }

    #[test]
    fn the_pane_keeps_the_exit_status_and_the_server_goes_with_the_fixture() {
        if !Tmux::available() {
            crate::skip(
                "the_pane_keeps_the_exit_status_and_the_server_goes_with_the_fixture",
                "no tmux here (apt-get install tmux)",
            );
            return;
        }
        // The program waits for a key before it exits, as a terminal UI does: tmux may drop
        // what a program wrote in the instant before its pty closed (seen about once in ten
        // runs of `echo bye; exit 3`), which is tmux's race, not the fixture's.
        let tui = Tmux::start(&["sh", "-c", "echo bye; read x; exit 3"], &[], 60, 10);
        assert!(tui.wait_for("bye", Duration::from_secs(10)).is_ok());
        tui.send_keys("Enter");
        assert_eq!(tui.wait_exit(Duration::from_secs(10)), Some(3));
        assert!(
            tui.capture().contains("bye"),
            "the screen stays: {}",
            tui.capture()
        );
        let socket = tui.socket();
        assert!(socket.exists());
        drop(tui);
        assert!(!socket.exists(), "the server and its socket are gone");
    }
}
