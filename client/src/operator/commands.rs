//! The operator commands of `netjail`: `pending`, `grant`, `deny`, `watch`, `status`,
//! `metrics`. Each one writes its output to the writers it is given, so that tests read what
//! a person would.
//!
//! A closed output (`netjail watch | head -1`) ends a command quietly with success.

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

use netjail_protocol::control::{Event, GrantDuration, GrantScope, PendingInfo, RequestId};

use super::format;
use super::{client_name, Control, OperatorError};
use netjail_policy::format_duration as display;

/// Why an operator command failed; the message is one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// Talking to the broker failed.
    #[error(transparent)]
    Operator(#[from] OperatorError),
    /// `netjail pending --wait --timeout` ran out.
    #[error("no call held within {0}")]
    NothingHeld(String),
    /// The output could not be written.
    #[error("cannot write the output: {0}")]
    Output(io::Error),
    /// A value could not be written as JSON.
    #[error("cannot write JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// `netjail reload`: some file was rejected or some sandbox refused the new policy (the
    /// report says which; what parsed was put in force).
    #[error("{0} of the reload failed (see above); the old rules stay for those")]
    ReloadFailed(String),
    /// The output was closed by its reader; the public functions turn it into success.
    #[error("the output was closed")]
    OutputClosed,
}

impl From<io::Error> for CommandError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::BrokenPipe {
            CommandError::OutputClosed
        } else {
            CommandError::Output(e)
        }
    }
}

/// A closed output is the reader's way to say it has seen enough.
fn quiet_when_closed(result: Result<(), CommandError>) -> Result<(), CommandError> {
    match result {
        Err(CommandError::OutputClosed) => Ok(()),
        other => other,
    }
}

/// Writes one line and flushes it, so that a reader sees each line as it comes.
fn line(out: &mut impl Write, text: &str) -> Result<(), CommandError> {
    out.write_all(text.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// `netjail pending`.
#[derive(Debug, Clone)]
pub struct PendingOptions {
    /// The control socket.
    pub control: PathBuf,
    /// One JSON object per line instead of a table.
    pub json: bool,
    /// When nothing is held, wait for the first held call.
    pub wait: bool,
    /// How long `wait` waits; `None` is for ever.
    pub timeout: Option<Duration>,
}

/// Lists the held calls. With nothing held: says `no calls held` on `err` and succeeds, or
/// with `wait` watches (which makes this operator present, so that calls are held for it)
/// and prints the first call held.
///
/// # Errors
///
/// [`CommandError::NothingHeld`] when `timeout` runs out; the broker's errors.
pub async fn pending(
    opts: &PendingOptions,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<(), CommandError> {
    quiet_when_closed(pending_inner(opts, out, err).await)
}

async fn pending_inner(
    opts: &PendingOptions,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<(), CommandError> {
    let mut control = Control::connect(&opts.control, &client_name("pending")).await?;
    let mut held = control.pending().await?;
    if held.is_empty() && opts.wait {
        let watch = control.watch(false);
        let first = async {
            let mut watch = watch.await?;
            loop {
                if let Event::Pending(info) = watch.next().await? {
                    return Ok::<_, OperatorError>(info);
                }
            }
        };
        let info = match opts.timeout {
            None => first.await?,
            Some(limit) => match tokio::time::timeout(limit, first).await {
                Ok(info) => info?,
                Err(_) => return Err(CommandError::NothingHeld(display(limit))),
            },
        };
        held.push(info);
    }
    if held.is_empty() {
        line(err, "no calls held")?;
        return Ok(());
    }
    print_pending(&held, opts.json, out)
}

fn print_pending(
    held: &[PendingInfo],
    json: bool,
    out: &mut impl Write,
) -> Result<(), CommandError> {
    if json {
        for h in held {
            line(out, &format::pending_json(h)?)?;
        }
    } else {
        out.write_all(format::pending_table(held).as_bytes())?;
        out.flush()?;
    }
    Ok(())
}

/// `netjail grant` and `netjail deny`.
#[derive(Debug, Clone)]
pub struct ResolveOptions {
    /// The control socket.
    pub control: PathBuf,
    /// The held call.
    pub id: RequestId,
    /// What to answer.
    pub answer: Answer,
    /// Whom a rule for later calls covers.
    pub scope: GrantScope,
}

/// An operator's answer to a held call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Let it through, and maybe later calls too.
    Grant(GrantDuration),
    /// Refuse it; with `always`, later calls too.
    Deny {
        /// Write a rule that refuses later calls to the same destination.
        always: bool,
    },
}

/// Grants or denies a held call and prints the outcome on one line
/// (`granted 7: connect tcp://127.0.0.1:8080 from sb-3 curl curl(412) < sh(400)`).
///
/// # Errors
///
/// The broker's errors, e.g. [`OperatorError::NotPending`] with the broker's message.
pub async fn resolve(opts: &ResolveOptions, out: &mut impl Write) -> Result<(), CommandError> {
    quiet_when_closed(resolve_inner(opts, out).await)
}

async fn resolve_inner(opts: &ResolveOptions, out: &mut impl Write) -> Result<(), CommandError> {
    let command = match opts.answer {
        Answer::Grant(_) => "grant",
        Answer::Deny { .. } => "deny",
    };
    let mut control = Control::connect(&opts.control, &client_name(command)).await?;
    // What the call was, for the line printed after; the answer does not repeat it.
    let held = control
        .pending()
        .await?
        .into_iter()
        .find(|h| h.id == opts.id);
    let resolution = match opts.answer {
        Answer::Grant(duration) => control.grant(opts.id, duration, opts.scope).await?,
        Answer::Deny { always } => control.deny(opts.id, always, opts.scope).await?,
    };
    line(out, &format::resolution_line(&resolution, held.as_ref()))
}

/// `netjail watch`.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// The control socket.
    pub control: PathBuf,
    /// One JSON object per line instead of text.
    pub json: bool,
    /// Held calls and their ends only, not every decision.
    pub pending_only: bool,
}

/// Prints events as they come, one line each, until the broker closes the connection or
/// the output is closed.
///
/// # Errors
///
/// [`OperatorError::Closed`] when the broker goes away (the end of a watch is always an
/// error: it is meant to last); the broker's other errors.
pub async fn watch(opts: &WatchOptions, out: &mut impl Write) -> Result<(), CommandError> {
    quiet_when_closed(watch_inner(opts, out).await)
}

async fn watch_inner(opts: &WatchOptions, out: &mut impl Write) -> Result<(), CommandError> {
    let control = Control::connect(&opts.control, &client_name("watch")).await?;
    let mut events = control.watch(!opts.pending_only).await?;
    loop {
        let event = events.next().await?;
        let text = if opts.json {
            format::event_json(&event)?
        } else {
            format::event_line(&event, format::now_ms())
        };
        line(out, &text)?;
    }
}

/// `netjail status`.
#[derive(Debug, Clone)]
pub struct StatusOptions {
    /// The control socket.
    pub control: PathBuf,
    /// One JSON object per line instead of text.
    pub json: bool,
}

/// Prints the broker's report and its sandboxes.
///
/// # Errors
///
/// The broker's errors.
pub async fn status(opts: &StatusOptions, out: &mut impl Write) -> Result<(), CommandError> {
    quiet_when_closed(status_inner(opts, out).await)
}

async fn status_inner(opts: &StatusOptions, out: &mut impl Write) -> Result<(), CommandError> {
    let mut control = Control::connect(&opts.control, &client_name("status")).await?;
    let (report, sandboxes) = control.status().await?;
    if opts.json {
        for text in format::status_json(&report, &sandboxes)? {
            line(out, &text)?;
        }
    } else {
        out.write_all(format::status_text(&report, &sandboxes).as_bytes())?;
        out.flush()?;
    }
    Ok(())
}

/// `netjail metrics`.
#[derive(Debug, Clone)]
pub struct MetricsOptions {
    /// The control socket.
    pub control: PathBuf,
}

/// Prints the broker's metrics in the Prometheus text format, as the broker wrote them.
///
/// # Errors
///
/// The broker's errors.
pub async fn metrics(opts: &MetricsOptions, out: &mut impl Write) -> Result<(), CommandError> {
    quiet_when_closed(metrics_inner(opts, out).await)
}

async fn metrics_inner(opts: &MetricsOptions, out: &mut impl Write) -> Result<(), CommandError> {
    let mut control = Control::connect(&opts.control, &client_name("metrics")).await?;
    let text = control.metrics().await?;
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// `netjail reload`.
#[derive(Debug, Clone)]
pub struct ReloadOptions {
    /// The control socket.
    pub control: PathBuf,
    /// One JSON object per line (`subject`, `outcome`, `detail`) instead of text.
    pub json: bool,
}

/// Asks the broker to read its policy files again and prints what it did, one line per file
/// or sandbox: `reloaded`, `unchanged`, `removed`, `rejected` (a file with a mistake: its old
/// rules stay), `refused` (a sandbox that cannot take the new policy: it keeps the old one),
/// `not-reloadable`.
///
/// # Errors
///
/// [`CommandError::ReloadFailed`] when anything was rejected or refused (after printing the
/// whole report); the broker's errors.
pub async fn reload(opts: &ReloadOptions, out: &mut impl Write) -> Result<(), CommandError> {
    quiet_when_closed(reload_inner(opts, out).await)
}

async fn reload_inner(opts: &ReloadOptions, out: &mut impl Write) -> Result<(), CommandError> {
    let mut control = Control::connect(&opts.control, &client_name("reload")).await?;
    let items = control.reload().await?;
    if items.is_empty() && !opts.json {
        line(
            out,
            "nothing to reload (no overlay files, no sandbox reads a policy file)",
        )?;
    }
    for item in &items {
        let text = if opts.json {
            serde_json::json!({
                "subject": item.subject,
                "outcome": item.outcome.as_str(),
                "detail": item.detail,
            })
            .to_string()
        } else if item.detail.is_empty() {
            format!("{}: {}", item.outcome.as_str(), item.subject)
        } else {
            format!(
                "{}: {}: {}",
                item.outcome.as_str(),
                item.subject,
                item.detail
            )
        };
        line(out, &text)?;
    }
    let failed = items.iter().filter(|i| i.outcome.failed()).count();
    if failed > 0 {
        let what = if failed == 1 {
            "1 item".to_string()
        } else {
            format!("{failed} items")
        };
        return Err(CommandError::ReloadFailed(what));
    }
    Ok(())
}
