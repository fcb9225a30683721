//! The desk on several nodes: what changes here is told to the other nodes, and what they tell
//! is taken in here. Every node's desk holds every open chat of every store (read from the
//! database, which settles claims); each node sends to the shoppers and agents connected to it.

use std::collections::HashSet;
use std::time::Duration;

use super::state::{Chat, StoreDesk};
use super::{AgentEvent, Desk};
use crate::cluster::Note;
use crate::domain::{ConversationId, Millis, StoreId};
use crate::protocol::ServerEvent;
use crate::store::OpenChat;

/// How long the lease to take back the chats of agents whose node is gone lasts.
const SWEEP_LEASE: Duration = Duration::from_secs(3);

impl Desk {
    /// Sends to the shopper if they are connected here, or has the node they are on send it.
    pub(super) fn to_shopper_anywhere(
        &self,
        store: &StoreId,
        desk: &StoreDesk,
        conversation: ConversationId,
        event: ServerEvent,
    ) {
        if desk.shoppers.contains_key(&conversation) {
            desk.to_shopper(conversation, event);
        } else if let Some(cluster) = &self.cluster {
            cluster.tell(Note::Shopper { store: store.clone(), conversation, event });
        }
    }

    /// Tells the other nodes that the conversation's place with the humans changed.
    pub(super) fn changed(&self, store: &StoreId, conversation: ConversationId) {
        if let Some(cluster) = &self.cluster {
            cluster.tell(Note::Chat { store: store.clone(), conversation });
        }
    }

    /// Takes in a note from another node.
    pub async fn heard(&self, note: Note) {
        match note {
            Note::Chat { store, conversation } => match self.agents.open_chat(conversation).await {
                Ok(open) => {
                    let mut state = self.state.lock().await;
                    let desk = state.entry(store.clone()).or_default();
                    self.take_in(&store, desk, conversation, open).await;
                    self.dispatch(&store, desk, Millis::now()).await;
                }
                Err(error) => {
                    tracing::warn!(%error, %conversation, "reading a chat changed elsewhere failed")
                }
            },
            Note::Shopper { store, conversation, event } => {
                if let Some(desk) = self.state.lock().await.get(&store) {
                    desk.to_shopper(conversation, event);
                }
            }
            Note::ShopperMessage { store, agent, conversation, message_id, text, at } => {
                let _ = self.to_agent_here(&store, &agent, conversation, message_id, &text, Millis(at)).await;
            }
            Note::Waiting { store, conversation, text } => {
                let mut state = self.state.lock().await;
                if let Some(chat) = state.get_mut(&store).and_then(|desk| desk.chats.get_mut(&conversation)) {
                    chat.last_text = Some(text);
                }
                if let Some(desk) = state.get_mut(&store) {
                    desk.queue_changed = true;
                }
            }
            Note::Alert { alert } => {
                let Ok(store) = StoreId::parse(&alert.store) else { return };
                if let Some(desk) = self.state.lock().await.get(&store) {
                    desk.to_agents(&AgentEvent::Alert { alert: alert.as_ref().into() });
                }
            }
            Note::SignOut { store, agent } => self.sign_out_here(&store, &agent).await,
            Note::Packs { .. } => {}
        }
    }

    /// Reads every open chat again (after a break in the link to the other nodes, whose notes
    /// may have been missed) and brings the desk in line.
    pub async fn reread(&self) {
        let open = match self.agents.open_chats().await {
            Ok(open) => open,
            Err(error) => {
                tracing::warn!(%error, "reading the open chats again failed");
                return;
            }
        };
        let mut state = self.state.lock().await;
        let mut seen: HashSet<ConversationId> = HashSet::new();
        for chat in open {
            seen.insert(chat.conversation);
            let store = chat.store.clone();
            let desk = state.entry(store.clone()).or_default();
            self.take_in(&store, desk, chat.conversation, Some(chat)).await;
        }
        let stores: Vec<StoreId> = state.keys().cloned().collect();
        for store in stores {
            let Some(desk) = state.get_mut(&store) else { continue };
            let gone: Vec<ConversationId> =
                desk.chats.keys().filter(|id| !seen.contains(id)).copied().collect();
            for conversation in gone {
                self.take_in(&store, desk, conversation, None).await;
            }
            self.dispatch(&store, desk, Millis::now()).await;
        }
    }

    /// Puts the chat as the database has it (`None`: no longer with the humans) on the desk,
    /// and tells this node's agents what that changes for them.
    async fn take_in(
        &self,
        store: &StoreId,
        desk: &mut StoreDesk,
        conversation: ConversationId,
        open: Option<OpenChat>,
    ) {
        let before = desk.chats.get(&conversation).and_then(|c| c.agent.clone());
        let after = open.as_ref().and_then(|o| o.agent.clone());
        match open {
            None => {
                desk.chats.remove(&conversation);
            }
            Some(open) => match desk.chats.get_mut(&conversation) {
                Some(chat) => {
                    if chat.agent != open.agent {
                        chat.answered = false;
                    }
                    chat.reason = open.reason;
                    chat.priority = open.priority;
                    chat.group = open.group;
                    chat.queued_at = open.queued_at;
                    chat.agent = open.agent;
                    chat.assigned_at = open.assigned_at;
                    if open.last_text.is_some() {
                        chat.last_text = open.last_text;
                    }
                }
                None => {
                    desk.chats.insert(conversation, Chat::from_open(open));
                }
            },
        }
        desk.queue_changed = true;
        if before == after {
            return;
        }
        if let Some(earlier) = before {
            let why = if after.is_some() { "taken by another agent" } else { "handled on another node" };
            desk.to_agent(
                &earlier,
                AgentEvent::Unassigned { conversation_id: conversation, why: why.into() },
            );
        }
        if let Some(now_with) = after.filter(|a| desk.agents.contains_key(a)) {
            match self.assigned_event(store, desk, conversation).await {
                Ok(event) => desk.to_agent(&now_with, event),
                Err(error) => {
                    tracing::warn!(%error, %conversation, "reading a chat assigned elsewhere failed")
                }
            }
        }
    }

    /// With a cluster: the agents (`store/name`) signed in on other live nodes, if this node
    /// holds the lease to take back the chats of agents who are nowhere. `None` otherwise.
    pub(super) async fn present_elsewhere(&self) -> Option<HashSet<String>> {
        let cluster = self.cluster.as_ref()?;
        if !cluster.hold("sweep", SWEEP_LEASE).await {
            return None;
        }
        cluster.agents_elsewhere().await
    }
}
