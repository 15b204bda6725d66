//! The policy a bench confines its children with, and where a daemon broker would listen.

use std::path::PathBuf;

/// The text of a policy named `name` that allows TCP connects to `127.0.0.1:PORT` and denies
/// everything else.
pub fn allow_one_port(name: &str, port: u16) -> String {
    format!(
        "name = \"{name}\"\ndefault = \"deny\"\n\n[[allow]]\nconnect = [\"tcp://127.0.0.1:{port}\"]\n"
    )
}

/// The policy in a temporary file, removed on drop.
pub struct PolicyFile(pub PathBuf);

impl PolicyFile {
    pub fn write(allowed_port: u16) -> Result<PolicyFile, String> {
        PolicyFile::with_text("", &allow_one_port("bench", allowed_port))
    }

    /// `text` in `nj-bench[-TAG]-PID.toml` in the temporary directory.
    pub fn with_text(tag: &str, text: &str) -> Result<PolicyFile, String> {
        let tag = if tag.is_empty() {
            String::new()
        } else {
            format!("-{tag}")
        };
        let path = std::env::temp_dir().join(format!("nj-bench{tag}-{}.toml", std::process::id()));
        std::fs::write(&path, text).map_err(|e| format!("write {}: {e}", path.display()))?;
        Ok(PolicyFile(path))
    }
}

impl Drop for PolicyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Where an embedded broker would be avoided: a daemon listening at the default socket.
pub const DEFAULT_BROKER: &str = "/run/netjail/broker.sock";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub fn the_policy_allowing_one_port() {
        assert_eq!(
            allow_one_port("bench-flood", 4321),
            "name = \"bench-flood\"\ndefault = \"deny\"\n\n\
             [[allow]]\nconnect = [\"tcp://127.0.0.1:4321\"]\n"
        );
    }
}
