//! `netjail top`: a full-screen view of the broker for an operator, who answers held calls
//! from it.
//!
//! Three panes: the sandboxes (a `status` every second on one connection), the held calls
//! (from a watch on a second connection, listed once at the start), and the feed of
//! decisions (newest last, the last [`FEED_LINES`](state::FEED_LINES)). Keys: Up/Down or
//! k/j select a held call, `y` grants it once, `a` grants it always (the broker writes the
//! rule to its overlay policy), `n` denies it once, `q`, Esc or Ctrl-C quit. The line
//! above the help says what the last answer did, or why it failed.
//!
//! When the broker goes away, the header says so in red, the held calls are cleared (their
//! ids belonged to that broker) and `top` reconnects every two seconds until it is back or
//! the operator quits. The terminal is restored on every way out: quit, error, SIGTERM or
//! SIGHUP, and panic.
//!
//! The drawing ([`render::render`]) and the keys ([`TopState::on_key`]) are pure functions
//! of a [`TopState`]; this module only connects them to the terminal and the broker.

use std::io::{self, IsTerminal};
use std::panic;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crossterm::event::{self as term_event, Event as TermEvent};
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use netjail_protocol::control::{GrantDuration, GrantScope};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use tokio::sync::mpsc as tokio_mpsc;

use super::{client_name, format, Control, OperatorError, Watch};

pub mod render;
pub mod state;

pub use state::{Action, TopState, Update};

/// How long after losing the broker `top` tries again.
const RECONNECT_EVERY: Duration = Duration::from_secs(2);

/// How long the UI waits for a key before it looks at the broker's news and redraws.
const FRAME: Duration = Duration::from_millis(100);

/// `netjail top`.
#[derive(Debug, Clone)]
pub struct TopOptions {
    /// The control socket.
    pub control: PathBuf,
}

/// Why `netjail top` could not run or ended badly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TopError {
    /// The broker could not be reached at the start.
    #[error(transparent)]
    Operator(#[from] OperatorError),
    /// Standard input or output is not a terminal.
    #[error("netjail top needs a terminal (use netjail watch or netjail pending in scripts)")]
    NotATerminal,
    /// The terminal failed.
    #[error("terminal: {0}")]
    Terminal(#[source] io::Error),
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] io::Error),
    /// A part of `top` panicked (its message was printed above).
    #[error("netjail top stopped after an internal error (see above)")]
    Panicked,
}

/// Runs `netjail top` until the operator quits.
///
/// Both connections are made before the terminal is touched, so that a wrong path or a
/// refused operator is a plain one-line error.
///
/// # Errors
///
/// See [`TopError`].
pub fn run(opts: &TopOptions) -> Result<(), TopError> {
    if !io::stdout().is_terminal() || !io::stdin().is_terminal() {
        return Err(TopError::NotATerminal);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(TopError::Runtime)?;
    let path = opts.control.as_path();

    // The watch first, then the list: every change after the list was made is on the
    // watch, so the list plus the watch's events is the truth.
    let (control, watch, pending, status) = runtime.block_on(async {
        let watch = Control::connect(path, &client_name("top"))
            .await?
            .watch(true)
            .await?;
        let mut control = Control::connect(path, &client_name("top")).await?;
        let pending = control.pending().await?;
        let status = control.status().await?;
        Ok::<_, OperatorError>((control, watch, pending, status))
    })?;

    let mut state = TopState::new(Instant::now());
    state.tick(Instant::now(), format::now_ms());
    state.apply(Update::Status(status.0, status.1));
    state.apply(Update::Pending(pending));

    let (updates_tx, updates) = mpsc::channel();
    let (actions, actions_rx) = tokio_mpsc::unbounded_channel();
    runtime.spawn(watch_task(path.to_path_buf(), watch, updates_tx.clone()));
    runtime.spawn(command_task(
        path.to_path_buf(),
        control,
        actions_rx,
        updates_tx.clone(),
    ));
    runtime.spawn(signal_task(updates_tx));

    let result = with_terminal(|terminal| ui_loop(terminal, &mut state, &updates, &actions));
    runtime.shutdown_background();
    result
}

/// Set by the panic hook, so that the UI stops when a task panics (the hook has already
/// given the terminal back by then).
static PANICKED: AtomicBool = AtomicBool::new(false);

fn restore_terminal() {
    let _ = disable_raw_mode();
    let _ = crossterm::execute!(io::stdout(), LeaveAlternateScreen, crossterm::cursor::Show);
}

/// Gives the terminal back when dropped, whichever way `top` ends.
struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

type Term = Terminal<CrosstermBackend<io::Stdout>>;

/// Runs `body` in raw mode on the alternate screen, with a panic hook that restores the
/// terminal before the panic message is printed; restores the terminal and the previous
/// hook afterwards.
fn with_terminal(body: impl FnOnce(&mut Term) -> Result<(), TopError>) -> Result<(), TopError> {
    let previous = Arc::new(panic::take_hook());
    {
        let previous = Arc::clone(&previous);
        panic::set_hook(Box::new(move |info| {
            PANICKED.store(true, Ordering::SeqCst);
            restore_terminal();
            previous(info);
        }));
    }
    let result = (|| {
        let _guard = TerminalGuard;
        enable_raw_mode().map_err(TopError::Terminal)?;
        crossterm::execute!(io::stdout(), EnterAlternateScreen).map_err(TopError::Terminal)?;
        let mut terminal =
            Terminal::new(CrosstermBackend::new(io::stdout())).map_err(TopError::Terminal)?;
        terminal.clear().map_err(TopError::Terminal)?;
        body(&mut terminal)
    })();
    // Drop our hook (it holds the other reference) and put the previous one back.
    drop(panic::take_hook());
    if let Ok(previous) = Arc::try_unwrap(previous) {
        panic::set_hook(previous);
    }
    result
}

fn ui_loop(
    terminal: &mut Term,
    state: &mut TopState,
    updates: &mpsc::Receiver<Update>,
    actions: &tokio_mpsc::UnboundedSender<Action>,
) -> Result<(), TopError> {
    loop {
        if PANICKED.load(Ordering::SeqCst) {
            return Err(TopError::Panicked);
        }
        state.tick(Instant::now(), format::now_ms());
        terminal
            .draw(|frame| render::render(frame, state))
            .map_err(TopError::Terminal)?;

        let mut todo = Vec::new();
        if term_event::poll(FRAME).map_err(TopError::Terminal)? {
            if let TermEvent::Key(key) = term_event::read().map_err(TopError::Terminal)? {
                todo.extend(state.on_key(key));
            }
        }
        while let Ok(update) = updates.try_recv() {
            todo.extend(state.apply(update));
        }
        for action in todo {
            if action == Action::Quit {
                return Ok(());
            }
            // The command task ends only with the runtime, after this loop.
            let _ = actions.send(action);
        }
    }
}

/// Streams the watch's events to the UI; when the broker goes away, says so and reconnects.
async fn watch_task(path: PathBuf, first: Watch, updates: mpsc::Sender<Update>) {
    let mut watch = Some(first);
    loop {
        if let Some(mut events) = watch.take() {
            let reason = loop {
                match events.next().await {
                    Ok(event) => {
                        if updates.send(Update::Event(event)).is_err() {
                            return;
                        }
                    }
                    Err(e) => break e.to_string(),
                }
            };
            if updates.send(Update::WatchDown(reason)).is_err() {
                return;
            }
        }
        tokio::time::sleep(RECONNECT_EVERY).await;
        let update = match connect_watch(&path).await {
            Ok(events) => {
                watch = Some(events);
                Update::WatchUp
            }
            Err(e) => Update::WatchDown(e.to_string()),
        };
        if updates.send(update).is_err() {
            return;
        }
    }
}

async fn connect_watch(path: &Path) -> Result<Watch, OperatorError> {
    Control::connect(path, &client_name("top"))
        .await?
        .watch(true)
        .await
}

/// Whether the connection is no good after this error (the broker's own answers, like
/// "not pending", leave it usable).
fn breaks_connection(e: &OperatorError) -> bool {
    !matches!(
        e,
        OperatorError::NotPending { .. }
            | OperatorError::Refused { .. }
            | OperatorError::Broker { .. }
    )
}

/// The connection for requests, made again when it broke.
async fn ensure<'a>(
    path: &Path,
    slot: &'a mut Option<Control>,
) -> Result<&'a mut Control, OperatorError> {
    if slot.is_none() {
        *slot = Some(Control::connect(path, &client_name("top")).await?);
    }
    slot.as_mut().ok_or(OperatorError::Closed)
}

/// Refreshes the status every second, and carries out the operator's answers.
async fn command_task(
    path: PathBuf,
    control: Control,
    mut actions: tokio_mpsc::UnboundedReceiver<Action>,
    updates: mpsc::Sender<Update>,
) {
    let mut slot = Some(control);
    let mut tick = tokio::time::interval(state::STATUS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tick.tick().await; // the first tick is now, and the status was just fetched
    loop {
        let update = tokio::select! {
            _ = tick.tick() => {
                let result = match ensure(&path, &mut slot).await {
                    Ok(control) => control.status().await,
                    Err(e) => Err(e),
                };
                match result {
                    Ok((report, sandboxes)) => Update::Status(report, sandboxes),
                    Err(e) => {
                        if breaks_connection(&e) {
                            slot = None;
                        }
                        Update::StatusFailed(e.to_string())
                    }
                }
            }
            action = actions.recv() => {
                let Some(action) = action else { return };
                let mut news = perform(&path, &mut slot, action).await;
                match news.pop() {
                    Some(last) => {
                        for update in news {
                            if updates.send(update).is_err() {
                                return;
                            }
                        }
                        last
                    }
                    None => continue,
                }
            }
        };
        if updates.send(update).is_err() {
            return;
        }
    }
}

/// Carries out one action; the updates say how it went.
async fn perform(path: &Path, slot: &mut Option<Control>, action: Action) -> Vec<Update> {
    let (held, result, verb) = match action {
        Action::Quit => return Vec::new(),
        Action::RefreshPending => {
            let result = match ensure(path, slot).await {
                Ok(control) => control.pending().await,
                Err(e) => Err(e),
            };
            return match result {
                Ok(list) => vec![Update::Pending(list)],
                Err(e) => {
                    if breaks_connection(&e) {
                        *slot = None;
                    }
                    vec![Update::Done(Err(format!(
                        "cannot list the held calls: {e}"
                    )))]
                }
            };
        }
        Action::Grant { held, duration } => {
            let result = match ensure(path, slot).await {
                Ok(control) => control.grant(held.id, duration, GrantScope::Sandbox).await,
                Err(e) => Err(e),
            };
            let verb = match duration {
                GrantDuration::Always => "grant always",
                _ => "grant",
            };
            (held, result, verb)
        }
        Action::Deny { held } => {
            let result = match ensure(path, slot).await {
                Ok(control) => control.deny(held.id, false, GrantScope::Sandbox).await,
                Err(e) => Err(e),
            };
            (held, result, "deny")
        }
    };
    match result {
        Ok(resolution) => vec![
            Update::Ended(held.id),
            Update::Done(Ok(format::resolution_line(&resolution, Some(&held)))),
        ],
        Err(OperatorError::NotPending { message }) => vec![
            Update::Ended(held.id),
            Update::Done(Err(format!("{} is no longer pending: {message}", held.id))),
        ],
        Err(e) => {
            if breaks_connection(&e) {
                *slot = None;
            }
            vec![Update::Done(Err(format!("{verb} {} failed: {e}", held.id)))]
        }
    }
}

/// SIGTERM, SIGHUP and SIGINT end `top` like `q` does, so that the terminal is restored.
async fn signal_task(updates: mpsc::Sender<Update>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut signals = Vec::new();
    for kind in [
        SignalKind::terminate(),
        SignalKind::hangup(),
        SignalKind::interrupt(),
    ] {
        if let Ok(s) = signal(kind) {
            signals.push(s);
        }
    }
    if signals.is_empty() {
        return;
    }
    any_signal(&mut signals).await;
    let _ = updates.send(Update::Quit);
}

/// Resolves when any of the signals arrives.
async fn any_signal(signals: &mut [tokio::signal::unix::Signal]) {
    std::future::poll_fn(|cx| {
        for s in signals.iter_mut() {
            if s.poll_recv(cx).is_ready() {
                return std::task::Poll::Ready(());
            }
        }
        std::task::Poll::Pending
    })
    .await
}
