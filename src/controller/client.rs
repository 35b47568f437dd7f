//! How a broker reaches the active controller.
//!
//! `ControllerClient::call` tries the last known active controller first,
//! then every voter in turn, follows `NotController { leader }` hints, and
//! backs off between rounds until the caller's timeout. A voter that is this
//! very node (combined mode) is called in-process, with no socket. Callers
//! never see `NotController`.

use std::sync::{Arc, Mutex};

use super::api::{ControllerRequest, ControllerResponse};
use super::codec::{decode_response, encode_request};
use super::rpc::RpcClient;
use super::service::ControllerService;
use crate::env::time::{now, sleep, Duration};

/// Backoff between rounds over the voters.
const BACKOFF_MIN: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_millis(500);
/// One RPC attempt waits at most this long (plus a FetchImage's own wait),
/// so a voter that is partitioned away does not eat the caller's budget.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(2000);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControllerError {
    #[error("no active controller answered within {0:?}")]
    Timeout(Duration),
}

#[derive(Clone)]
pub struct ControllerClient {
    voters: Vec<(i32, String)>,
    local: Option<(i32, Arc<ControllerService>)>,
    rpc: RpcClient,
    /// The node id that last answered as the active controller (or was hinted).
    hint: Arc<Mutex<Option<i32>>>,
}

impl std::fmt::Debug for ControllerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerClient")
            .field("voters", &self.voters)
            .field("local", &self.local.as_ref().map(|(id, _)| id))
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

enum Attempt {
    Answer(ControllerResponse),
    /// Try this node next (a hint), or just the next voter.
    Elsewhere(Option<i32>),
}

impl ControllerClient {
    /// `voters`: node id and controller listener address of every voter.
    /// `local`: this node's own controller service, when it is a voter.
    pub fn new(voters: Vec<(i32, String)>, local: Option<(i32, Arc<ControllerService>)>) -> Self {
        ControllerClient {
            voters,
            local,
            rpc: RpcClient::default(),
            hint: Arc::new(Mutex::new(None)),
        }
    }

    /// The node believed to be the active controller.
    pub fn active_hint(&self) -> Option<i32> {
        *lock(&self.hint)
    }

    /// Send `req` to the active controller, retrying until `timeout`.
    pub async fn call(
        &self,
        req: ControllerRequest,
        timeout: Duration,
    ) -> Result<ControllerResponse, ControllerError> {
        let deadline = now() + timeout;
        let encoded = encode_request(&req);
        let extra_wait = match &req {
            ControllerRequest::FetchImage { max_wait_ms, .. } => {
                Duration::from_millis(*max_wait_ms as u64)
            }
            _ => Duration::ZERO,
        };
        let mut backoff = BACKOFF_MIN;
        loop {
            // One round: the hint, then every voter; hints jump the queue.
            let mut order: Vec<i32> = self.voters.iter().map(|(id, _)| *id).collect();
            if let Some(h) = self.active_hint() {
                order.retain(|&id| id != h);
                order.insert(0, h);
            }
            let mut tried = Vec::new();
            while let Some(target) = order.first().copied() {
                order.remove(0);
                if tried.contains(&target) || now() >= deadline {
                    continue;
                }
                tried.push(target);
                let budget = deadline
                    .saturating_duration_since(now())
                    .min(ATTEMPT_TIMEOUT + extra_wait);
                match self.attempt(target, &req, &encoded, budget).await {
                    Attempt::Answer(resp) => {
                        *lock(&self.hint) = Some(target);
                        return Ok(resp);
                    }
                    Attempt::Elsewhere(Some(next)) if !tried.contains(&next) => {
                        *lock(&self.hint) = Some(next);
                        order.insert(0, next);
                    }
                    Attempt::Elsewhere(_) => {}
                }
            }
            let left = deadline.saturating_duration_since(now());
            if left.is_zero() {
                return Err(ControllerError::Timeout(timeout));
            }
            sleep(backoff.min(left)).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    async fn attempt(
        &self,
        target: i32,
        req: &ControllerRequest,
        encoded: &[u8],
        budget: Duration,
    ) -> Attempt {
        let resp = match &self.local {
            Some((id, svc)) if *id == target => {
                match crate::env::time::timeout(budget, svc.handle(req.clone())).await {
                    Ok(r) => r,
                    Err(_) => return Attempt::Elsewhere(None),
                }
            }
            _ => {
                let Some((_, addr)) = self.voters.iter().find(|(id, _)| *id == target) else {
                    return Attempt::Elsewhere(None);
                };
                if addr.is_empty() {
                    return Attempt::Elsewhere(None);
                }
                match self.rpc.call(addr, encoded.to_vec(), budget).await {
                    Ok(bytes) => match decode_response(&bytes) {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::warn!(target, error = %e, "undecodable controller response");
                            return Attempt::Elsewhere(None);
                        }
                    },
                    Err(e) => {
                        tracing::debug!(target, error = %e, "controller unreachable");
                        return Attempt::Elsewhere(None);
                    }
                }
            }
        };
        match resp {
            ControllerResponse::NotController { leader } => {
                if lock(&self.hint).is_some_and(|h| h == target) {
                    *lock(&self.hint) = None;
                }
                Attempt::Elsewhere(leader.filter(|&l| l != target))
            }
            other => Attempt::Answer(other),
        }
    }
}
