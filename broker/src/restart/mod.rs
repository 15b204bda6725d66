//! A broker started after another one takes over its sandboxes without losing a call
//! (`docs/restart.md`): [`journal`] records the calls each receiver takes, [`fdstore`] keeps
//! the listeners with the service manager while no broker runs.

pub(crate) mod fdstore;
pub(crate) mod journal;
