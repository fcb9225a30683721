//! What a waiting shopper is told of their place, and the queue agents see, announced at most
//! once per `agents.queue_update_ms` however fast it changes.

use super::{AgentEvent, Desk, StoreDesk, queue_items};
use crate::domain::{ConversationId, Millis};
use crate::protocol::ServerEvent;

impl Desk {
    /// What a waiting shopper is told of their place: `position` counts from 1.
    fn queue_notice(&self, position: usize, online: usize, now: Millis) -> ServerEvent {
        let hours = &self.config.agents;
        let (estimate, text) = if !hours.is_open(now.0) {
            (
                None,
                format!(
                    "现在是非工作时间（客服时间 {0}），您可以留言，我们上班后会第一时间回复您。Our agents work {0}: leave a message and we will reply when we are back.",
                    hours.business_hours
                ),
            )
        } else if online == 0 {
            (None, "现在没有客服在线，您可以留言，客服上线后会第一时间回复您。No agent is online right now: leave a message and we will reply as soon as one is.".to_owned())
        } else {
            let seconds = hours.seconds_per_chat * position as u64 / online as u64;
            (
                Some(seconds),
                format!(
                    "您前面还有 {} 位顾客，请稍候。You are number {position} in the queue.",
                    position - 1
                ),
            )
        };
        ServerEvent::Queue { position, estimated_wait_seconds: estimate, agents_online: online, text }
    }

    /// Tells one waiting shopper their place now, if their chat waits.
    pub(super) fn tell_place(&self, desk: &StoreDesk, conversation: ConversationId, now: Millis) {
        if let Some(index) = desk.waiting().iter().position(|(id, _)| *id == conversation) {
            desk.to_shopper(conversation, self.queue_notice(index + 1, desk.available(), now));
        }
    }

    /// Announces every queue that changed since the last call: each waiting shopper gets their
    /// place and estimated wait, each agent online the queue. The server calls this every
    /// `agents.queue_update_ms`, so however fast a queue changes, its agents get at most one
    /// update per interval.
    pub async fn announce_queues(&self) {
        let now = Millis::now();
        let mut state = self.state.lock().await;
        for desk in state.values_mut().filter(|d| d.queue_changed) {
            desk.queue_changed = false;
            let waiting = desk.waiting();
            let online = desk.available();
            for (position, (conversation, _)) in waiting.iter().enumerate() {
                desk.to_shopper(*conversation, self.queue_notice(position + 1, online, now));
            }
            desk.to_agents(&AgentEvent::Queue { waiting: queue_items(desk, now) });
        }
    }
}
