//! Helpers of the broker's unit tests.

use std::path::PathBuf;

/// A path under the temporary directory named after `what`, `tag`, this process and this
/// thread, with nothing there (an earlier run's leftovers are removed).
pub(crate) fn fresh_dir(what: &str, tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "netjail-{what}-{tag}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}
