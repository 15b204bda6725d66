//! Raw system calls of the broker, and the only module of the crate with `unsafe` code: each
//! `unsafe` block says why it is sound (`SAFETY:`), and every fd the kernel returns is wrapped
//! in an [`OwnedFd`](std::os::fd::OwnedFd) at once. The rest of the crate calls these by
//! `sys::name`; the files say what the calls are about:
//!
//! - [`notif`]: the seccomp listener (receive, reply, `CONTINUE`, `ADDFD`, `ID_VALID`) and the
//!   receiver's waits on it;
//! - [`memory`]: the caller's memory (its arguments) and the pages it shares with the broker;
//! - [`process`]: pidfds of callers, their descriptors (`pidfd_getfd`), signals, the broker's ids;
//! - [`identity`]: a thread taking a caller's ids, groups, capabilities; umask; namespaces;
//! - [`task`]: what a caller's credentials allow (`rights_within_limit`);
//! - [`path`]: paths resolved in a caller's root (`openat2`);
//! - [`unixfile`]: which file a unix socket is bound to, and where;
//! - [`scaffold`]: a thread of its own mount namespace whose walks land in a chosen directory;
//! - [`userns`]: the same in a forked child of a user namespace of the broker's own, for a
//!   broker without `CAP_SYS_ADMIN`;
//! - [`socket`]: the socket calls the broker performs on byte buffers, and what it reads of a
//!   socket;
//! - [`filter`]: classic BPF socket filters;
//! - [`own`]: the broker's own descriptors (`kcmp`, sockets from the service manager);
//! - [`events`]: `epoll`, `timerfd`, and the signal that interrupts a blocked call.
#![allow(unsafe_code)]

use std::io;

mod events;
mod filter;
mod identity;
mod memory;
mod notif;
mod own;
mod path;
mod process;
mod scaffold;
mod socket;
mod task;
mod unixfile;
mod userns;

pub(crate) use events::*;
pub(crate) use filter::*;
pub(crate) use identity::*;
pub(crate) use memory::*;
pub(crate) use notif::*;
pub(crate) use own::*;
pub(crate) use path::*;
pub(crate) use process::*;
pub(crate) use scaffold::{enter_directory, enter_scaffold};
pub use socket::*;
pub(crate) use task::rights_within_limit;
pub(crate) use unixfile::{
    enter_directories, has_capability, same_mount_and_directory, stat_entry, stat_fd,
    unix_diag_file, unix_socket_file, FileId,
};
#[cfg(test)]
pub(crate) use userns::new_user_namespace_for_tests;
pub(crate) use userns::{
    bind_in_child, prepare_user_namespace, user_namespace, ChildBind, ChildStep,
};

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn cvt_long(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}
