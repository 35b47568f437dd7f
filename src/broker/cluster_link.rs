//! The broker's side of the controller: registration, heartbeats and the
//! metadata image.
//!
//! A broker registers with the active controller (a new incarnation id per
//! process start, so the controller tells a restart from a retry), then
//! runs two loops: the image loop long-polls the controller for a newer
//! committed image and hands each one to the replica manager, and the
//! heartbeat loop reports the image offset it has applied (the controller
//! unfences the broker once that reaches its registration) and, at
//! shutdown, asks for a controlled shutdown so leaderships move away before
//! the process stops.
//!
//! Handlers read the image through `image()`: a cheap `Arc` clone of the
//! newest one applied.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use tokio::sync::watch;
use uuid::Uuid;

use crate::controller::api::{ControllerRequest, ControllerResponse, ItemResult};
use crate::controller::client::ControllerClient;
use crate::env::time::{sleep, Duration};
use crate::metadata::codec::decode_image;
use crate::metadata::MetadataImage;
use crate::protocol::error_codes as ec;
use crate::replica::IsrChannel;

/// How long one controller call may take, retries included, before the
/// caller sees an error.
pub const CONTROLLER_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one FetchImage long poll waits on the controller for a change.
const IMAGE_POLL_WAIT_MS: u32 = 500;
/// Back-off after a failed controller call in the background loops.
const RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// What this broker tells the controller about itself.
#[derive(Clone, Debug)]
pub struct BrokerIdentity {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

/// The broker's connection to the metadata quorum.
pub struct ClusterLink {
    identity: BrokerIdentity,
    incarnation: Uuid,
    client: ControllerClient,
    /// The registration epoch (-1 until registered).
    epoch: AtomicI64,
    image_tx: watch::Sender<Arc<MetadataImage>>,
    fenced: AtomicBool,
}

impl ClusterLink {
    pub fn new(identity: BrokerIdentity, incarnation: Uuid, client: ControllerClient) -> Self {
        let (image_tx, _) = watch::channel(Arc::new(MetadataImage::default()));
        ClusterLink {
            identity,
            incarnation,
            client,
            epoch: AtomicI64::new(-1),
            image_tx,
            fenced: AtomicBool::new(true),
        }
    }

    pub fn node_id(&self) -> i32 {
        self.identity.node_id
    }

    /// The newest image applied on this broker.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image_tx.borrow().clone()
    }

    /// Wakes on every newly applied image.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.image_tx.subscribe()
    }

    /// The registration epoch, -1 before the first registration.
    pub fn broker_epoch(&self) -> i64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Whether the controller last said this broker is fenced.
    pub fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::Acquire)
    }

    /// The controller client, for requests handlers forward (topic admin,
    /// producer ids).
    pub fn controller(&self) -> &ControllerClient {
        &self.client
    }

    /// The node id of the active controller as far as this broker knows.
    pub fn controller_id(&self) -> Option<i32> {
        self.client.active_hint()
    }

    /// Send a request to the active controller with the standard timeout.
    pub async fn call(&self, req: ControllerRequest) -> Result<ControllerResponse, ItemResult> {
        match self.client.call(req, CONTROLLER_CALL_TIMEOUT).await {
            Ok(ControllerResponse::Error(e)) => Err(e),
            Ok(resp) => Ok(resp),
            Err(e) => Err(ItemResult {
                error_code: ec::REQUEST_TIMED_OUT,
                message: Some(format!("the controller did not answer: {e}")),
            }),
        }
    }

    /// Register (retrying until the quorum answers or `shutdown` flips).
    pub async fn register(&self, shutdown: &watch::Receiver<bool>) -> Option<i64> {
        loop {
            if *shutdown.borrow() {
                return None;
            }
            let req = ControllerRequest::RegisterBroker {
                id: self.identity.node_id,
                incarnation: self.incarnation,
                host: self.identity.host.clone(),
                port: self.identity.port,
                rack: self.identity.rack.clone(),
            };
            match self.call(req).await {
                Ok(ControllerResponse::Registered { epoch }) => {
                    self.epoch.store(epoch, Ordering::Release);
                    tracing::info!(
                        node_id = self.identity.node_id,
                        epoch,
                        "registered with the controller"
                    );
                    return Some(epoch);
                }
                Ok(other) => {
                    tracing::warn!(?other, "unexpected answer to RegisterBroker");
                }
                Err(e) => {
                    tracing::debug!(error = ?e, "registration failed; retrying");
                }
            }
            sleep(RETRY_BACKOFF).await;
        }
    }

    /// Fetch newer images until shutdown, applying each with `apply` before
    /// publishing it to handlers (so a handler never sees an image the
    /// replica manager has not acted on).
    pub async fn run_image_loop(
        self: Arc<Self>,
        apply: impl Fn(&MetadataImage, i64) + Send + Sync + 'static,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            let have = self.image().offset;
            let req = ControllerRequest::FetchImage {
                have_offset: have,
                max_wait_ms: IMAGE_POLL_WAIT_MS,
            };
            let answer = tokio::select! {
                a = self.call(req) => a,
                _ = shutdown.changed() => return,
            };
            match answer {
                Ok(ControllerResponse::Image(Some(bytes))) => match decode_image(&bytes) {
                    Ok(image) if image.offset > have => {
                        apply(&image, self.broker_epoch());
                        self.image_tx.send_replace(Arc::new(image));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "undecodable metadata image from the controller");
                        sleep(RETRY_BACKOFF).await;
                    }
                },
                Ok(ControllerResponse::Image(None)) => {}
                Ok(other) => {
                    tracing::warn!(?other, "unexpected answer to FetchImage");
                    sleep(RETRY_BACKOFF).await;
                }
                Err(e) => {
                    tracing::debug!(error = ?e, "image fetch failed; retrying");
                    sleep(RETRY_BACKOFF).await;
                }
            }
        }
    }

    /// Heartbeat every `interval` until shutdown; re-register when the
    /// controller no longer knows this incarnation's epoch.
    ///
    /// `stop_when` is checked before each heartbeat: once it holds the
    /// broker goes silent for good, so the controller fences it after
    /// broker.session.timeout.ms and moves its leaderships (the broker uses
    /// it when its log dir fails, as Kafka halts a broker whose last log
    /// dir failed).
    pub async fn run_heartbeat_loop(
        self: Arc<Self>,
        interval: Duration,
        stop_when: impl Fn() -> bool + Send + 'static,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut images = self.subscribe();
        loop {
            if *shutdown.borrow() {
                return;
            }
            if stop_when() {
                tracing::error!(
                    node_id = self.identity.node_id,
                    "log dir offline: heartbeats stop so the controller moves this broker's leaderships"
                );
                let _ = shutdown.changed().await;
                return;
            }
            // Mark the image this heartbeat reports as seen, so one applied
            // while the heartbeat is in flight wakes the wait below.
            images.borrow_and_update();
            match self.heartbeat(false).await {
                Ok(_) => {}
                Err(e)
                    if e.error_code == ec::STALE_BROKER_EPOCH
                        || e.error_code == ec::BROKER_ID_NOT_REGISTERED =>
                {
                    tracing::warn!(
                        "the controller lost this broker's registration; registering again"
                    );
                    if self.register(&shutdown).await.is_none() {
                        return;
                    }
                    continue;
                }
                Err(e) => tracing::debug!(error = ?e, "heartbeat failed"),
            }
            // While fenced, heartbeat again as soon as a newer image is
            // applied: the controller unfences on the offset it reports, and
            // startup should not wait a whole interval for that.
            let fenced = self.is_fenced();
            tokio::select! {
                _ = sleep(interval) => {}
                Ok(()) = images.changed(), if fenced => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// One heartbeat; returns whether the controller agrees the broker may stop.
    async fn heartbeat(&self, want_shutdown: bool) -> Result<bool, ItemResult> {
        let req = ControllerRequest::Heartbeat {
            id: self.identity.node_id,
            epoch: self.broker_epoch(),
            metadata_offset: self.image().offset,
            want_shutdown,
        };
        match self.call(req).await? {
            ControllerResponse::Heartbeat {
                fenced,
                shutdown_ready,
            } => {
                let was = self.fenced.swap(fenced, Ordering::AcqRel);
                if was != fenced {
                    tracing::info!(node_id = self.identity.node_id, fenced, "fencing changed");
                }
                Ok(shutdown_ready)
            }
            other => Err(ItemResult {
                error_code: ec::UNKNOWN_SERVER_ERROR,
                message: Some(format!("unexpected heartbeat answer {other:?}")),
            }),
        }
    }

    /// Controlled shutdown: ask the controller to move this broker's
    /// leaderships away and wait (up to `deadline`) until it says none are
    /// left, so clients fail over before the process stops.
    pub async fn controlled_shutdown(&self, deadline: Duration) {
        if self.broker_epoch() < 0 {
            return;
        }
        let give_up = crate::env::time::now() + deadline;
        while crate::env::time::now() < give_up {
            match self.heartbeat(true).await {
                Ok(true) => {
                    tracing::info!(
                        node_id = self.identity.node_id,
                        "controlled shutdown complete"
                    );
                    return;
                }
                Ok(false) => {}
                Err(e) => tracing::debug!(error = ?e, "controlled shutdown heartbeat failed"),
            }
            sleep(RETRY_BACKOFF).await;
        }
        tracing::warn!(
            node_id = self.identity.node_id,
            "controlled shutdown timed out; stopping anyway"
        );
    }

    /// Wait until the image has reached `offset` (e.g. after the controller
    /// committed a topic creation), at most `wait`.
    pub async fn wait_for_image(
        &self,
        pred: impl Fn(&MetadataImage) -> bool,
        wait: Duration,
    ) -> bool {
        let mut rx = self.subscribe();
        let until = crate::env::time::now() + wait;
        loop {
            if pred(&rx.borrow_and_update()) {
                return true;
            }
            let left = until.saturating_duration_since(crate::env::time::now());
            if left.is_zero() {
                return false;
            }
            if crate::env::time::timeout(left, rx.changed()).await.is_err() {
                return pred(&rx.borrow());
            }
        }
    }
}

/// The replica manager's AlterPartition requests, sent to the active controller.
pub struct IsrViaController(pub Arc<ClusterLink>);

impl IsrChannel for IsrViaController {
    fn alter_partition(
        &self,
        req: ControllerRequest,
    ) -> Pin<Box<dyn Future<Output = Option<ControllerResponse>> + Send>> {
        let link = self.0.clone();
        Box::pin(async move {
            match link.client.call(req, CONTROLLER_CALL_TIMEOUT).await {
                Ok(resp) => Some(resp),
                Err(e) => {
                    tracing::debug!(error = %e, "AlterPartition got no answer");
                    None
                }
            }
        })
    }
}
