//! What `netjail top` shows, and how keys and the broker's news change it: pure state
//! transitions, tested without a terminal or a broker.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use netjail_protocol::control::{
    Event, GrantDuration, PendingInfo, RequestId, SandboxInfo, StatusReport,
};

use crate::operator::format;

/// How many lines the decision feed keeps.
pub const FEED_LINES: usize = 500;

/// What a key asks the UI to do beyond changing the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Leave `netjail top`.
    Quit,
    /// Let a held call through.
    Grant {
        /// The held call, as it was shown.
        held: Box<PendingInfo>,
        /// Once or always.
        duration: GrantDuration,
    },
    /// Refuse a held call, once.
    Deny {
        /// The held call, as it was shown.
        held: Box<PendingInfo>,
    },
    /// Ask the broker for the held calls again (after the watch lagged).
    RefreshPending,
}

/// News for the UI, from the broker or the connections' tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// A fresh status answer.
    Status(StatusReport, Vec<SandboxInfo>),
    /// The status request failed.
    StatusFailed(String),
    /// A fresh list of the held calls (replaces what the UI had).
    Pending(Vec<PendingInfo>),
    /// An event of the watch.
    Event(Event),
    /// The watch is (again) connected; the broker resends the held calls.
    WatchUp,
    /// The watch connection is gone, with the reason.
    WatchDown(String),
    /// What came of an action: a line for the status bar, or an error.
    Done(Result<String, String>),
    /// A call this UI answered (or found no longer held) is gone; its event on the watch
    /// may come later or, from a broken watch, not at all.
    Ended(RequestId),
    /// A signal asks the UI to end.
    Quit,
}

/// How a feed line is coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedKind {
    /// A call allowed.
    Allowed,
    /// A call refused (or an error).
    Denied,
    /// A call held for an operator.
    Held,
    /// A held call ended.
    Resolved,
    /// Anything else (sandboxes coming and going, lag).
    Info,
}

/// One line of the decision feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedLine {
    /// The text, clock time first.
    pub text: String,
    /// Its colour.
    pub kind: FeedKind,
}

/// A held call and when this UI learned of it, so that its age and time left move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// As the broker told it.
    pub info: PendingInfo,
    /// When it was told.
    pub seen: Instant,
}

/// The line at the bottom with the outcome of the last action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// What to say.
    pub text: String,
    /// Said in red.
    pub error: bool,
}

/// The connection of the watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// Events arrive.
    Up,
    /// The broker went away; the UI reconnects.
    Down(String),
}

/// Everything `netjail top` shows; rendering is a pure function of it.
#[derive(Debug, Clone)]
pub struct TopState {
    /// The time ages are measured at (moved by [`TopState::tick`]).
    pub now: Instant,
    /// The last status report.
    pub report: Option<StatusReport>,
    /// The sandboxes of the last status answer.
    pub sandboxes: Vec<SandboxInfo>,
    /// Why the last status request failed, if it did.
    pub status_error: Option<String>,
    /// Held calls, oldest (lowest id) first.
    pub pending: Vec<Held>,
    /// The held call under the cursor (by id, so that it stays put as the list changes).
    pub selected: Option<RequestId>,
    /// The decision feed, oldest first, at most [`FEED_LINES`].
    pub feed: VecDeque<FeedLine>,
    /// The outcome of the last action.
    pub message: Option<Message>,
    /// The watch connection.
    pub link: Link,
    /// The wall clock in milliseconds since the epoch, for feed lines of events without a
    /// time of their own.
    pub wall_ms: u64,
    /// Calls seen ending lately, so that a list fetched before they ended does not bring
    /// them back.
    ended: VecDeque<RequestId>,
}

/// How many ended calls [`TopState`] remembers.
const ENDED_KEPT: usize = 1024;

impl TopState {
    /// An empty state at `now`.
    pub fn new(now: Instant) -> TopState {
        TopState {
            now,
            report: None,
            sandboxes: Vec::new(),
            status_error: None,
            pending: Vec::new(),
            selected: None,
            feed: VecDeque::new(),
            message: None,
            link: Link::Up,
            wall_ms: 0,
            ended: VecDeque::new(),
        }
    }

    /// Moves the clocks.
    pub fn tick(&mut self, now: Instant, wall_ms: u64) {
        self.now = now;
        self.wall_ms = wall_ms;
    }

    /// Milliseconds since `held` was told.
    pub fn elapsed_ms(&self, held: &Held) -> u64 {
        self.now
            .saturating_duration_since(held.seen)
            .as_millis()
            .try_into()
            .unwrap_or(u64::MAX)
    }

    /// The index of the selected held call.
    pub fn selected_index(&self) -> Option<usize> {
        let id = self.selected?;
        self.pending.iter().position(|h| h.info.id == id)
    }

    /// The selected held call.
    pub fn selected_call(&self) -> Option<&PendingInfo> {
        self.selected_index().map(|i| &self.pending[i].info)
    }

    fn say(&mut self, text: impl Into<String>, error: bool) {
        self.message = Some(Message {
            text: text.into(),
            error,
        });
    }

    fn move_selection(&mut self, down: bool) {
        if self.pending.is_empty() {
            self.selected = None;
            return;
        }
        let last = self.pending.len() - 1;
        let index = match self.selected_index() {
            None => 0,
            Some(i) if down => (i + 1).min(last),
            Some(i) => i.saturating_sub(1),
        };
        self.selected = Some(self.pending[index].info.id);
    }

    /// What a key does. Up/Down and k/j move the cursor; `y` grants the selected call once,
    /// `a` grants it always (a rule the broker writes to its overlay policy), `n` denies it
    /// once; `q`, Esc and Ctrl-C quit.
    pub fn on_key(&mut self, key: KeyEvent) -> Option<Action> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Char('c') if ctrl => Some(Action::Quit),
            KeyCode::Char('q') | KeyCode::Esc => Some(Action::Quit),
            KeyCode::Up | KeyCode::Char('k') => {
                self.move_selection(false);
                None
            }
            KeyCode::Down | KeyCode::Char('j') => {
                self.move_selection(true);
                None
            }
            KeyCode::Char(c @ ('y' | 'a' | 'n')) => {
                let Some(held) = self.selected_call().cloned() else {
                    self.say("nothing pending to answer", true);
                    return None;
                };
                let held = Box::new(held);
                Some(match c {
                    'y' => Action::Grant {
                        held,
                        duration: GrantDuration::Once,
                    },
                    'a' => Action::Grant {
                        held,
                        duration: GrantDuration::Always,
                    },
                    _ => Action::Deny { held },
                })
            }
            _ => None,
        }
    }

    fn push_feed(&mut self, text: String, kind: FeedKind) {
        if self.feed.len() == FEED_LINES {
            self.feed.pop_front();
        }
        self.feed.push_back(FeedLine { text, kind });
    }

    fn add_pending(&mut self, info: PendingInfo, now: Instant) {
        let held = Held { info, seen: now };
        match self
            .pending
            .binary_search_by_key(&held.info.id, |h| h.info.id)
        {
            Ok(i) => self.pending[i] = held,
            Err(i) => self.pending.insert(i, held),
        }
        if self.selected_index().is_none() {
            self.selected = self.pending.first().map(|h| h.info.id);
        }
    }

    fn remove_pending(&mut self, id: RequestId) {
        if self.ended.len() == ENDED_KEPT {
            self.ended.pop_front();
        }
        self.ended.push_back(id);
        let Some(i) = self.pending.iter().position(|h| h.info.id == id) else {
            return;
        };
        self.pending.remove(i);
        if self.selected == Some(id) {
            // The cursor goes to the call that took the place of the removed one.
            let next = i.min(self.pending.len().saturating_sub(1));
            self.selected = self.pending.get(next).map(|h| h.info.id);
        }
    }

    /// Takes in news; some ask for an action in return.
    pub fn apply(&mut self, update: Update) -> Option<Action> {
        let now = self.now;
        match update {
            Update::Status(report, sandboxes) => {
                self.report = Some(report);
                self.sandboxes = sandboxes;
                self.status_error = None;
            }
            Update::StatusFailed(reason) => self.status_error = Some(reason),
            Update::Pending(list) => {
                self.pending.clear();
                for info in list {
                    if !self.ended.contains(&info.id) {
                        self.add_pending(info, now);
                    }
                }
                if self.selected_index().is_none() {
                    self.selected = self.pending.first().map(|h| h.info.id);
                }
            }
            Update::Event(event) => return self.on_event(event, now),
            Update::WatchUp => {
                if self.link != Link::Up {
                    self.link = Link::Up;
                    // What the last answer did was about the broker that went away.
                    self.message = None;
                    self.push_feed(
                        format!("{}  broker is back", format::clock(self.wall_ms)),
                        FeedKind::Info,
                    );
                }
            }
            Update::WatchDown(reason) => {
                if self.link == Link::Up {
                    self.push_feed(
                        format!("{}  broker gone: {reason}", format::clock(self.wall_ms)),
                        FeedKind::Denied,
                    );
                }
                // The ids of held calls belong to the broker that is gone: a restarted
                // broker gets the same calls again under new ids.
                self.pending.clear();
                self.ended.clear();
                self.selected = None;
                self.link = Link::Down(reason);
            }
            Update::Ended(id) => self.remove_pending(id),
            Update::Done(Ok(text)) => self.say(text, false),
            Update::Done(Err(text)) => self.say(text, true),
            Update::Quit => return Some(Action::Quit),
        }
        None
    }

    fn on_event(&mut self, event: Event, now: Instant) -> Option<Action> {
        let text = format::event_line(&event, self.wall_ms);
        let mut action = None;
        let kind = match event {
            Event::Decision(d) => match d.decision.as_str() {
                "allow" | "pass" => FeedKind::Allowed,
                _ => FeedKind::Denied,
            },
            Event::Pending(info) => {
                self.add_pending(info, now);
                FeedKind::Held
            }
            Event::Resolved(r) => {
                self.remove_pending(r.id);
                FeedKind::Resolved
            }
            Event::Registered(s) => {
                if !self.sandboxes.iter().any(|x| x.sandbox == s.sandbox) {
                    self.sandboxes.push(s);
                }
                FeedKind::Info
            }
            Event::Retired { sandbox, .. } => {
                self.sandboxes.retain(|x| x.sandbox != sandbox);
                FeedKind::Info
            }
            Event::Lagged { .. } => {
                action = Some(Action::RefreshPending);
                FeedKind::Denied
            }
        };
        self.push_feed(text, kind);
        action
    }
}

/// How often the sandboxes are refreshed.
pub const STATUS_EVERY: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::fake::{sample_pending, sample_sandbox};
    use netjail_protocol::control::{Outcome, Resolution};

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn with_pending(ids: &[u64]) -> TopState {
        let mut state = TopState::new(Instant::now());
        state.apply(Update::Pending(
            ids.iter().map(|&id| sample_pending(id)).collect(),
        ));
        state
    }

    fn resolved(id: u64) -> Update {
        Update::Event(Event::Resolved(Resolution {
            id: RequestId(id),
            outcome: Outcome::Granted,
            allowed: true,
            by: "uid 0".into(),
            rule: String::new(),
        }))
    }

    #[test]
    fn quit_keys() {
        let mut state = with_pending(&[]);
        assert_eq!(state.on_key(key(KeyCode::Char('q'))), Some(Action::Quit));
        assert_eq!(state.on_key(key(KeyCode::Esc)), Some(Action::Quit));
        assert_eq!(
            state.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Action::Quit)
        );
        assert_eq!(state.on_key(key(KeyCode::Char('c'))), None);
    }

    #[test]
    fn selection_moves_and_answers_name_the_selected_call() {
        let mut state = with_pending(&[7, 8, 9]);
        assert_eq!(state.selected, Some(RequestId(7)));
        assert_eq!(state.on_key(key(KeyCode::Down)), None);
        assert_eq!(state.on_key(key(KeyCode::Char('j'))), None);
        assert_eq!(state.selected, Some(RequestId(9)));
        state.on_key(key(KeyCode::Down));
        assert_eq!(state.selected, Some(RequestId(9)), "stays on the last");
        state.on_key(key(KeyCode::Char('k')));
        assert_eq!(state.selected, Some(RequestId(8)));

        match state.on_key(key(KeyCode::Char('y'))) {
            Some(Action::Grant { held, duration }) => {
                assert_eq!(held.id, RequestId(8));
                assert_eq!(duration, GrantDuration::Once);
            }
            other => panic!("{other:?}"),
        }
        match state.on_key(key(KeyCode::Char('a'))) {
            Some(Action::Grant { held, duration }) => {
                assert_eq!(held.id, RequestId(8));
                assert_eq!(duration, GrantDuration::Always);
            }
            other => panic!("{other:?}"),
        }
        match state.on_key(key(KeyCode::Char('n'))) {
            Some(Action::Deny { held }) => assert_eq!(held.id, RequestId(8)),
            other => panic!("{other:?}"),
        }
        let release = KeyEvent {
            kind: KeyEventKind::Release,
            ..key(KeyCode::Char('y'))
        };
        assert_eq!(state.on_key(release), None);
    }

    #[test]
    fn nothing_to_answer_says_so() {
        let mut state = with_pending(&[]);
        assert_eq!(state.on_key(key(KeyCode::Char('y'))), None);
        assert_eq!(state.on_key(key(KeyCode::Down)), None);
        let message = state.message.expect("a message");
        assert!(message.error);
        assert_eq!(message.text, "nothing pending to answer");
    }

    #[test]
    fn the_cursor_follows_its_call_not_its_row() {
        let mut state = with_pending(&[7, 9]);
        state.on_key(key(KeyCode::Down));
        assert_eq!(state.selected, Some(RequestId(9)));
        // A call with a lower id arrives late (a refresh): the cursor stays on 9.
        state.apply(Update::Event(Event::Pending(sample_pending(8))));
        assert_eq!(state.selected, Some(RequestId(9)));
        assert_eq!(state.selected_index(), Some(2));
        // 9 ends: the cursor takes the row's new occupant (here the last, 8).
        state.apply(resolved(9));
        assert_eq!(state.selected, Some(RequestId(8)));
        state.apply(resolved(7));
        state.apply(resolved(8));
        assert_eq!(state.selected, None);
        assert!(state.pending.is_empty());
        // The first call to come is selected.
        state.apply(Update::Event(Event::Pending(sample_pending(10))));
        assert_eq!(state.selected, Some(RequestId(10)));
        state.apply(Update::Ended(RequestId(10)));
        assert_eq!(state.selected, None);
        assert!(state.pending.is_empty());
    }

    #[test]
    fn events_feed_the_feed_and_the_lists() {
        let mut state = with_pending(&[]);
        state.apply(Update::Event(Event::Pending(sample_pending(7))));
        state.apply(Update::Event(Event::Registered(sample_sandbox())));
        state.apply(resolved(7));
        assert!(state.pending.is_empty());
        assert_eq!(state.sandboxes.len(), 1);
        let kinds: Vec<_> = state.feed.iter().map(|l| l.kind).collect();
        assert_eq!(kinds, [FeedKind::Held, FeedKind::Info, FeedKind::Resolved]);
        assert!(state.feed[0].text.contains("PENDING #7"));
        let action = state.apply(Update::Event(Event::Lagged { missed: 3 }));
        assert_eq!(action, Some(Action::RefreshPending));
        for _ in 0..FEED_LINES + 10 {
            state.apply(Update::Event(Event::Lagged { missed: 1 }));
        }
        assert_eq!(state.feed.len(), FEED_LINES);
    }

    #[test]
    fn a_list_older_than_an_end_does_not_bring_the_call_back() {
        let mut state = with_pending(&[7]);
        state.apply(resolved(7));
        state.apply(Update::Pending(vec![sample_pending(7), sample_pending(8)]));
        let ids: Vec<_> = state.pending.iter().map(|h| h.info.id.0).collect();
        assert_eq!(ids, [8]);
    }

    #[test]
    fn a_broker_that_comes_back_clears_the_old_message() {
        let mut state = with_pending(&[]);
        state.apply(Update::Done(Err("7 is no longer pending: gone".into())));
        state.apply(Update::WatchDown("broker closed the connection".into()));
        state.apply(Update::WatchUp);
        assert_eq!(state.message, None);
    }

    #[test]
    fn a_broker_that_goes_away_takes_its_held_calls() {
        let mut state = with_pending(&[7]);
        state.apply(Update::WatchDown("broker closed the connection".into()));
        assert_eq!(
            state.link,
            Link::Down("broker closed the connection".into())
        );
        assert!(state.pending.is_empty());
        assert_eq!(state.selected, None);
        state.apply(Update::WatchUp);
        assert_eq!(state.link, Link::Up);
        assert!(state.feed.iter().any(|l| l.text.contains("broker is back")));
    }

    #[test]
    fn done_and_quit() {
        let mut state = with_pending(&[]);
        state.apply(Update::Done(Err("7 is no longer pending: gone".into())));
        assert_eq!(
            state.message,
            Some(Message {
                text: "7 is no longer pending: gone".into(),
                error: true
            })
        );
        assert_eq!(state.apply(Update::Quit), Some(Action::Quit));
    }
}
