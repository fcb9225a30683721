//! What an agent gets with a chat: its transcript, the product the shopper has in view, and
//! suggested answers to the shopper's question.

use std::sync::Arc;

use super::{AgentEvent, Desk, ProductView, StoreDesk, Suggestion};
use crate::domain::{ConversationId, HandoffReason, Lang, Millis, Role, StoreId};
use crate::knowledge::EntryRef;
use crate::store::{StoreError, TranscriptItem};

impl Desk {
    /// Everything an agent needs to take over a chat: the transcript (with the bot's traces),
    /// suggested answers to the shopper's question, and the product the shopper has in view.
    pub(super) async fn assigned_event(
        &self,
        store: &StoreId,
        desk: &StoreDesk,
        conversation: ConversationId,
    ) -> Result<AgentEvent, StoreError> {
        let transcript = self.agents.transcript(conversation).await?;
        let reason = desk.chats.get(&conversation).and_then(|c| c.reason);
        let suggestions = match question(&transcript, reason) {
            Some(text) => self.suggest(store, text).await,
            None => Vec::new(),
        };
        let open = self.agents.open_chat(conversation).await?;
        let product = open.and_then(|o| o.product).and_then(|sku| self.product_view(store, &sku));
        Ok(AgentEvent::Assigned { conversation_id: conversation, reason, transcript, suggestions, product })
    }

    /// The catalogue's view of `sku` in the store's live knowledge.
    fn product_view(&self, store: &StoreId, sku: &str) -> Option<ProductView> {
        let knowledge = self.library.get(store)?;
        let catalog = knowledge.catalog();
        let product = &catalog.products()[catalog.by_sku(sku)?];
        Some(ProductView {
            sku: product.sku.clone(),
            name: product.name.clone(),
            price: product.price,
            currency: product.currency.clone(),
            stock: product.stock,
        })
    }

    /// The store's best knowledge hits for `text`, as answers an agent can send.
    pub(super) async fn suggest(&self, store: &StoreId, text: &str) -> Vec<Suggestion> {
        let Some(knowledge) = self.library.get(store) else { return Vec::new() };
        let vector = self.library.message_vector(&knowledge, text).await;
        let (text, config, store) = (text.to_owned(), Arc::clone(&self.config), store.clone());
        let found = tokio::task::spawn_blocking(move || {
            let lang = Lang::detect(&text);
            let now = Millis::now();
            let band = config.triage_for(store.as_str()).band(vector.is_some());
            knowledge
                .search(&text, 3, band.fusion, now, vector.as_deref())
                .into_iter()
                .filter_map(|hit| match hit.entry {
                    EntryRef::Faq(i) => {
                        let faq = &knowledge.faq()[i];
                        Some(Suggestion {
                            entry: faq.id.clone(),
                            question: faq.question.get(lang).to_owned(),
                            answer: faq.answer_at(now).get(lang).to_owned(),
                            score: hit.score,
                        })
                    }
                    EntryRef::Intent(_) => None,
                })
                .collect()
        })
        .await;
        found.unwrap_or_default()
    }
}

/// The shopper's question in a transcript, for suggested answers: their latest message, unless
/// that message only asked for a person (the chat was handed over on it, for that reason) and
/// an earlier one says what they want.
fn question(transcript: &[TranscriptItem], reason: Option<HandoffReason>) -> Option<&str> {
    let mut asked = transcript.iter().enumerate().rev().filter(|(_, m)| m.role == Role::Shopper);
    let (at, latest) = asked.next()?;
    let handed_over_on_it = transcript[at + 1..]
        .iter()
        .find(|m| m.role == Role::Bot)
        .is_some_and(|reply| reply.kind.as_deref() == Some("handoff"));
    if handed_over_on_it
        && reason == Some(HandoffReason::AskedForHuman)
        && let Some((_, earlier)) = asked.next()
    {
        return Some(&earlier.text);
    }
    Some(&latest.text)
}
