//! Spike alerts: every `alerts.check_seconds`, each store's recent questions are grouped by
//! topic and judged against the topic's own usual rate ([`spikes`]). A topic that spikes raises
//! one alert per episode: agents online see it at once, the dashboard lists it, and it is
//! POSTed, signed, to the store's webhook ([`webhook`]) from a task of its own, so nothing
//! waits on the merchant's server. The episode ends once the topic has not spiked for a whole
//! window; a later spike is a new alert.

pub mod spikes;
pub mod webhook;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::config::Config;
use crate::domain::{MessageId, Millis, StoreId};
use crate::escalation::Desk;
use crate::library::Library;
use crate::store::{AlertRow, Insights, Merchants, StoreError};

/// Messages of an episode kept on its alert (the newest).
const MAX_EPISODE_MESSAGES: usize = 1_000;

/// How far before the baseline a conversation may have started and still have questions in
/// it: conversations rarely last longer.
const CONVERSATION_REACH: i64 = 3600 * 1000;

/// The event name webhooks receive.
pub const ALERT_EVENT: &str = "alert.raised";

/// Watches every store for spikes.
#[derive(Debug)]
pub struct Watch {
    insights: Arc<dyn Insights>,
    merchants: Arc<dyn Merchants>,
    library: Arc<Library>,
    desk: Arc<Desk>,
    config: Arc<Config>,
    client: reqwest::Client,
}

impl Watch {
    /// A watch over every store the merchants' records list.
    pub fn new(
        insights: Arc<dyn Insights>,
        merchants: Arc<dyn Merchants>,
        library: Arc<Library>,
        desk: Arc<Desk>,
        config: Arc<Config>,
    ) -> anyhow::Result<Self> {
        let timeout = Duration::from_secs(config.alerts.webhook_timeout_seconds.max(1));
        let client = webhook::client(timeout, config.alerts.webhook_private_targets)?;
        Ok(Self { insights, merchants, library, desk, config, client })
    }

    /// Checks every store at `now`; returns the alerts raised.
    pub async fn check(&self, now: Millis) -> Result<Vec<AlertRow>, StoreError> {
        let mut raised = Vec::new();
        for store in self.merchants.stores().await? {
            raised.extend(self.check_store(&store, now).await?);
        }
        Ok(raised)
    }

    async fn check_store(&self, store: &StoreId, now: Millis) -> Result<Vec<AlertRow>, StoreError> {
        let rule = spikes::Rule::from_config(&self.config.alerts);
        let since = Millis(now.0 - rule.window - rule.baseline - CONVERSATION_REACH);
        let history = self.insights.records(store, since, Millis(now.0 + 1)).await?;
        if history.messages.is_empty() {
            return Ok(Vec::new());
        }
        let analyzer = self.library.analyzer().clone();
        let knowledge = self.library.get(store);
        let texts = spikes::questions_to_group(&history, &rule, now);
        let vectors = self.library.message_vectors(&texts).await;
        let found = tokio::task::spawn_blocking(move || {
            let label_of = |entry: &str| {
                let kb = knowledge.as_ref()?;
                let faq = kb.faq().iter().find(|f| f.id == entry)?;
                Some(faq.question.get(crate::domain::Lang::Zh).to_owned())
            };
            spikes::spikes(&history, &analyzer, &vectors, &rule, now, &label_of)
        })
        .await
        .map_err(|e| StoreError::Corrupt(format!("spike detection failed: {e}")))?;

        let open = self.insights.open_alerts(store).await?;
        let mut continued: HashSet<i64> = HashSet::new();
        let mut raised = Vec::new();
        for spike in found {
            let same = open.iter().find(|alert| {
                !continued.contains(&alert.id)
                    && alert.topic == spike.topic
                    && (spike.topic != "questions"
                        || spike.messages.iter().any(|m| alert.messages.contains(m)))
            });
            if let Some(alert) = same {
                continued.insert(alert.id);
                let mut messages = alert.messages.clone();
                let seen: HashSet<MessageId> = messages.iter().copied().collect();
                messages.extend(spike.messages.iter().filter(|m| !seen.contains(m)));
                messages.drain(..messages.len().saturating_sub(MAX_EPISODE_MESSAGES));
                self.insights.touch_alert(alert.id, spike.count as u64, &messages, now).await?;
                continue;
            }
            let mut alert = AlertRow {
                id: 0,
                store: store.as_str().to_owned(),
                topic: spike.topic,
                label: spike.label,
                samples: spike.samples,
                messages: spike.messages,
                count: spike.count as u64,
                expected: spike.expected,
                started_at: now,
                last_seen_at: now,
                ended_at: None,
                webhook: None,
                webhook_attempts: 0,
            };
            alert.id = self.insights.raise_alert(&alert).await?;
            tracing::info!(store = %store, alert = alert.id, topic = %alert.topic, count = alert.count,
                expected = alert.expected, "spike alert");
            self.desk.alert(store, &alert).await;
            self.send_to_webhook(store, &alert).await?;
            raised.push(alert);
        }
        for alert in open.iter().filter(|a| !continued.contains(&a.id)) {
            if alert.last_seen_at.0 + rule.window <= now.0 {
                self.insights.end_alert(alert.id, now).await?;
            }
        }
        Ok(raised)
    }

    /// Starts delivering the alert to the store's webhook, if it has one, on a task of its own.
    async fn send_to_webhook(&self, store: &StoreId, alert: &AlertRow) -> Result<(), StoreError> {
        let Some(hook) = self.insights.webhook(store).await? else { return Ok(()) };
        let body = json!({
            "event": ALERT_EVENT,
            "store": store.as_str(),
            "alert": {
                "id": crate::ids::encode(crate::ids::Kind::Alert, alert.id),
                "topic": alert.topic,
                "label": alert.label,
                "samples": alert.samples,
                "count": alert.count,
                "expected": alert.expected,
                "started_at": alert.started_at,
                "window_seconds": self.config.alerts.window_seconds,
                "factor": self.config.alerts.factor,
            },
        });
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let (client, insights, id) = (self.client.clone(), Arc::clone(&self.insights), alert.id);
        let plan = webhook::Plan {
            attempts: self.config.alerts.webhook_attempts,
            first_wait: Duration::from_secs_f64(self.config.alerts.webhook_retry_seconds.max(0.0)),
            private_targets: self.config.alerts.webhook_private_targets,
        };
        tokio::spawn(async move {
            let delivery = id.to_string();
            let done = webhook::deliver(&client, &hook, ALERT_EVENT, &delivery, body, plan).await;
            let status = if done.delivered { "delivered" } else { "failed" };
            if let Err(error) = insights.webhook_result(id, status, done.attempts).await {
                tracing::warn!(%error, alert = id, "recording the webhook delivery failed");
            }
        });
        Ok(())
    }
}
