//! What the desk holds per store: agents' connections, open chats and shoppers' connections,
//! and how events reach them without any client able to make the server buffer without bound.

use std::collections::{BTreeMap, HashMap};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{AgentEvent, DeskError, QueueItem};
use crate::domain::{ConversationId, HandoffReason, Millis};
use crate::protocol::ServerEvent;
use crate::store::{AgentAccount, OpenChat};

/// Events that may wait for one agent's connection. An agent whose connection falls this far
/// behind is disconnected (they sign in again and get the queue and their chats afresh) rather
/// than buffered.
pub const AGENT_OUTBOX: usize = 256;

/// How much of a shopper's latest message the queue shows, in characters.
pub const PREVIEW_CHARS: usize = 80;

/// The way to one agent's connection: a bounded channel, and the signal that it fell behind.
#[derive(Debug, Clone)]
pub struct AgentLink {
    events: mpsc::Sender<AgentEvent>,
    slow: CancellationToken,
    ended: CancellationToken,
}

impl AgentLink {
    /// A link with room for [`AGENT_OUTBOX`] events, and its receiving end.
    pub fn new() -> (Self, mpsc::Receiver<AgentEvent>) {
        let (events, outbox) = mpsc::channel(AGENT_OUTBOX);
        (Self { events, slow: CancellationToken::new(), ended: CancellationToken::new() }, outbox)
    }

    /// Queues `event`; when the connection's outbox is full, marks it too slow instead.
    pub fn send(&self, event: AgentEvent) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.events.try_send(event) {
            if !self.slow.is_cancelled() {
                tracing::warn!("an agent's connection fell {AGENT_OUTBOX} events behind: disconnecting it");
            }
            self.slow.cancel();
        }
    }

    /// Completes once the connection fell too far behind.
    pub async fn fell_behind(&self) {
        self.slow.cancelled().await;
    }

    /// Signs the connection out: its token was revoked or replaced.
    pub fn end(&self) {
        self.ended.cancel();
    }

    /// Completes once the connection is signed out.
    pub async fn ended(&self) {
        self.ended.cancelled().await;
    }

    /// The signal alone, for the connection's writer: unlike the link, it does not keep the
    /// channel open.
    pub fn signal(&self) -> CancellationToken {
        self.slow.clone()
    }
}

/// The first [`PREVIEW_CHARS`] characters of `text`, with an ellipsis when cut.
pub(super) fn preview(text: &str) -> String {
    match text.char_indices().nth(PREVIEW_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// An agent's connection.
#[derive(Debug)]
pub(super) struct Online {
    pub(super) conn: u64,
    pub(super) groups: Vec<String>,
    pub(super) max_chats: u32,
    pub(super) auto_assign: bool,
    /// Set offline: connected (keeps their chats) but takes no new ones and is not counted
    /// as online for shoppers.
    pub(super) away: bool,
    pub(super) link: AgentLink,
}

/// A chat with the humans.
#[derive(Debug, Clone)]
pub(super) struct Chat {
    pub(super) reason: Option<HandoffReason>,
    pub(super) priority: i64,
    pub(super) group: Option<String>,
    pub(super) queued_at: Millis,
    pub(super) agent: Option<String>,
    pub(super) assigned_at: Option<Millis>,
    /// The assigned agent has replied since being assigned.
    pub(super) answered: bool,
    /// Agents who let it time out: others are preferred.
    pub(super) passed_over: Vec<String>,
    /// The shopper's latest message, for the queue view and suggestions.
    pub(super) last_text: Option<String>,
}

impl Chat {
    pub(super) fn from_open(open: OpenChat) -> Self {
        Self {
            reason: open.reason,
            priority: open.priority,
            group: open.group,
            queued_at: open.queued_at,
            agent: open.agent,
            assigned_at: open.assigned_at,
            answered: false,
            passed_over: Vec::new(),
            last_text: open.last_text,
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct StoreDesk {
    pub(super) agents: BTreeMap<String, Online>,
    pub(super) chats: HashMap<ConversationId, Chat>,
    pub(super) shoppers: HashMap<ConversationId, mpsc::Sender<ServerEvent>>,
    /// The queue changed since it was last announced.
    pub(super) queue_changed: bool,
}

impl StoreDesk {
    /// The open chat, if `agent` owns it.
    pub(super) fn owned_by(
        &self,
        agent: &AgentAccount,
        conversation: ConversationId,
    ) -> Result<&Chat, DeskError> {
        let chat = self.chats.get(&conversation).ok_or(DeskError::NotFound)?;
        if chat.agent.as_deref() == Some(agent.name.as_str()) { Ok(chat) } else { Err(DeskError::NotYours) }
    }

    /// Agents online and not set away.
    pub(super) fn available(&self) -> usize {
        self.agents.values().filter(|a| !a.away).count()
    }

    pub(super) fn load(&self, agent: &str) -> usize {
        self.chats.values().filter(|c| c.agent.as_deref() == Some(agent)).count()
    }

    /// Waiting chats, first served first.
    pub(super) fn waiting(&self) -> Vec<(ConversationId, &Chat)> {
        let mut waiting: Vec<_> =
            self.chats.iter().filter(|(_, c)| c.agent.is_none()).map(|(id, c)| (*id, c)).collect();
        waiting.sort_by(|a, b| b.1.priority.cmp(&a.1.priority).then(a.1.queued_at.cmp(&b.1.queued_at)));
        waiting
    }

    pub(super) fn to_agent(&self, agent: &str, event: AgentEvent) {
        if let Some(online) = self.agents.get(agent) {
            online.link.send(event);
        }
    }

    /// Every agent of the store online.
    pub(super) fn to_agents(&self, event: &AgentEvent) {
        for online in self.agents.values() {
            online.link.send(event.clone());
        }
    }

    pub(super) fn to_shopper(&self, conversation: ConversationId, event: ServerEvent) {
        if let Some(shopper) = self.shoppers.get(&conversation) {
            // A shopper whose connection is backed up misses a notice, not a message: every
            // message is stored and comes back with the history.
            let _ = shopper.try_send(event);
        }
    }
}

/// The waiting chats of a store, as agents see them.
pub(super) fn queue_items(desk: &StoreDesk, now: Millis) -> Vec<QueueItem> {
    desk.waiting()
        .iter()
        .map(|(id, c)| QueueItem {
            conversation_id: *id,
            reason: c.reason,
            priority: c.priority,
            group: c.group.clone(),
            waiting_seconds: u64::try_from((now.0 - c.queued_at.0).max(0) / 1000).unwrap_or(0),
            last_message: c.last_text.as_deref().map(preview),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_that_falls_behind_is_marked_not_grown() {
        let (link, mut outbox) = AgentLink::new();
        for _ in 0..AGENT_OUTBOX {
            link.send(AgentEvent::Presence { online: true });
        }
        assert!(!link.signal().is_cancelled(), "a full outbox is still in time");
        link.send(AgentEvent::Presence { online: false });
        assert!(link.signal().is_cancelled(), "one more is too far behind");
        let mut queued = 0;
        while outbox.try_recv().is_ok() {
            queued += 1;
        }
        assert_eq!(queued, AGENT_OUTBOX, "nothing beyond the outbox was kept");
    }

    #[test]
    fn previews_are_cut_on_characters() {
        assert_eq!(preview("退货运费谁出"), "退货运费谁出");
        let long = "邮".repeat(PREVIEW_CHARS + 5);
        let cut = preview(&long);
        assert_eq!(cut.chars().count(), PREVIEW_CHARS + 1);
        assert!(cut.ends_with('…'));
    }
}
