//! A connection's bounded outgoing queue and its event sequence.
//!
//! `seq` counts every event *generated* for the connection, delivered or not: when the
//! queue is over `max_bytes`, droppable events are discarded but still use up their seq, so
//! the client sees the gap and re-reads state. Any other event that does not fit closes the
//! connection as a slow consumer, because silently losing it would be a lie.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;

use crate::protocol::{close, events, frame::event_text};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued(u64),
    Dropped(u64),
    /// The connection is closing (now, or already); nothing was queued.
    Closed,
}

/// What the writer task should do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Frames(Vec<String>),
    Close(u16, String),
}

#[derive(Default)]
struct State {
    queue: VecDeque<String>,
    bytes: usize,
    seq: u64,
    close: Option<(u16, String)>,
}

pub struct Outbox {
    state: Mutex<State>,
    notify: Notify,
    max_bytes: usize,
}

impl Outbox {
    pub fn new(max_bytes: usize) -> Self {
        Outbox {
            state: Mutex::new(State::default()),
            notify: Notify::new(),
            max_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue inconsistent: keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues an event with the next seq, applying the drop/close rules.
    pub fn push_event(&self, event: &str, payload_json: &str) -> Pushed {
        let mut s = self.lock();
        if s.close.is_some() {
            return Pushed::Closed;
        }
        s.seq += 1;
        let seq = s.seq;
        let text = event_text(event, payload_json, seq);
        if s.bytes + text.len() > self.max_bytes {
            if events::is_droppable(event) {
                return Pushed::Dropped(seq);
            }
            s.close = Some((close::POLICY_VIOLATION, "slow consumer".into()));
            drop(s);
            self.notify.notify_one();
            return Pushed::Closed;
        }
        s.bytes += text.len();
        s.queue.push_back(text);
        drop(s);
        self.notify.notify_one();
        Pushed::Queued(seq)
    }

    /// Queues a response. A client that keeps asking without reading its answers is a slow
    /// consumer too.
    pub fn push_frame(&self, text: String) -> bool {
        let mut s = self.lock();
        if s.close.is_some() {
            return false;
        }
        if s.bytes + text.len() > self.max_bytes.saturating_mul(2) {
            s.close = Some((close::POLICY_VIOLATION, "slow consumer".into()));
            drop(s);
            self.notify.notify_one();
            return false;
        }
        s.bytes += text.len();
        s.queue.push_back(text);
        drop(s);
        self.notify.notify_one();
        true
    }

    /// Asks the writer to close with `code`; the first close wins, queued frames are dropped.
    pub fn close(&self, code: u16, reason: &str) {
        let mut s = self.lock();
        if s.close.is_none() {
            s.close = Some((code, reason.to_string()));
        }
        drop(s);
        self.notify.notify_one();
    }

    pub fn is_closing(&self) -> bool {
        self.lock().close.is_some()
    }

    /// Waits for work: every queued frame at once (so the writer can flush once per batch),
    /// or the close.
    pub async fn next(&self) -> Next {
        loop {
            {
                let mut s = self.lock();
                if let Some((code, reason)) = s.close.clone() {
                    s.queue.clear();
                    s.bytes = 0;
                    return Next::Close(code, reason);
                }
                if !s.queue.is_empty() {
                    let frames: Vec<String> = s.queue.drain(..).collect();
                    s.bytes = 0;
                    return Next::Frames(frames);
                }
            }
            self.notify.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn droppable_events_use_a_seq_when_dropped() {
        let ob = Outbox::new(200);
        assert_eq!(ob.push_event("tick", "{}"), Pushed::Queued(1));
        assert_eq!(ob.push_event("tick", "{}"), Pushed::Queued(2));
        let big = format!("{{\"x\":\"{}\"}}", "a".repeat(150));
        assert_eq!(ob.push_event("tick", &big), Pushed::Dropped(3));
        assert_eq!(ob.push_event("tick", "{}"), Pushed::Queued(4));
        assert!(!ob.is_closing());
    }

    #[test]
    fn a_non_droppable_event_that_does_not_fit_closes_as_slow_consumer() {
        let ob = Outbox::new(200);
        let big = format!("{{\"x\":\"{}\"}}", "a".repeat(250));
        assert_eq!(ob.push_event("run.status", &big), Pushed::Closed);
        assert!(ob.is_closing());
        assert_eq!(ob.push_event("tick", "{}"), Pushed::Closed);
        let next = futures_util::FutureExt::now_or_never(ob.next()).unwrap();
        assert_eq!(next, Next::Close(1008, "slow consumer".into()));
    }

    #[test]
    fn frames_come_out_in_order_and_free_the_budget() {
        let ob = Outbox::new(120);
        assert_eq!(ob.push_event("tick", "{}"), Pushed::Queued(1));
        assert!(ob.push_frame("{\"type\":\"res\"}".into()));
        match futures_util::FutureExt::now_or_never(ob.next()).unwrap() {
            Next::Frames(f) => {
                assert_eq!(f.len(), 2);
                assert!(f[0].contains("\"seq\":1"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(ob.push_event("tick", "{}"), Pushed::Queued(2));
    }
}
