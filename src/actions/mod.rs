//! Tasks done with the store's own system: the bot POSTs a task's slots to the endpoint the
//! store set for it (`PUT /api/v1/stores/{store}/actions/{name}`) and fills its reply from the
//! JSON that comes back (`docs/actions.md`).
//!
//! A call is bounded every way a client could make it hang: the endpoint's own timeout (at most
//! `actions.max_timeout_ms`) covers the whole exchange, the answer is read up to
//! `actions.max_response_bytes`, at most `actions.max_in_flight` calls run at once (one more
//! fails at once), and redirects are not followed. Requests are signed like webhooks: the
//! `x-mibot-signature` header is `sha256=` and the hex HMAC-SHA256 of the body under the
//! endpoint's secret.

pub mod demo;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::alerts::webhook;
use crate::config::ActionsConfig;
use crate::domain::{StoreId, TaskState};
use crate::store::{ActionEndpoint, Merchants, StoreError};
use crate::triage::TaskCall;

/// The header naming the task a request is for.
pub const TASK_HEADER: &str = "x-mibot-task";

/// Where a store's task goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// The store's own endpoint.
    Http(ActionEndpoint),
    /// The demo store's built-in book of made-up orders.
    Demo,
}

/// What one call gave: the store's answer (a JSON object) or why there was none, and the
/// trace the agent sees.
#[derive(Debug, Clone)]
pub struct Called {
    /// The answer's fields, or why the call failed.
    pub answer: Result<Value, String>,
    /// The request and what came back.
    pub trace: TaskCall,
}

/// The store-independent part of a task request.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The task, e.g. `order_status`.
    pub task: &'a str,
    /// The store.
    pub store: &'a StoreId,
    /// The conversation, as shoppers and agents know it.
    pub conversation: String,
    /// The storefront's signed shopper id, when it gave one.
    pub shopper: Option<&'a str>,
    /// The product the chat is about.
    pub product: Option<&'a str>,
    /// `zh` or `en`: the language the shopper writes in, for the answer's texts.
    pub lang: &'a str,
    /// The slots, by name.
    pub slots: &'a std::collections::BTreeMap<String, String>,
    /// When, in milliseconds since the epoch.
    pub at: i64,
}

impl Request<'_> {
    /// The JSON body POSTed to the endpoint.
    pub fn body(&self) -> Value {
        json!({
            "task": self.task,
            "store": self.store.as_str(),
            "conversation_id": self.conversation,
            "shopper": self.shopper,
            "product": self.product,
            "lang": self.lang,
            "slots": self.slots,
            "sent_at": self.at,
        })
    }
}

/// Calls stores' endpoints.
#[derive(Debug)]
pub struct Actions {
    merchants: Arc<dyn Merchants>,
    client: reqwest::Client,
    in_flight: Arc<Semaphore>,
    config: ActionsConfig,
}

impl Actions {
    /// Calls as `config` allows, finding each store's endpoints in `merchants`.
    pub fn new(config: &ActionsConfig, merchants: Arc<dyn Merchants>) -> anyhow::Result<Self> {
        let longest = Duration::from_millis(config.max_timeout_ms);
        let client = webhook::client(longest, config.private_targets)?;
        Ok(Self {
            merchants,
            client,
            in_flight: Arc::new(Semaphore::new(config.max_in_flight)),
            config: config.clone(),
        })
    }

    /// Counts a failed call into `state`; true when the conversation should now go to a person.
    pub fn failed(&self, state: &mut TaskState) -> bool {
        state.failures += 1;
        state.failures >= self.config.failures_before_handoff
    }

    /// Where `store`'s task `name` goes; `None` when the store has no endpoint for it.
    pub async fn endpoint(&self, store: &StoreId, name: &str) -> Result<Option<Endpoint>, StoreError> {
        if let Some(endpoint) = self.merchants.action(store, name).await? {
            return Ok(Some(Endpoint::Http(endpoint)));
        }
        let demo = self.config.demo_orders && store.as_str() == demo::STORE && demo::knows(name);
        Ok(demo.then_some(Endpoint::Demo))
    }

    /// Calls `endpoint` with `request`. Never fails: a failure is in the answer, with its reason.
    pub async fn call(&self, endpoint: &Endpoint, request: &Request<'_>) -> Called {
        let started = Instant::now();
        let body = request.body();
        let (target, outcome) = match endpoint {
            Endpoint::Demo => ("demo".to_owned(), Ok((200, demo::answer(request.task, &body)))),
            Endpoint::Http(endpoint) => {
                (endpoint.url.clone(), self.post(endpoint, request.task, &body).await)
            }
        };
        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let trace = |status, response, error| TaskCall {
            name: request.task.to_owned(),
            endpoint: target.clone(),
            request: body.clone(),
            status,
            response,
            error,
            ms,
        };
        match outcome {
            Err(error) => Called { answer: Err(error.clone()), trace: trace(None, None, Some(error)) },
            Ok((status, Err(error))) => {
                Called { answer: Err(error.clone()), trace: trace(Some(status), None, Some(error)) }
            }
            Ok((status, Ok(answer))) => {
                Called { answer: Ok(answer.clone()), trace: trace(Some(status), Some(answer), None) }
            }
        }
    }

    /// POSTs `body`; the outer error is a call that got no answer, the inner one an answer that
    /// is not a JSON object (or not a success).
    async fn post(
        &self,
        endpoint: &ActionEndpoint,
        task: &str,
        body: &Value,
    ) -> Result<(u16, Result<Value, String>), String> {
        let Ok(_permit) = self.in_flight.clone().try_acquire_owned() else {
            return Err(format!(
                "too many calls in flight (actions.max_in_flight = {})",
                self.config.max_in_flight
            ));
        };
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        let timeout = Duration::from_millis(endpoint.timeout_ms.clamp(1, self.config.max_timeout_ms));
        let sent = self
            .client
            .post(&endpoint.url)
            .timeout(timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(webhook::SIGNATURE_HEADER, webhook::sign(&endpoint.secret, &bytes))
            .header(TASK_HEADER, task)
            .body(bytes);
        let describe = |e: reqwest::Error| {
            if e.is_timeout() {
                format!("no answer within {} ms", timeout.as_millis())
            } else if e.is_connect() {
                format!("could not connect: {}", root_cause(&e))
            } else {
                root_cause(&e)
            }
        };
        let mut response = sent.send().await.map_err(describe)?;
        let status = response.status();
        let mut read = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(describe)? {
            if read.len() + chunk.len() > self.config.max_response_bytes {
                let max = self.config.max_response_bytes;
                return Ok((status.as_u16(), Err(format!("the answer is longer than {max} bytes"))));
            }
            read.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            return Ok((status.as_u16(), Err(format!("the endpoint answered {status}"))));
        }
        let answer = match serde_json::from_slice::<Value>(&read) {
            Ok(object @ Value::Object(_)) => Ok(object),
            Ok(_) => Err("the answer is JSON but not an object".to_owned()),
            Err(e) => Err(format!("the answer is not JSON: {e}")),
        };
        Ok((status.as_u16(), answer))
    }
}

/// The innermost cause of a request error, which says what actually went wrong.
fn root_cause(error: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = error;
    while let Some(next) = source.source() {
        source = next;
    }
    source.to_string()
}

/// Checks an endpoint URL a merchant gives, as webhook URLs are checked.
pub fn check_url(url: &str, private: bool) -> Result<(), String> {
    webhook::check_url(url, private).map_err(|e| e.replace("webhook", "action endpoint"))
}
