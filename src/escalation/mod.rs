//! Escalation: the queue of chats handed to people, and the agents who take them.
//!
//! The [`Desk`] holds, per store, the agents online, the open chats (waiting or assigned) and the
//! shoppers' connections, behind one lock, so that a claim, an assignment and a timeout are
//! decided one at a time. Every change is written to the database first (the queue and
//! assignments survive a restart; the database also settles a claim: only a conversation still
//! waiting can be assigned), then announced: to the agent (`assigned`, `unassigned`, the queue),
//! and to the shopper (`status`, `queue` position and estimated wait, `agent_message`).
//!
//! Assignment goes to the least-loaded online agent of the chat's skill group who is under their
//! capacity and takes chats automatically; an agent who let the chat time out is passed over
//! while anyone else can take it. Chats are served by priority (the handoff reason's, with
//! timed-out and orphaned chats at the front), then by how long they have waited.

mod assist;
mod queue;
mod relay;
mod state;
mod wire;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{Mutex, mpsc};

pub use state::{AGENT_OUTBOX, AgentLink, PREVIEW_CHARS};
use state::{Chat, Online, StoreDesk, queue_items};
pub use wire::{AgentCommand, AgentEvent, AlertNotice, ProductView, QueueItem, Suggestion};

use crate::cluster::{Cluster, Note};
use crate::config::Config;
use crate::domain::{ChatStatus, ConversationId, HandoffReason, MessageId, Millis, StoreId};
use crate::library::Library;
use crate::protocol::ServerEvent;
use crate::store::{AgentAccount, Agents, StoreError};

/// Priority of a chat that goes back to the queue through no fault of the shopper's (its agent
/// timed out or went offline): ahead of every new one.
const FRONT: i64 = 1000;

/// How much sooner a VIP's chat is served: ahead of every reason's own priority.
pub const VIP_BONUS: i64 = 50;

/// Why an agent's request was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeskError {
    /// No open chat with that id in the agent's store.
    #[error("no open chat with that id in your store")]
    NotFound,
    /// The chat is someone else's (or nobody's).
    #[error("this chat is not assigned to you")]
    NotYours,
    /// Another agent was faster.
    #[error("another agent has already taken this chat")]
    AlreadyTaken,
    /// The agent is at their capacity.
    #[error("you are at your limit of chats at once; close one first")]
    AtCapacity,
    /// The transfer target is not online or has no room.
    #[error("{0}")]
    CannotTransfer(String),
    /// The database failed; nothing changed.
    #[error("storage failed: {0}")]
    Store(#[from] StoreError),
}

impl DeskError {
    /// The stable code sent to the agent.
    pub fn code(&self) -> &'static str {
        match self {
            DeskError::NotFound => "not_found",
            DeskError::NotYours => "not_yours",
            DeskError::AlreadyTaken => "already_taken",
            DeskError::AtCapacity => "at_capacity",
            DeskError::CannotTransfer(_) => "cannot_transfer",
            DeskError::Store(_) => "unavailable",
        }
    }
}

/// The queue and the agents, for every store.
pub struct Desk {
    state: Mutex<HashMap<StoreId, StoreDesk>>,
    cluster: Option<Arc<Cluster>>,
    agents: Arc<dyn Agents>,
    library: Arc<Library>,
    config: Arc<Config>,
    next_conn: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Desk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Desk").finish_non_exhaustive()
    }
}

impl Desk {
    /// The desk, with the open chats the database holds.
    pub async fn open(
        agents: Arc<dyn Agents>,
        library: Arc<Library>,
        config: Arc<Config>,
    ) -> Result<Self, StoreError> {
        let mut stores: HashMap<StoreId, StoreDesk> = HashMap::new();
        for open in agents.open_chats().await? {
            stores
                .entry(open.store.clone())
                .or_default()
                .chats
                .insert(open.conversation, Chat::from_open(open));
        }
        Ok(Self { state: Mutex::new(stores), cluster: None, agents, library, config, next_conn: 0.into() })
    }

    /// The desk working with the cluster's other nodes: what happens here is told to them, and
    /// [`Desk::heard`] takes in what happened there.
    pub fn with_cluster(mut self, cluster: Option<Arc<Cluster>>) -> Self {
        self.cluster = cluster;
        self
    }

    /// The agent account a token opens.
    pub async fn authenticate(&self, token: &str) -> Result<Option<AgentAccount>, StoreError> {
        self.agents.agent_by_token(&crate::domain::ApiKey(token.to_owned()).digest()).await
    }

    /// A shopper's connection joins: it gets agents' messages and queue updates from now on.
    pub async fn shopper_joined(
        &self,
        store: &StoreId,
        conversation: ConversationId,
        events: mpsc::Sender<ServerEvent>,
    ) {
        let mut state = self.state.lock().await;
        let desk = state.entry(store.clone()).or_default();
        desk.shoppers.insert(conversation, events);
        // Only the shopper who joined learns anything: the queue itself did not change.
        self.tell_place(desk, conversation, Millis::now());
    }

    /// The store's waiting chats, first served first.
    pub async fn queue(&self, store: &StoreId) -> Vec<QueueItem> {
        let state = self.state.lock().await;
        state.get(store).map(|desk| queue_items(desk, Millis::now())).unwrap_or_default()
    }

    /// A conversation of `store` with its transcript; `None` if it is not that store's.
    pub async fn chat(
        &self,
        store: &StoreId,
        conversation: ConversationId,
    ) -> Result<Option<(crate::store::ChatSummary, Vec<crate::store::TranscriptItem>)>, StoreError> {
        let Some(summary) = self.agents.chat_summary(conversation).await? else { return Ok(None) };
        if summary.store != *store {
            return Ok(None);
        }
        Ok(Some((summary, self.agents.transcript(conversation).await?)))
    }

    /// Per store: chats waiting, chats with an agent, agents available.
    pub async fn gauges(&self) -> Vec<(String, usize, usize, usize)> {
        let state = self.state.lock().await;
        let mut gauges: Vec<_> = state
            .iter()
            .map(|(store, desk)| {
                let waiting = desk.chats.values().filter(|c| c.agent.is_none()).count();
                (store.as_str().to_owned(), waiting, desk.chats.len() - waiting, desk.available())
            })
            .collect();
        gauges.sort();
        gauges
    }

    /// How many of the store's agents are online.
    pub async fn agents_online(&self, store: &StoreId) -> usize {
        self.state.lock().await.get(store).map_or(0, StoreDesk::available)
    }

    /// A shopper's connection has gone.
    pub async fn shopper_left(&self, store: &StoreId, conversation: ConversationId) {
        if let Some(desk) = self.state.lock().await.get_mut(store) {
            desk.shoppers.remove(&conversation);
        }
    }

    /// The bot handed a conversation over: queue it and try to assign it.
    pub async fn enqueue(
        &self,
        store: &StoreId,
        conversation: ConversationId,
        reason: HandoffReason,
        last_text: &str,
        now: Millis,
    ) -> Result<(), StoreError> {
        let vip = self.agents.is_vip(conversation).await?;
        let priority = reason.priority() + if vip { VIP_BONUS } else { 0 };
        self.agents.enqueue(conversation, reason, priority, None, now).await?;
        let mut state = self.state.lock().await;
        let desk = state.entry(store.clone()).or_default();
        desk.chats.insert(
            conversation,
            Chat {
                reason: Some(reason),
                priority,
                group: None,
                queued_at: now,
                agent: None,
                assigned_at: None,
                answered: false,
                passed_over: Vec::new(),
                last_text: Some(last_text.to_owned()),
            },
        );
        self.changed(store, conversation);
        self.dispatch(store, desk, now).await;
        self.tell_place(desk, conversation, Millis::now());
        Ok(())
    }

    /// A shopper wrote while the chat is with the humans: the assigned agent sees it at once.
    pub async fn shopper_wrote(
        &self,
        store: &StoreId,
        conversation: ConversationId,
        message: MessageId,
        text: &str,
        now: Millis,
    ) {
        let agent = {
            let mut state = self.state.lock().await;
            let Some(desk) = state.get_mut(store) else { return };
            let Some(chat) = desk.chats.get_mut(&conversation) else { return };
            chat.last_text = Some(text.to_owned());
            let agent = chat.agent.clone();
            if agent.is_none() {
                desk.queue_changed = true;
            }
            agent
        };
        let Some(agent) = agent else {
            // The other nodes' queues show it too.
            if let Some(cluster) = &self.cluster {
                cluster.tell(Note::Waiting { store: store.clone(), conversation, text: text.to_owned() });
            }
            return;
        };
        self.to_agent_anywhere(store, &agent, conversation, message, text, now).await;
    }

    /// A shopper's message, for the agent who owns the chat: here, or on the node they are on.
    async fn to_agent_anywhere(
        &self,
        store: &StoreId,
        agent: &str,
        conversation: ConversationId,
        message: MessageId,
        text: &str,
        now: Millis,
    ) {
        if !self.to_agent_here(store, agent, conversation, message, text, now).await
            && let Some(cluster) = &self.cluster
        {
            cluster.tell(Note::ShopperMessage {
                store: store.clone(),
                agent: agent.to_owned(),
                conversation,
                message_id: message,
                text: text.to_owned(),
                at: now.0,
            });
        }
    }

    /// A shopper's message, for the agent who owns the chat if they are connected here; false
    /// if they are not (nothing is worked out for them then).
    async fn to_agent_here(
        &self,
        store: &StoreId,
        agent: &str,
        conversation: ConversationId,
        message: MessageId,
        text: &str,
        now: Millis,
    ) -> bool {
        if !self.state.lock().await.get(store).is_some_and(|desk| desk.agents.contains_key(agent)) {
            return false;
        }
        let suggestions = self.suggest(store, text).await;
        let state = self.state.lock().await;
        if let Some(desk) = state.get(store) {
            desk.to_agent(
                agent,
                AgentEvent::ShopperMessage {
                    conversation_id: conversation,
                    message_id: message,
                    text: text.to_owned(),
                    at: now.0,
                    suggestions,
                },
            );
        }
        true
    }

    /// Tells the store's agents online about a spike alert.
    pub async fn alert(&self, store: &StoreId, alert: &crate::store::AlertRow) {
        if let Some(cluster) = &self.cluster {
            cluster.tell(Note::Alert { alert: Box::new(alert.clone()) });
        }
        let state = self.state.lock().await;
        if let Some(desk) = state.get(store) {
            desk.to_agents(&AgentEvent::Alert { alert: alert.into() });
        }
    }

    /// Sends a notice from the store to the shoppers of these conversations: each is stored in
    /// its conversation, then sent to the shopper if they are connected (a shopper who is not
    /// sees it in the history when they come back). Returns how many were stored and how many
    /// went out at once.
    pub async fn notify_shoppers(
        &self,
        store: &StoreId,
        conversations: &[ConversationId],
        text: &str,
        now: Millis,
    ) -> Result<(usize, usize), StoreError> {
        let mut stored = Vec::with_capacity(conversations.len());
        for &conversation in conversations {
            stored.push((conversation, self.agents.append_notice(conversation, text, now).await?));
        }
        let state = self.state.lock().await;
        let mut delivered = 0;
        let desk = state.get(store);
        for (conversation, message_id) in &stored {
            let event =
                ServerEvent::StoreMessage { message_id: *message_id, text: text.to_owned(), at: now.0 };
            match desk.and_then(|desk| desk.shoppers.get(conversation)) {
                Some(shopper) => delivered += usize::from(shopper.try_send(event).is_ok()),
                None => {
                    if let Some(cluster) = &self.cluster {
                        cluster.tell(Note::Shopper {
                            store: store.clone(),
                            conversation: *conversation,
                            event,
                        });
                    }
                }
            }
        }
        Ok((stored.len(), delivered))
    }

    /// Stores the shopper's rating of a closed conversation; false if it is not closed or was
    /// already rated.
    pub async fn rate(
        &self,
        conversation: ConversationId,
        score: u8,
        comment: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.agents.rate(conversation, score, comment).await
    }

    /// An agent comes online. Returns the connection's id (for [`Desk::logout`]); the agent is
    /// sent the queue and every chat they already own.
    pub async fn login(
        &self,
        account: &AgentAccount,
        auto_assign: bool,
        link: AgentLink,
        now: Millis,
    ) -> Result<u64, StoreError> {
        if let Some(cluster) = &self.cluster {
            cluster.agent_here(&account.store, &account.name).await;
        }
        let conn = self.next_conn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        link.send(AgentEvent::Welcome {
            agent: account.name.clone(),
            store: account.store.as_str().to_owned(),
            groups: account.groups.clone(),
            max_chats: account.max_chats,
            auto_assign,
            canned_replies: self.config.canned_replies_for(account.store.as_str()),
        });
        let mut state = self.state.lock().await;
        let desk = state.entry(account.store.clone()).or_default();
        let online = Online {
            conn,
            groups: account.groups.clone(),
            max_chats: account.max_chats,
            auto_assign,
            away: false,
            link,
        };
        if let Some(earlier) = desk.agents.insert(account.name.clone(), online) {
            earlier.link.send(AgentEvent::Error {
                code: "signed_in_elsewhere".into(),
                message: "you signed in on another connection; this one gets nothing more".into(),
            });
        }
        let owned: Vec<ConversationId> = desk
            .chats
            .iter()
            .filter(|(_, c)| c.agent.as_deref() == Some(account.name.as_str()))
            .map(|(id, _)| *id)
            .collect();
        for conversation in owned {
            let event = self.assigned_event(&account.store, desk, conversation).await?;
            desk.to_agent(&account.name, event);
        }
        self.dispatch(&account.store, desk, now).await;
        desk.to_agent(&account.name, AgentEvent::Queue { waiting: queue_items(desk, Millis::now()) });
        Ok(conn)
    }

    /// Signs the store's agent `name` out at once, if they are online (their token was revoked
    /// or replaced); their chats go back to the queue as they do on any sign-out.
    pub async fn sign_out(&self, store: &StoreId, name: &str) {
        if let Some(cluster) = &self.cluster {
            cluster.tell(Note::SignOut { store: store.clone(), agent: name.to_owned() });
        }
        self.sign_out_here(store, name).await;
    }

    async fn sign_out_here(&self, store: &StoreId, name: &str) {
        let state = self.state.lock().await;
        if let Some(online) = state.get(store).and_then(|desk| desk.agents.get(name)) {
            online.link.end();
        }
    }

    /// An agent sets themselves offline (`away`: no new chats; their open chats stay theirs)
    /// or back online.
    pub async fn set_away(&self, agent: &AgentAccount, away: bool, now: Millis) {
        let mut state = self.state.lock().await;
        let Some(desk) = state.get_mut(&agent.store) else { return };
        if let Some(online) = desk.agents.get_mut(&agent.name) {
            online.away = away;
        }
        desk.to_agent(&agent.name, AgentEvent::Presence { online: !away });
        self.dispatch(&agent.store, desk, now).await;
    }

    /// An agent's connection ended (or they went offline): their chats go back to the front of
    /// the queue, for others.
    pub async fn logout(&self, store: &StoreId, agent: &str, conn: u64, now: Millis) {
        let mut state = self.state.lock().await;
        let Some(desk) = state.get_mut(store) else { return };
        if desk.agents.get(agent).is_none_or(|a| a.conn != conn) {
            return;
        }
        desk.agents.remove(agent);
        if let Some(cluster) = &self.cluster {
            cluster.agent_gone(store, agent).await;
        }
        let owned: Vec<ConversationId> =
            desk.chats.iter().filter(|(_, c)| c.agent.as_deref() == Some(agent)).map(|(id, _)| *id).collect();
        for conversation in owned {
            if let Err(error) = self.requeue(store, desk, conversation, None, now).await {
                tracing::error!(%error, %conversation, "requeueing an offline agent's chat failed");
            }
        }
        self.dispatch(store, desk, now).await;
    }

    /// An agent takes a waiting chat from the queue.
    pub async fn claim(
        &self,
        agent: &AgentAccount,
        conversation: ConversationId,
        now: Millis,
    ) -> Result<(), DeskError> {
        let mut state = self.state.lock().await;
        let desk = state.get_mut(&agent.store).ok_or(DeskError::NotFound)?;
        let chat = desk.chats.get(&conversation).ok_or(DeskError::NotFound)?;
        if chat.agent.is_some() {
            return Err(DeskError::AlreadyTaken);
        }
        if desk.load(&agent.name) >= agent.max_chats as usize {
            return Err(DeskError::AtCapacity);
        }
        if !self.assign(&agent.store, desk, conversation, &agent.name, now).await? {
            return Err(DeskError::AlreadyTaken);
        }
        desk.queue_changed = true;
        Ok(())
    }

    /// An agent's message to the shopper.
    pub async fn reply(
        &self,
        agent: &AgentAccount,
        conversation: ConversationId,
        text: &str,
        now: Millis,
    ) -> Result<MessageId, DeskError> {
        let mut state = self.state.lock().await;
        let desk = state.get_mut(&agent.store).ok_or(DeskError::NotFound)?;
        desk.owned_by(agent, conversation)?;
        let id = self.agents.append_agent_message(conversation, &agent.name, text, now).await?;
        if let Some(chat) = desk.chats.get_mut(&conversation) {
            chat.answered = true;
        }
        self.to_shopper_anywhere(
            &agent.store,
            desk,
            conversation,
            ServerEvent::AgentMessage {
                message_id: id,
                agent: agent.name.clone(),
                text: text.to_owned(),
                at: now.0,
            },
        );
        Ok(id)
    }

    /// Passes a chat to another agent (who must be online with room) or to a skill group's queue.
    pub async fn transfer(
        &self,
        agent: &AgentAccount,
        conversation: ConversationId,
        to_agent: Option<&str>,
        to_group: Option<&str>,
        now: Millis,
    ) -> Result<(), DeskError> {
        let mut state = self.state.lock().await;
        let desk = state.get_mut(&agent.store).ok_or(DeskError::NotFound)?;
        let chat = desk.owned_by(agent, conversation)?;
        if let Some(target) = to_agent {
            let online = desk
                .agents
                .get(target)
                .ok_or_else(|| DeskError::CannotTransfer(format!("{target} is not online")))?;
            if desk.load(target) >= online.max_chats as usize {
                return Err(DeskError::CannotTransfer(format!("{target} has no room for another chat")));
            }
        }
        let group = to_group.map(str::to_owned).or_else(|| chat.group.clone());
        self.agents
            .enqueue(
                conversation,
                HandoffReason::AgentTransfer,
                HandoffReason::AgentTransfer.priority(),
                group.as_deref(),
                now,
            )
            .await?;
        if let Some(chat) = desk.chats.get_mut(&conversation) {
            chat.agent = None;
            chat.assigned_at = None;
            chat.reason = Some(HandoffReason::AgentTransfer);
            chat.priority = HandoffReason::AgentTransfer.priority();
            chat.group = group;
            chat.queued_at = now;
        }
        desk.to_agent(
            &agent.name,
            AgentEvent::Unassigned { conversation_id: conversation, why: "transferred".into() },
        );
        if let Some(target) = to_agent
            && !self.assign(&agent.store, desk, conversation, target, now).await?
        {
            return Err(DeskError::AlreadyTaken);
        }
        self.to_shopper_anywhere(
            &agent.store,
            desk,
            conversation,
            ServerEvent::Status {
                status: ChatStatus::WaitingForAgent,
                reason: Some(HandoffReason::AgentTransfer),
                agent: None,
            },
        );
        self.changed(&agent.store, conversation);
        self.dispatch(&agent.store, desk, now).await;
        Ok(())
    }

    /// Ends a chat: `Closed` (the shopper is asked for a rating) or `Bot` (handed back).
    pub async fn release(
        &self,
        agent: &AgentAccount,
        conversation: ConversationId,
        status: ChatStatus,
        now: Millis,
    ) -> Result<(), DeskError> {
        let mut state = self.state.lock().await;
        let desk = state.get_mut(&agent.store).ok_or(DeskError::NotFound)?;
        desk.owned_by(agent, conversation)?;
        self.agents.release(conversation, status, now).await?;
        desk.chats.remove(&conversation);
        desk.to_agent(&agent.name, AgentEvent::Released { conversation_id: conversation, status });
        self.changed(&agent.store, conversation);
        let status_event = ServerEvent::Status { status, reason: None, agent: None };
        self.to_shopper_anywhere(&agent.store, desk, conversation, status_event);
        if status == ChatStatus::Closed {
            self.to_shopper_anywhere(
                &agent.store,
                desk,
                conversation,
                ServerEvent::RateRequest {
                    text:
                        "本次服务已结束，请为客服打分（1–5 分）。Please rate this conversation from 1 to 5."
                            .into(),
                },
            );
        }
        self.dispatch(&agent.store, desk, now).await;
        Ok(())
    }

    /// Takes back chats whose agent has not answered in time, or whose agent is gone (after a
    /// restart), and assigns them again. Runs every half second.
    pub async fn sweep(&self, now: Millis) {
        let timeout =
            i64::try_from(self.config.agents.answer_timeout_seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
        // With other nodes, each node times out its own agents' chats; the node holding the
        // sweep lease also takes back the chats of agents signed in nowhere (their node died).
        let elsewhere = self.present_elsewhere().await;
        let clustered = self.cluster.is_some();
        let mut state = self.state.lock().await;
        let stores: Vec<StoreId> = state.keys().cloned().collect();
        for store in stores {
            let Some(desk) = state.get_mut(&store) else { continue };
            let overdue: Vec<(ConversationId, String)> = desk
                .chats
                .iter()
                .filter_map(|(id, c)| {
                    let agent = c.agent.as_ref()?;
                    let late = now.0 - c.assigned_at.map_or(c.queued_at.0, |a| a.0) >= timeout;
                    let here = desk.agents.contains_key(agent);
                    let take_back = if !clustered {
                        late && (!c.answered || !here)
                    } else if here {
                        late && !c.answered
                    } else {
                        elsewhere.as_ref().is_some_and(|e| !e.contains(&format!("{store}/{agent}")))
                    };
                    take_back.then(|| (*id, agent.clone()))
                })
                .collect();
            if overdue.is_empty() {
                continue;
            }
            for (conversation, agent) in overdue {
                desk.to_agent(
                    &agent,
                    AgentEvent::Unassigned {
                        conversation_id: conversation,
                        why: "not answered in time".into(),
                    },
                );
                if let Err(error) = self.requeue(&store, desk, conversation, Some(agent), now).await {
                    tracing::error!(%error, %conversation, "requeueing an unanswered chat failed");
                }
            }
            self.dispatch(&store, desk, now).await;
        }
    }

    /// Puts an assigned chat back at the front of the queue.
    async fn requeue(
        &self,
        store: &StoreId,
        desk: &mut StoreDesk,
        conversation: ConversationId,
        passed_over: Option<String>,
        now: Millis,
    ) -> Result<(), StoreError> {
        let Some(chat) = desk.chats.get_mut(&conversation) else { return Ok(()) };
        let reason = chat.reason.unwrap_or(HandoffReason::AskedForHuman);
        let priority = FRONT + reason.priority();
        self.agents.enqueue(conversation, reason, priority, chat.group.as_deref(), chat.queued_at).await?;
        chat.agent = None;
        chat.assigned_at = None;
        chat.answered = false;
        chat.priority = priority;
        chat.passed_over.extend(passed_over);
        self.to_shopper_anywhere(
            store,
            desk,
            conversation,
            ServerEvent::Status { status: ChatStatus::WaitingForAgent, reason: Some(reason), agent: None },
        );
        self.changed(store, conversation);
        let _ = now;
        Ok(())
    }

    /// Assigns every waiting chat it can, then tells everyone where things stand.
    async fn dispatch(&self, store: &StoreId, desk: &mut StoreDesk, now: Millis) {
        let waiting: Vec<(ConversationId, Option<String>, Vec<String>)> =
            desk.waiting().into_iter().map(|(id, c)| (id, c.group.clone(), c.passed_over.clone())).collect();
        for (conversation, group, passed_over) in waiting {
            let choice = desk
                .agents
                .iter()
                .filter(|(_, a)| a.auto_assign && !a.away)
                .filter(|(_, a)| group.as_ref().is_none_or(|g| a.groups.contains(g)))
                .map(|(name, a)| {
                    (passed_over.contains(name), desk.load(name), name.clone(), a.max_chats as usize)
                })
                .filter(|(_, load, _, max)| load < max)
                .min_by(|a, b| (a.0, a.1, &a.2).cmp(&(b.0, b.1, &b.2)))
                .map(|(_, _, name, _)| name);
            let Some(agent) = choice else { continue };
            if let Err(error) = self.assign(store, desk, conversation, &agent, now).await {
                tracing::error!(%error, %conversation, "assigning a chat failed");
            }
        }
        desk.queue_changed = true;
    }

    /// Gives a waiting chat to `agent` in the database, then tells both sides. False if the
    /// database says it was no longer waiting.
    async fn assign(
        &self,
        store: &StoreId,
        desk: &mut StoreDesk,
        conversation: ConversationId,
        agent: &str,
        now: Millis,
    ) -> Result<bool, StoreError> {
        if !self.agents.assign(conversation, agent, now).await? {
            desk.chats.remove(&conversation);
            return Ok(false);
        }
        if let Some(chat) = desk.chats.get_mut(&conversation) {
            chat.agent = Some(agent.to_owned());
            chat.assigned_at = Some(now);
            chat.answered = false;
        }
        self.changed(store, conversation);
        let event = self.assigned_event(store, desk, conversation).await?;
        desk.to_agent(agent, event);
        self.to_shopper_anywhere(
            store,
            desk,
            conversation,
            ServerEvent::Status {
                status: ChatStatus::WithAgent,
                reason: None,
                agent: Some(agent.to_owned()),
            },
        );
        tracing::info!(store = %store, %conversation, agent, "chat assigned");
        Ok(true)
    }
}
