//! A shopper's session: one connection's conversation, from `hello` to the bot's replies.
//!
//! The session turns protocol events into storage writes and triage calls, and carries out the
//! decision: it acknowledges a message only once it is stored, runs triage off the async
//! threads, stores the reply together with the conversation's new state, and stays silent once
//! the conversation belongs to a person (`waiting_for_agent` or `with_agent`). When the bot is
//! to answer, it decides first and stores the message and its reply in one transaction.

use std::sync::Arc;

use tokio::sync::mpsc;

use std::collections::BTreeMap;

use crate::actions::Actions;
use crate::config::{Config, Reception};
use crate::domain::{
    ChatStatus, ClientMessageId, Clock, HandoffReason, Lang, MessageId, ResumeToken, StoreId, TaskState,
};
use crate::encoder::Embedded;
use crate::escalation::Desk;
use crate::knowledge::KnowledgeBase;
use crate::library::Library;
use crate::metrics::Metrics;
use crate::protocol::{ClientEvent, ErrorCode, HistoryItem, ProtocolError, ReplyKind, ServerEvent};
use crate::store::{Appended, BotTurn, Conversation, Insights, NewFeedback, Store, StoreError};
use crate::triage::{ChatContext, Decision, SemanticUse, TaskCall, Triaged, triage};

/// Why a session could not go on with an event.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The client did something the protocol does not allow; tell it and carry on.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// Storage failed; nothing was acknowledged.
    #[error("storage failed: {0}")]
    Store(#[from] StoreError),
    /// The message is stored and acknowledged, but the reply could not be stored, so it was not
    /// sent (an unstored handoff must not be announced).
    #[error("storing the reply failed: {0}")]
    Reply(StoreError),
    /// The connection's writer has gone; stop.
    #[error("the connection is closed")]
    Disconnected,
}

/// The bot's turn on one message: what is stored, and what is sent.
struct Turn {
    stored: BotTurn,
    kind: ReplyKind,
    source: Option<crate::protocol::AnswerSource>,
    suggestions: Vec<String>,
    trace: crate::triage::Trace,
    decided: f64,
}

/// One shopper connection's session.
pub struct Session {
    store_id: StoreId,
    library: Arc<Library>,
    desk: Arc<Desk>,
    store: Arc<dyn Store>,
    insights: Arc<dyn Insights>,
    config: Arc<Config>,
    clock: Clock,
    metrics: Arc<Metrics>,
    cluster: Option<Arc<crate::cluster::Cluster>>,
    actions: Arc<Actions>,
    conversation: Option<Conversation>,
    out: mpsc::Sender<ServerEvent>,
}

/// What every session shares: cheap handles, cloned per connection.
#[derive(Clone)]
pub struct Services {
    /// The stores' live knowledge.
    pub library: Arc<Library>,
    /// The queue and the agents.
    pub desk: Arc<Desk>,
    /// Conversations and messages.
    pub store: Arc<dyn Store>,
    /// Feedback on answers.
    pub insights: Arc<dyn Insights>,
    /// The configuration.
    pub config: Arc<Config>,
    /// "Now".
    pub clock: Clock,
    /// Operators' metrics.
    pub metrics: Arc<Metrics>,
    /// The other nodes, when there are any.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Calls to the stores' endpoints for tasks.
    pub actions: Arc<Actions>,
}

impl Session {
    /// The hello's shopper id if the storefront signed it with the store's identity secret;
    /// `None` (anonymous) when it is unsigned or the store has no secret; an error when the
    /// signature is wrong. Unsigned ids are never trusted: anyone can type a VIP's member id.
    async fn identify(
        &self,
        shopper: Option<String>,
        signature: Option<String>,
    ) -> Result<Option<String>, SessionError> {
        let Some(shopper) = shopper.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let max_id = self.config.chat.max_id_chars;
        if shopper.chars().count() > max_id {
            return Err(ProtocolError::new(
                ErrorCode::InvalidId,
                format!("'shopper' is at most {max_id} characters"),
            )
            .into());
        }
        let Some(signature) = signature else { return Ok(None) };
        let secret = self.library.identity_secret(&self.store_id).await?;
        match secret {
            Some(secret) if crate::domain::shopper_signed(&secret, &shopper, &signature) => Ok(Some(shopper)),
            Some(_) => Err(ProtocolError::new(
                ErrorCode::InvalidShopperSignature,
                "shopper_signature is not the HMAC-SHA256 of this shopper id under the store's identity secret",
            )
            .into()),
            None => Err(ProtocolError::new(
                ErrorCode::InvalidShopperSignature,
                "this store has no identity secret yet; the merchant issues one with the API (identity/rotate)",
            )
            .into()),
        }
    }

    /// Whether the shopper has said hello.
    pub fn started(&self) -> bool {
        self.conversation.is_some()
    }

    /// A session with a shopper of `store_id`, sending its events to `out`.
    pub fn new(store_id: StoreId, services: Services, out: mpsc::Sender<ServerEvent>) -> Self {
        let Services { library, desk, store, insights, config, clock, metrics, cluster, actions } = services;
        Self {
            store_id,
            library,
            desk,
            store,
            insights,
            config,
            clock,
            metrics,
            cluster,
            actions,
            conversation: None,
            out,
        }
    }

    /// The connection has ended: the desk stops sending to it.
    pub async fn finish(&self) {
        if let Some(conversation) = &self.conversation {
            self.desk.shopper_left(&self.store_id, conversation.id).await;
        }
    }

    /// The store's knowledge as of now: a new pack version applies from the next message on.
    fn knowledge(&self) -> Result<Arc<KnowledgeBase>, SessionError> {
        self.library.get(&self.store_id).ok_or_else(|| {
            ProtocolError::new(
                ErrorCode::UnknownStore,
                format!("store {:?} is no longer served", self.store_id.as_str()),
            )
            .into()
        })
    }

    /// Handles one event from the client.
    pub async fn handle(&mut self, event: ClientEvent) -> Result<(), SessionError> {
        match event {
            ClientEvent::Hello { resume_token, product, shopper, shopper_signature } => {
                let shopper = self.identify(shopper, shopper_signature).await?;
                self.hello(resume_token, product, shopper).await
            }
            ClientEvent::Feedback { message_id, helpful } => self.feedback(message_id, helpful).await,
            ClientEvent::Message { id, text } => self.message(id, text).await,
            ClientEvent::Rate { score, comment } => self.rate(score, comment).await,
        }
    }

    async fn feedback(&mut self, message: String, helpful: bool) -> Result<(), SessionError> {
        let Some(conversation) = &self.conversation else {
            return Err(ProtocolError::new(ErrorCode::HelloRequired, "send a hello frame first").into());
        };
        let not_a_reply = || {
            SessionError::from(ProtocolError::new(
                ErrorCode::InvalidFeedback,
                "only the bot's replies in this conversation can be voted on",
            ))
        };
        let message =
            crate::ids::decode(crate::ids::Kind::Message, &message).map(MessageId).ok_or_else(not_a_reply)?;
        let vote = NewFeedback {
            conversation: conversation.id,
            message,
            source: "shopper",
            helpful: Some(helpful),
            note: None,
            author: None,
            at: self.clock.now(),
        };
        if !self.insights.add_feedback(vote).await? {
            return Err(not_a_reply());
        }
        self.send(ServerEvent::FeedbackNoted { message_id: message }).await
    }

    async fn rate(&mut self, score: u8, comment: Option<String>) -> Result<(), SessionError> {
        let Some(conversation) = &self.conversation else {
            return Err(ProtocolError::new(ErrorCode::HelloRequired, "send a hello frame first").into());
        };
        if !(1..=5).contains(&score) {
            return Err(ProtocolError::new(ErrorCode::InvalidRating, "the score must be 1 to 5").into());
        }
        let comment = comment.as_deref().map(str::trim).filter(|c| !c.is_empty());
        if !self.desk.rate(conversation.id, score, comment).await? {
            return Err(ProtocolError::new(
                ErrorCode::InvalidRating,
                "only a conversation an agent has closed can be rated, once",
            )
            .into());
        }
        self.send(ServerEvent::Rated { score }).await
    }

    async fn send(&self, event: ServerEvent) -> Result<(), SessionError> {
        self.out.send(event).await.map_err(|_| SessionError::Disconnected)
    }

    async fn hello(
        &mut self,
        token: Option<ResumeToken>,
        product: Option<String>,
        shopper: Option<String>,
    ) -> Result<(), SessionError> {
        if self.conversation.is_some() {
            return Err(ProtocolError::new(
                ErrorCode::AlreadyStarted,
                "this connection already has a conversation",
            )
            .into());
        }
        // A product page the store does not know is ignored rather than refused: the chat works.
        let knowledge = self.knowledge()?;
        let product = product.filter(|sku| knowledge.catalog().by_sku(sku).is_some());
        let (mut conversation, resumed) = match token {
            None => (
                self.store
                    .create_conversation(
                        &self.store_id,
                        product.as_deref(),
                        shopper.as_deref(),
                        self.clock.now(),
                    )
                    .await?,
                false,
            ),
            Some(token) => {
                let found = self.store.conversation_by_token(&self.store_id, &token).await?;
                let conversation = found.ok_or_else(|| {
                    ProtocolError::new(
                        ErrorCode::UnknownResumeToken,
                        "no conversation of this store has that resume token; say hello without one to start anew",
                    )
                })?;
                if conversation.status == ChatStatus::Closed {
                    return Err(ProtocolError::new(
                        ErrorCode::ConversationClosed,
                        "that conversation is closed; say hello without a resume token to start a new one",
                    )
                    .into());
                }
                (conversation, true)
            }
        };
        if resumed && product.is_some() && product != conversation.product {
            self.store.set_product(conversation.id, product.as_deref()).await?;
            conversation.product = product;
        }
        let history = if resumed {
            self.store.history(conversation.id, self.config.chat.history_limit).await?
        } else {
            Vec::new()
        };
        let welcome = ServerEvent::Welcome {
            identified: conversation.shopper.is_some(),
            conversation_id: conversation.id,
            resume_token: conversation.resume_token.clone(),
            resumed,
            status: conversation.status,
            history: history
                .into_iter()
                .map(|m| HistoryItem { role: m.role, text: m.text, at: m.at.0 })
                .collect(),
        };
        tracing::info!(store = %self.store_id, conversation = %conversation.id, resumed, "conversation open");
        let id = conversation.id;
        self.conversation = Some(conversation);
        self.send(welcome).await?;
        self.desk.shopper_joined(&self.store_id, id, self.out.clone()).await;
        Ok(())
    }

    async fn message(&mut self, id: ClientMessageId, text: String) -> Result<(), SessionError> {
        let max = self.config.chat.max_message_chars;
        let Some(conversation) = self.conversation.as_ref() else {
            return Err(ProtocolError::new(
                ErrorCode::HelloRequired,
                "send a hello frame before any message",
            )
            .into());
        };
        if conversation.status == ChatStatus::Closed {
            return Err(
                ProtocolError::new(ErrorCode::ConversationClosed, "this conversation is closed").into()
            );
        }
        let max_id = self.config.chat.max_id_chars;
        let id_chars = id.0.chars().count();
        if id.0.trim().is_empty() || id_chars > max_id {
            return Err(ProtocolError::new(
                ErrorCode::InvalidId,
                format!("a message's 'id' must be 1 to {max_id} characters; this one has {id_chars}"),
            )
            .into());
        }
        let text = text.trim();
        if text.is_empty() {
            return Err(ProtocolError::new(ErrorCode::EmptyMessage, "the message text is empty").into());
        }
        let chars = text.chars().count();
        if chars > max {
            return Err(ProtocolError::new(
                ErrorCode::MessageTooLong,
                format!("the message has {chars} characters; at most {max} are accepted"),
            )
            .into());
        }
        let conversation = conversation.clone();
        let Some(cluster) = self.cluster.clone() else {
            return self.take_message(id, conversation, text).await;
        };
        // With other nodes, one node at a time decides a conversation's messages (the shopper
        // may have reconnected to another node mid-reply), from its state as stored.
        let lease = cluster.begin_conversation(conversation.id).await;
        let decided = async {
            let stored = self.store.conversation_by_token(&self.store_id, &conversation.resume_token).await?;
            let conversation = stored.unwrap_or(conversation);
            self.conversation = Some(conversation.clone());
            self.take_message(id, conversation, text).await
        }
        .await;
        if let Some(lease) = lease {
            cluster.end_conversation(lease).await;
        }
        decided
    }

    /// Decides, stores and sends the bot's part for one shopper message.
    async fn take_message(
        &mut self,
        id: ClientMessageId,
        conversation: Conversation,
        text: &str,
    ) -> Result<(), SessionError> {
        // The common case: the bot answers. It decides first, then the message and its reply
        // are stored in one transaction (one commit, not two), then the ack and the reply go out.
        if conversation.status == ChatStatus::Bot && !self.to_people().await {
            let deciding = std::time::Instant::now();
            let triaged = self.decide(&conversation, text.to_owned()).await?;
            let decided = deciding.elapsed().as_secs_f64();
            if matches!(triaged.decision, Decision::Act { .. }) {
                // The store's endpoint may take its whole timeout: the message is stored and
                // acknowledged first, and the reply stored on its own once the call is over.
                let appended =
                    self.store.append_shopper_message(conversation.id, &id, text, self.clock.now()).await?;
                self.acknowledge(&id, &appended).await?;
                if appended.duplicate {
                    return Ok(());
                }
                if appended.status != ChatStatus::Bot {
                    return self.after_stored(id, &conversation, text, appended).await;
                }
                let mut turn = self.turn(&conversation, triaged, decided).await?;
                turn.stored.in_reply_to = appended.id;
                let message_id =
                    self.store.record_bot_turn(&turn.stored).await.map_err(SessionError::Reply)?;
                return self.reply(id, &conversation, text, turn, message_id).await;
            }
            let turn = self.turn(&conversation, triaged, decided).await?;
            let (appended, reply) = self
                .store
                .append_shopper_message_with_reply(&id, text, self.clock.now(), &turn.stored)
                .await?;
            self.acknowledge(&id, &appended).await?;
            if appended.duplicate {
                return Ok(());
            }
            return match reply {
                Some(message_id) => self.reply(id, &conversation, text, turn, message_id).await,
                // People took the chat meanwhile: the reply was not stored, and is dropped.
                None => self.after_stored(id, &conversation, text, appended).await,
            };
        }

        let appended =
            self.store.append_shopper_message(conversation.id, &id, text, self.clock.now()).await?;
        self.acknowledge(&id, &appended).await?;
        if appended.duplicate {
            return Ok(());
        }
        self.after_stored(id, &conversation, text, appended).await
    }

    /// Whether people answer this store's shoppers first, now.
    async fn to_people(&self) -> bool {
        match self.config.reception_for(self.store_id.as_str()) {
            Reception::BotFirst => false,
            Reception::HumanFirst => self.desk.agents_online(&self.store_id).await > 0,
            Reception::AssistOnly => true,
        }
    }

    /// Takes the stored message's status and sends its `ack`.
    async fn acknowledge(&mut self, id: &ClientMessageId, appended: &Appended) -> Result<(), SessionError> {
        if let Some(current) = self.conversation.as_mut() {
            current.status = appended.status;
        }
        if !appended.duplicate {
            self.metrics.message(self.store_id.as_str());
        }
        self.send(ServerEvent::Ack { id: id.clone(), message_id: appended.id, duplicate: appended.duplicate })
            .await
    }

    /// What follows a stored (and acknowledged) new message that has no reply yet: people see
    /// it, or the chat goes to them, or the bot decides and its reply is stored on its own.
    async fn after_stored(
        &mut self,
        id: ClientMessageId,
        conversation: &Conversation,
        text: &str,
        appended: Appended,
    ) -> Result<(), SessionError> {
        if matches!(appended.status, ChatStatus::WaitingForAgent | ChatStatus::WithAgent) {
            self.desk
                .shopper_wrote(&self.store_id, conversation.id, appended.id, text, self.clock.now())
                .await;
            return Ok(());
        }
        if appended.status != ChatStatus::Bot {
            return Ok(());
        }
        if self.to_people().await {
            let reason = HandoffReason::Reception;
            if let Some(current) = self.conversation.as_mut() {
                current.status = ChatStatus::WaitingForAgent;
                current.handoff_reason = Some(reason);
            }
            // The status goes first: queueing may assign the chat at once, and say so.
            let status = ServerEvent::Status {
                status: ChatStatus::WaitingForAgent,
                reason: Some(reason),
                agent: None,
            };
            self.send(status).await?;
            self.desk.enqueue(&self.store_id, conversation.id, reason, text, self.clock.now()).await?;
            return Ok(());
        }
        // The chat came back to the bot since this session last looked (an agent handed it
        // back): decide now, and store the reply on its own.
        let mut current = conversation.clone();
        current.status = ChatStatus::Bot;
        let mut turn = self.compose(&current, text).await?;
        turn.stored.in_reply_to = appended.id;
        // People may have changed the stored state: write all of it.
        turn.stored.changes_state = true;
        let message_id = self.store.record_bot_turn(&turn.stored).await.map_err(SessionError::Reply)?;
        self.reply(id, &current, text, turn, message_id).await
    }

    /// Decides the bot's turn on `text` (off the async threads) and the state it leaves.
    async fn compose(&self, conversation: &Conversation, text: &str) -> Result<Turn, SessionError> {
        let deciding = std::time::Instant::now();
        let triaged = self.decide(conversation, text.to_owned()).await?;
        let decided = deciding.elapsed().as_secs_f64();
        self.turn(conversation, triaged, decided).await
    }

    /// The bot's turn for a decision, and the state it leaves; a task is done with the store's
    /// endpoint first.
    async fn turn(
        &self,
        conversation: &Conversation,
        triaged: Triaged,
        decided: f64,
    ) -> Result<Turn, SessionError> {
        let mut triaged = triaged;
        let mut task = TaskState { pending: triaged.pending.clone(), failures: conversation.task.failures };
        let mut action_failed = false;
        if let Decision::Act { intent, slots, lang } = &triaged.decision {
            let (text, call, failed) =
                self.act(conversation, triaged.product.as_deref(), intent, slots, *lang).await?;
            triaged.trace.task = call;
            triaged.decision = if failed && self.actions.failed(&mut task) {
                let handing = match lang {
                    Lang::Zh => "正在为您转接人工客服，请稍候。",
                    Lang::En => "I'm connecting you with a person; please hold on.",
                };
                Decision::Escalate { reason: HandoffReason::ActionFailed, text: format!("{text}\n{handing}") }
            } else {
                action_failed = failed;
                let source = crate::protocol::AnswerSource::Intent;
                Decision::Answer { source, text, suggestions: Vec::new(), notify: false }
            };
        }
        let (kind, source, reply, suggestions, handoff) = match triaged.decision {
            Decision::Answer { source, text, suggestions, notify } => {
                let handoff = notify.then_some(HandoffReason::NotifyFlag);
                (ReplyKind::Answer, Some(source), text, suggestions, handoff)
            }
            Decision::Clarify { text, suggestions } => (ReplyKind::Clarify, None, text, suggestions, None),
            Decision::Fallback { text } => (ReplyKind::Fallback, None, text, Vec::new(), None),
            Decision::Escalate { reason, text } => (ReplyKind::Handoff, None, text, Vec::new(), Some(reason)),
            Decision::Act { .. } => unreachable!("a task is done above"),
        };
        // A failed task reads as a fallback to the shopper and is counted as its own cause.
        let kind = if action_failed { ReplyKind::Fallback } else { kind };
        let consecutive_fallbacks = match kind {
            ReplyKind::Fallback => conversation.consecutive_fallbacks + 1,
            ReplyKind::Clarify => conversation.consecutive_fallbacks,
            ReplyKind::Answer | ReplyKind::Handoff => 0,
        };
        let status = if handoff.is_some() { ChatStatus::WaitingForAgent } else { ChatStatus::Bot };
        if handoff.is_some() {
            task.pending = None;
        }
        let changes_state = status != conversation.status
            || handoff.is_some()
            || consecutive_fallbacks != conversation.consecutive_fallbacks
            || triaged.product != conversation.product
            || task != conversation.task;
        let stored = BotTurn {
            conversation: conversation.id,
            // Set when the shopper's message is stored.
            in_reply_to: MessageId(0),
            text: reply,
            trace: serde_json::to_value(&triaged.trace).unwrap_or_default(),
            status,
            changes_state,
            handoff_reason: handoff,
            consecutive_fallbacks,
            product: triaged.product.clone(),
            task,
            kind: if action_failed { "action_failed" } else { kind.as_str() },
            entry: triaged.trace.matched.clone(),
            at: self.clock.now(),
        };
        Ok(Turn { stored, kind, source, suggestions, trace: triaged.trace, decided })
    }

    /// Sends the stored reply, and hands the chat over if the turn says so.
    async fn reply(
        &mut self,
        id: ClientMessageId,
        conversation: &Conversation,
        text: &str,
        turn: Turn,
        message_id: MessageId,
    ) -> Result<(), SessionError> {
        let Turn { stored, kind, source, suggestions, trace, decided } = turn;
        let handoff = stored.handoff_reason;
        self.metrics.reply(self.store_id.as_str(), kind.as_str(), decided);
        if let Some(current) = self.conversation.as_mut() {
            current.status = stored.status;
            current.consecutive_fallbacks = stored.consecutive_fallbacks;
            current.product = stored.product;
            current.task = stored.task;
            current.handoff_reason = handoff.or(current.handoff_reason);
        }
        self.send(ServerEvent::Reply {
            in_reply_to: id,
            message_id,
            kind,
            source,
            text: stored.text,
            suggestions,
            trace: Box::new(trace),
        })
        .await?;
        if let Some(reason) = handoff {
            tracing::info!(store = %self.store_id, conversation = %conversation.id, reason = reason.as_str(), "handed over");
            self.send(ServerEvent::Status { status: stored.status, reason: Some(reason), agent: None })
                .await?;
            self.desk.enqueue(&self.store_id, conversation.id, reason, text, self.clock.now()).await?;
        }
        Ok(())
    }

    /// Does task intent `intent` with the store's endpoint: the reply, the call's trace, and
    /// whether it failed. A store with no endpoint for the task gets the intent's response.
    async fn act(
        &self,
        conversation: &Conversation,
        product: Option<&str>,
        intent: &str,
        slots: &BTreeMap<String, String>,
        lang: Lang,
    ) -> Result<(String, Option<TaskCall>, bool), SessionError> {
        let knowledge = self.knowledge()?;
        let intents = knowledge.intents();
        let Some(intent) = intents.find(intent).map(|i| intents.get(i)) else {
            return Ok((fallback_text(lang).to_owned(), None, true));
        };
        let Some(task) = &intent.task else {
            return Ok((intent.response.get(lang).to_owned(), None, false));
        };
        let values = serde_json::to_value(slots).unwrap_or_default();
        let failed_text = || {
            let own = task.failed.as_ref().map(|t| t.get(lang));
            own.and_then(|t| crate::intents::template::render(t, &values).ok())
                .unwrap_or_else(|| fallback_text(lang).to_owned())
        };
        let endpoint = match self.actions.endpoint(&self.store_id, &task.name).await {
            Ok(endpoint) => endpoint,
            Err(error) => {
                tracing::warn!(store = %self.store_id, task = %task.name, %error, "reading the store's endpoint failed");
                return Ok((failed_text(), None, true));
            }
        };
        let Some(endpoint) = endpoint else {
            // No system to ask: the intent's own response, with the slots.
            let text = crate::intents::template::render(intent.response.get(lang), &values)
                .unwrap_or_else(|_| intent.response.get(lang).to_owned());
            return Ok((text, None, false));
        };
        let request = crate::actions::Request {
            task: &task.name,
            store: &self.store_id,
            conversation: conversation.id.to_string(),
            shopper: conversation.shopper.as_deref(),
            product,
            lang: lang.as_str(),
            slots,
            at: self.clock.now().0,
        };
        let mut called = self.actions.call(&endpoint, &request).await;
        let reply = called.answer.as_ref().map_err(Clone::clone).and_then(|answer| {
            let mut values = values.clone();
            if let (Some(all), Some(fields)) = (values.as_object_mut(), answer.as_object()) {
                all.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            crate::intents::template::render(task.answer.get(lang), &values)
                .map_err(|e| format!("the answer does not fill the reply: {e}"))
        });
        self.metrics.task(self.store_id.as_str(), &task.name, reply.is_ok());
        match reply {
            Ok(text) => Ok((text, Some(called.trace), false)),
            Err(error) => {
                tracing::warn!(store = %self.store_id, task = %task.name, %error, "a task failed");
                called.trace.error = Some(error);
                Ok((failed_text(), Some(called.trace), true))
            }
        }
    }

    /// Decides on lexical signals first, off the async threads. When that is not settled (no
    /// rule, product field or confident answer decided), the message's embedding is fetched
    /// (cache, or the encoder within its budget) and the decision made again with it.
    async fn decide(&self, conversation: &Conversation, text: String) -> Result<Triaged, SessionError> {
        let knowledge = self.knowledge()?;
        let now = self.clock.now();
        let ctx = ChatContext {
            consecutive_fallbacks: conversation.consecutive_fallbacks,
            product: conversation.product.clone(),
            pending: conversation.task.pending.clone(),
        };
        let encoder = self.library.encoder().get();
        // Seen before: both passes in one trip to a blocking thread, and the same decision as
        // when the vector had to be waited for (a settled lexical decision stands).
        let cached =
            encoder.as_ref().filter(|_| knowledge.semantic().is_some()).and_then(|e| e.cached_query(&text));
        if let Some(vector) = cached {
            let mut triaged = self.triage_blocking(&knowledge, &text, &ctx, now, Some(vector), true).await;
            let used = if triaged.trace.semantic == Some(SemanticUse::Skipped) {
                SemanticUse::Skipped
            } else {
                SemanticUse::Cached
            };
            triaged.trace.semantic = Some(used);
            self.metrics.semantic(used.as_str());
            return Ok(triaged);
        }
        let lexical = self.triage_blocking(&knowledge, &text, &ctx, now, None, false).await;
        let (used, vector) = match encoder {
            None => (SemanticUse::Unavailable, None),
            Some(_) if lexical.settled => (SemanticUse::Skipped, None),
            Some(_) if knowledge.semantic().is_none() => (SemanticUse::Pending, None),
            Some(encoder) => match encoder.query(&text).await {
                Embedded::Encoded(v) => (SemanticUse::Encoded, Some(v)),
                Embedded::Cached(v) => (SemanticUse::Cached, Some(v)),
                Embedded::Shed => (SemanticUse::Shed, None),
                Embedded::Failed => (SemanticUse::Unavailable, None),
            },
        };
        let mut triaged = match vector {
            Some(vector) => self.triage_blocking(&knowledge, &text, &ctx, now, Some(vector), false).await,
            None => lexical,
        };
        triaged.trace.semantic = Some(used);
        self.metrics.semantic(used.as_str());
        Ok(triaged)
    }

    /// Runs triage on a blocking thread: search and matching are CPU work.
    async fn triage_blocking(
        &self,
        knowledge: &Arc<KnowledgeBase>,
        text: &str,
        ctx: &ChatContext,
        now: crate::domain::Millis,
        vector: Option<Arc<[f32]>>,
        lexical_first: bool,
    ) -> Triaged {
        let (knowledge, text, ctx, config) =
            (Arc::clone(knowledge), text.to_owned(), ctx.clone(), Arc::clone(&self.config));
        let span = tracing::Span::current();
        let run = move || {
            span.in_scope(|| {
                let cfg = config.triage_for(knowledge.store().as_str());
                // With a cached vector (`lexical_first`), a decision settled on words still comes
                // first, so that a message decides the same whether its vector was cached or not;
                // the uncached path has made that lexical pass already.
                if lexical_first && vector.is_some() {
                    let mut lexical = triage(&text, &knowledge, &ctx, cfg, now, None);
                    if lexical.settled {
                        lexical.trace.semantic = Some(SemanticUse::Skipped);
                        return lexical;
                    }
                }
                triage(&text, &knowledge, &ctx, cfg, now, vector.as_deref())
            })
        };
        match tokio::task::spawn_blocking(run).await {
            Ok(triaged) => triaged,
            // Triage does not panic on any input; if it ever did, the panic is re-raised here
            // rather than answered wrongly.
            Err(join) => std::panic::resume_unwind(join.into_panic()),
        }
    }
}

/// What the shopper is told when a task failed and its intent has no words of its own for it.
fn fallback_text(lang: Lang) -> &'static str {
    match lang {
        Lang::Zh => "抱歉，暂时没能查到结果，请稍后再试，或输入“转人工”联系人工客服。",
        Lang::En => {
            "Sorry, I couldn't look that up just now. Please try again later, or type \"agent\" to talk to a person."
        }
    }
}
