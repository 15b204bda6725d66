//! Drawing `netjail top`: a pure function of a [`TopState`].
//!
//! ```text
//! netjail top  netjaild 0.1.0, up 2h03m, 1 operator watching, ...      (or: broker gone)
//! ┌Sandboxes (1)─────────────────────────────────────────────────────┐
//! │ID    NAME  CONTAINER  PID  POLICY  DECISIONS  PENDING  AGE       │
//! └──────────────────────────────────────────────────────────────────┘
//! ┌Pending (1)───────────────────────────────────────────────────────┐
//! │>> 7  4s  sb-3 curl  412  curl(412) < sh(400)  connect  ...       │
//! └──────────────────────────────────────────────────────────────────┘
//! ┌Decisions─────────────────────────────────────────────────────────┐
//! │12:00:01.234Z  deny  sb-3 curl  curl(412)  connect ...  (newest last)
//! └──────────────────────────────────────────────────────────────────┘
//! granted 7: connect tcp://127.0.0.1:8080 ...                 (last action)
//!  ↑↓/jk select  y grant once  a grant always  n deny  q quit
//! ```

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table, TableState};
use ratatui::Frame;

use super::state::{FeedKind, Link, TopState};
use crate::operator::format;

/// The keys, as the help line shows them.
pub const HELP: &str = "↑↓/jk select  y grant once  a grant always  n deny once  q quit";

/// Space between two columns.
const SPACING: u16 = 2;

/// The highlight symbol before the selected row (the table keeps its width on every row).
const CURSOR: &str = ">> ";

/// Column widths from the widest cell of each column (header included), made to fit in
/// `room` cells: when they do not, the columns of `shrink` give way first to last, down to
/// 6 cells each, so that ids, operations and destinations stay whole.
fn widths<const N: usize>(
    header: [&str; N],
    rows: &[[String; N]],
    room: u16,
    shrink: &[usize],
) -> Vec<Constraint> {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let spacing = SPACING as usize * N.saturating_sub(1);
    let mut excess = (widths.iter().sum::<usize>() + spacing).saturating_sub(room as usize);
    for &column in shrink {
        if excess == 0 {
            break;
        }
        let give = widths[column].saturating_sub(6).min(excess);
        widths[column] -= give;
        excess -= give;
    }
    widths
        .iter()
        .map(|&w| Constraint::Length(w.try_into().unwrap_or(u16::MAX)))
        .collect()
}

/// How many lines a boxed table of `rows` rows takes: borders, header, rows; at least one
/// row's room (for "none" text), at most `max`.
fn table_height(rows: usize, max: u16) -> u16 {
    (rows.max(1) as u16).saturating_add(3).min(max)
}

/// Draws the whole screen.
pub fn render(frame: &mut Frame, state: &TopState) {
    let [head, sandboxes, pending, feed, message, help] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(table_height(state.sandboxes.len(), 8)),
        Constraint::Length(table_height(state.pending.len(), 12)),
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    render_head(frame, head, state);
    render_sandboxes(frame, sandboxes, state);
    render_pending(frame, pending, state);
    render_feed(frame, feed, state);
    render_message(frame, message, state);
    frame.render_widget(
        Paragraph::new(HELP).style(Style::default().add_modifier(Modifier::REVERSED)),
        help,
    );
}

fn render_head(frame: &mut Frame, area: Rect, state: &TopState) {
    let line = match (&state.link, &state.report) {
        (Link::Down(reason), _) => Line::from(vec![
            Span::styled(
                "netjail top  ",
                Style::default().add_modifier(Modifier::BOLD),
            ),
            Span::styled(
                format!("broker gone (reconnecting; q quits): {reason}"),
                Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
            ),
        ]),
        (Link::Up, Some(report)) => Line::from(vec![
            Span::styled(
                "netjail top  ",
                Style::default().add_modifier(Modifier::BOLD),
            ),
            Span::raw(format::report_line(report)),
        ]),
        (Link::Up, None) => Line::from(Span::styled(
            "netjail top",
            Style::default().add_modifier(Modifier::BOLD),
        )),
    };
    frame.render_widget(Paragraph::new(line), area);
}

fn render_sandboxes(frame: &mut Frame, area: Rect, state: &TopState) {
    let mut title = format!("Sandboxes ({})", state.sandboxes.len());
    if state.status_error.is_some() {
        title.push_str(" - not refreshed");
    }
    let block = Block::default().borders(Borders::ALL).title(title);
    if state.sandboxes.is_empty() {
        frame.render_widget(Paragraph::new("no sandboxes").block(block), area);
        return;
    }
    let rows: Vec<_> = state.sandboxes.iter().map(format::sandbox_row).collect();
    let table = Table::new(
        rows.iter().map(|r| Row::new(r.clone())),
        // Inside the borders; shrink NAME, CONTAINER, POLICY.
        widths(
            format::SANDBOX_HEADER,
            &rows,
            area.width.saturating_sub(2),
            &[2, 1, 4],
        ),
    )
    .header(Row::new(format::SANDBOX_HEADER).style(Style::default().add_modifier(Modifier::BOLD)))
    .column_spacing(SPACING)
    .block(block);
    frame.render_widget(table, area);
}

fn render_pending(frame: &mut Frame, area: Rect, state: &TopState) {
    let block = Block::default()
        .borders(Borders::ALL)
        .title(format!("Pending ({})", state.pending.len()))
        .border_style(if state.pending.is_empty() {
            Style::default()
        } else {
            Style::default().fg(Color::Yellow)
        });
    if state.pending.is_empty() {
        frame.render_widget(Paragraph::new("no calls held").block(block), area);
        return;
    }
    let rows: Vec<_> = state
        .pending
        .iter()
        .map(|h| format::pending_row(&h.info, state.elapsed_ms(h)))
        .collect();
    let table = Table::new(
        rows.iter().map(|r| Row::new(r.clone())),
        // Inside the borders and the cursor; shrink PROGRAM, HOST, SANDBOX, ENDPOINT.
        widths(
            format::PENDING_HEADER,
            &rows,
            area.width.saturating_sub(2 + CURSOR.len() as u16),
            &[4, 7, 2, 6],
        ),
    )
    .header(Row::new(format::PENDING_HEADER).style(Style::default().add_modifier(Modifier::BOLD)))
    .column_spacing(SPACING)
    .block(block)
    .row_highlight_style(
        Style::default()
            .fg(Color::Black)
            .bg(Color::Yellow)
            .add_modifier(Modifier::BOLD),
    )
    .highlight_symbol(CURSOR);
    let mut table_state = TableState::default().with_selected(state.selected_index());
    frame.render_stateful_widget(table, area, &mut table_state);
}

fn render_feed(frame: &mut Frame, area: Rect, state: &TopState) {
    let block = Block::default()
        .borders(Borders::ALL)
        .title("Decisions (newest last)");
    let room = area.height.saturating_sub(2) as usize;
    let skip = state.feed.len().saturating_sub(room);
    let lines: Vec<Line> = state
        .feed
        .iter()
        .skip(skip)
        .map(|l| {
            let style = match l.kind {
                FeedKind::Allowed => Style::default().fg(Color::Green),
                FeedKind::Denied => Style::default().fg(Color::Red),
                FeedKind::Held => Style::default()
                    .fg(Color::Yellow)
                    .add_modifier(Modifier::BOLD),
                FeedKind::Resolved => Style::default().fg(Color::Cyan),
                FeedKind::Info => Style::default(),
            };
            Line::styled(l.text.as_str(), style)
        })
        .collect();
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn render_message(frame: &mut Frame, area: Rect, state: &TopState) {
    if let Some(m) = &state.message {
        let style = if m.error {
            Style::default().fg(Color::Red)
        } else {
            Style::default().fg(Color::Green)
        };
        frame.render_widget(Paragraph::new(m.text.as_str()).style(style), area);
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use netjail_protocol::control::Event;
    use ratatui::backend::TestBackend;
    use ratatui::buffer::Buffer;
    use ratatui::Terminal;

    use super::*;
    use crate::operator::fake::{sample_decision, sample_pending, sample_report, sample_sandbox};
    use crate::operator::top::state::Update;

    fn screen(state: &TopState, width: u16, height: u16) -> Vec<String> {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
        terminal.draw(|frame| render(frame, state)).expect("draw");
        lines(terminal.backend().buffer())
    }

    fn lines(buffer: &Buffer) -> Vec<String> {
        let width = buffer.area.width as usize;
        buffer
            .content()
            .chunks(width)
            .map(|row| row.iter().map(|cell| cell.symbol()).collect::<String>())
            .collect()
    }

    fn full_state() -> TopState {
        let start = Instant::now();
        let mut state = TopState::new(start);
        state.tick(start, 1_700_000_000_000);
        state.apply(Update::Status(sample_report(), vec![sample_sandbox()]));
        state.apply(Update::Pending(vec![sample_pending(7), sample_pending(8)]));
        state.apply(Update::Event(Event::Decision(sample_decision())));
        state
    }

    #[test]
    fn renders_the_three_panes_and_the_help_line() {
        let state = full_state();
        let screen = screen(&state, 140, 30);
        let text = screen.join("\n");
        assert!(screen[0].contains("netjaild 0.1.0, up 2h03m"), "{text}");

        let sandbox = screen
            .iter()
            .find(|l| l.contains("sb-3") && l.contains("web") && l.contains("390"))
            .unwrap_or_else(|| panic!("no sandbox row:\n{text}"));
        assert!(sandbox.contains("1m05s"), "{sandbox}");

        let selected = screen
            .iter()
            .find(|l| l.contains(">> 7"))
            .unwrap_or_else(|| panic!("no selected pending row:\n{text}"));
        assert!(selected.contains("tcp://127.0.0.1:8080"), "{selected}");
        assert!(
            selected.contains("curl(412) < sh(400) < netjail(390)"),
            "{selected}"
        );
        assert!(selected.contains("26s"), "{selected}");
        assert!(
            screen
                .iter()
                .any(|l| l.contains(" 8 ") && !l.contains(">>")),
            "{text}"
        );

        assert!(text.contains("tcp://169.254.169.254:80"), "{text}");
        assert!(text.contains("EPERM"), "{text}");
        assert!(screen[29].contains("y grant once"), "{text}");
        assert!(screen[29].contains("q quit"), "{text}");
    }

    #[test]
    fn the_time_left_moves_and_the_highlight_follows_the_cursor() {
        let mut state = full_state();
        let later = state.now + Duration::from_secs(10);
        state.tick(later, 1_700_000_010_000);
        state.on_key(crossterm::event::KeyEvent::from(
            crossterm::event::KeyCode::Down,
        ));
        let screen = screen(&state, 140, 30);
        let selected = screen
            .iter()
            .find(|l| l.contains(">> 8"))
            .unwrap_or_else(|| panic!("8 not selected:\n{}", screen.join("\n")));
        assert!(selected.contains("16s"), "{selected}");
        assert!(selected.contains("14s"), "age 4s + 10s: {selected}");
    }

    #[test]
    fn says_when_the_broker_is_gone_and_what_the_last_action_did() {
        let mut state = full_state();
        state.apply(Update::Done(Ok(
            "granted 7: connect tcp://127.0.0.1:8080".into()
        )));
        let text = screen(&state, 140, 30).join("\n");
        assert!(
            text.contains("granted 7: connect tcp://127.0.0.1:8080"),
            "{text}"
        );

        state.apply(Update::WatchDown("broker closed the connection".into()));
        let screen = screen(&state, 140, 30);
        assert!(
            screen[0].contains("broker gone (reconnecting; q quits): broker closed the connection"),
            "{}",
            screen.join("\n")
        );
        assert!(screen.iter().any(|l| l.contains("no calls held")));
    }

    #[test]
    fn a_narrow_terminal_cuts_the_process_chain_before_the_destination() {
        let state = full_state();
        let screen = screen(&state, 100, 30);
        let selected = screen
            .iter()
            .find(|l| l.contains(">> 7"))
            .unwrap_or_else(|| panic!("no selected row:\n{}", screen.join("\n")));
        assert!(selected.contains("sb-3 curl"), "{selected}");
        assert!(selected.contains("tcp://127.0.0.1:8080"), "{selected}");
        assert!(selected.contains("26s"), "{selected}");
        assert!(!selected.contains("netjail(390)"), "{selected}");
    }

    #[test]
    fn a_small_terminal_still_draws() {
        let state = full_state();
        for (w, h) in [(20, 5), (1, 1), (80, 10)] {
            let _ = screen(&state, w, h);
        }
        let empty = TopState::new(Instant::now());
        let text = screen(&empty, 80, 20).join("\n");
        assert!(text.contains("no sandboxes"), "{text}");
        assert!(text.contains("no calls held"), "{text}");
    }
}
