//! What every Circle service does to serve gRPC: bind (port 0 for any), a shutdown
//! signal its tasks share, standard health with readiness that follows NATS and
//! PostgreSQL, server reflection listing exactly what the port serves, accepted
//! connections with TCP_NODELAY, TLS when configured ([`crate::tls`]) and the abuse
//! limits ([`crate::limits`]) in front of every route.

use std::net::SocketAddr;
use std::time::Duration;

use crate::auth::{AuthLayer, Authenticator};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::server::NamedService;
use tonic::transport::server::{Router, TcpIncoming};

/// Who may reach a host: every call but health (and reflection, when served) is
/// authenticated.
#[derive(Clone)]
pub struct Access {
    pub authenticator: std::sync::Arc<Authenticator>,
    /// Whether server reflection is served.
    pub reflection: bool,
}
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tower_layer::{Identity, Stack};

use crate::limits::{LimitLayer, Limits};
use crate::tls::ServerTls;
use crate::trace::TraceLayer;

/// The router a host serves: every route behind the [`TraceLayer`] (outermost: a
/// refused call is traced and measured too), the authentication layer (it names the
/// caller) and then the [`LimitLayer`] (which limits per caller).
pub type Routes = Router<Stack<LimitLayer, Stack<AuthLayer, Stack<TraceLayer, Identity>>>>;

/// How a host serves, beyond where: TLS (plaintext when `None`, for development) and
/// the abuse limits of its service's routes.
#[derive(Clone, Default)]
pub struct HostOptions {
    pub tls: Option<ServerTls>,
    pub limits: Limits,
    /// How long, once shutdown starts, the host reports NOT_SERVING but still serves
    /// new calls (so load balancers take it out first) before it refuses them.
    pub drain_delay: Duration,
    /// How long, after the drain delay, calls in flight get before they are cut off
    /// (zero, as in `Default`: no limit).
    pub drain_timeout: Duration,
}

/// HTTP/2 streams one connection may have open beyond the service's own in-flight
/// limit (health and reflection calls, and calls about to be refused), so the limit
/// layer, not a client's wait for a free stream, is what a busy service answers with.
const STREAM_HEADROOM: usize = 64;

/// A shutdown signal many tasks can wait on.
#[derive(Clone)]
pub struct Shutdown {
    stopped: watch::Receiver<bool>,
}

impl Shutdown {
    /// Fires when `signal` resolves.
    pub fn new(signal: impl Future<Output = ()> + Send + 'static) -> Self {
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(async move {
            signal.await;
            let _ = stop.send(true);
        });
        Self { stopped }
    }

    /// Whether shutdown has been asked for.
    pub fn is_stopped(&self) -> bool {
        *self.stopped.borrow()
    }

    /// Resolves once shutdown has been asked for.
    pub fn signal(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut stopped = self.stopped.clone();
        async move {
            let _ = stopped.wait_for(|stopped| *stopped).await;
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: SocketAddr, reason: String },
    #[error("server reflection: {0}")]
    Reflection(String),
    #[error("TLS: {0}")]
    Tls(String),
}

/// What else a host's readiness follows besides NATS and PostgreSQL: checks that each
/// answer whether their part of the service is ready (e.g. a projection not halted).
/// Added at any time; read at every readiness check.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: std::sync::Arc<std::sync::Mutex<Vec<ReadinessCheck>>>,
}

type ReadinessCheck = Box<dyn Fn() -> bool + Send + Sync>;

impl Readiness {
    /// The service is not ready while `ready` answers false.
    pub fn require(&self, ready: impl Fn() -> bool + Send + Sync + 'static) {
        if let Ok(mut checks) = self.checks.lock() {
            checks.push(Box::new(ready));
        }
    }

    fn ready(&self) -> bool {
        self.checks
            .lock()
            .map(|checks| checks.iter().all(|ready| ready()))
            .unwrap_or(true)
    }
}

/// How often readiness is checked.
const READINESS_CHECK: Duration = Duration::from_secs(1);

/// A bound listener with health and reflection ready to serve.
pub struct Host {
    listener: TcpListener,
    pub local_addr: SocketAddr,
    pub shutdown: Shutdown,
    /// What readiness follows besides NATS and PostgreSQL.
    pub readiness: Readiness,
    router: Routes,
    health: HealthReporter,
    service: &'static str,
    drain_delay: Duration,
    drain_timeout: Duration,
    /// Held by whoever sets the service's status, so shutdown's NOT_SERVING is never
    /// overwritten by a readiness check already under way.
    status_lock: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl Host {
    /// Binds `addr`, reports `service` (its full gRPC name) SERVING while NATS and
    /// PostgreSQL answer, and (if `access.reflection`) serves reflection from
    /// `descriptors`, listing `service`, health and reflection: what this port serves,
    /// not every service the descriptors describe. With `options.tls` it serves TLS
    /// only (a certificate or key rustls cannot use fails here, before anything is
    /// served); every route is behind `access.authenticator` and then the
    /// [`LimitLayer`] with `options.limits` for `service`'s own routes.
    #[allow(clippy::too_many_arguments)]
    pub async fn bind(
        addr: SocketAddr,
        service: &'static str,
        descriptors: &'static [u8],
        nats: async_nats::Client,
        pool: sqlx::PgPool,
        shutdown: Shutdown,
        access: Access,
        options: HostOptions,
    ) -> Result<Self, HostError> {
        let listen_error = |error: std::io::Error| HostError::Listen {
            addr,
            reason: error.to_string(),
        };
        let listener = TcpListener::bind(addr).await.map_err(listen_error)?;
        let local_addr = listener.local_addr().map_err(listen_error)?;
        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_service_status(service, ServingStatus::Serving)
            .await;
        let readiness = Readiness::default();
        let status_lock = std::sync::Arc::new(tokio::sync::Mutex::new(()));
        tokio::spawn(follow_readiness(
            health.clone(),
            status_lock.clone(),
            service,
            nats,
            pool,
            readiness.clone(),
            shutdown.clone(),
        ));
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(descriptors)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name(service)
            .with_service_name(name_of(&health_service))
            .with_service_name(REFLECTION_SERVICE)
            .build_v1()
            .map_err(|error| HostError::Reflection(error.to_string()))?;
        debug_assert_eq!(name_of(&reflection), REFLECTION_SERVICE);
        let mut server = tonic::transport::Server::builder();
        if let Some(tls) = &options.tls {
            server = server
                .tls_config(tls.config())
                .map_err(|error| HostError::Tls(error.to_string()))?;
        }
        // No per-connection concurrency limit: tonic's waits for a free place, and a
        // busy service must answer RESOURCE_EXHAUSTED at once (the limit layer) instead.
        let max_streams = options.limits.max_in_flight.saturating_add(STREAM_HEADROOM);
        let router = server
            .max_concurrent_streams(u32::try_from(max_streams).unwrap_or(u32::MAX))
            .layer(TraceLayer::new(service, descriptors))
            .layer(AuthLayer::new(access.authenticator))
            .layer(LimitLayer::new(service, options.limits))
            .add_service(health_service)
            .add_optional_service(access.reflection.then_some(reflection));
        Ok(Self {
            listener,
            local_addr,
            shutdown,
            readiness,
            router,
            health,
            service,
            drain_delay: options.drain_delay,
            drain_timeout: options.drain_timeout,
            status_lock,
        })
    }

    /// Serves the routes `add` puts next to health and reflection until shutdown.
    /// Shutdown goes in steps: the service is reported NOT_SERVING at once (health
    /// itself is still answered), new calls are still served for the drain delay (so
    /// load balancers and Kubernetes endpoints, which follow readiness, take this
    /// replica out before it refuses anything), then new calls and connections are
    /// refused and the calls and streams in flight finish.
    pub async fn serve(
        self,
        add: impl FnOnce(Routes) -> Routes,
    ) -> Result<(), tonic::transport::Error> {
        let stopped = self.shutdown.signal();
        let health = self.health;
        let service = self.service;
        let drain_delay = self.drain_delay;
        let drain_timeout = self.drain_timeout;
        let status_lock = self.status_lock;
        let (refusing, refused) = tokio::sync::oneshot::channel::<()>();
        let draining = async move {
            stopped.await;
            {
                let _setting = status_lock.lock().await;
                health
                    .set_service_status(service, ServingStatus::NotServing)
                    .await;
            }
            tracing::info!(
                service,
                ?drain_delay,
                "shutting down: not serving; new calls are refused after the drain delay"
            );
            tokio::time::sleep(drain_delay).await;
            tracing::info!(service, "refusing new calls; finishing the calls in flight");
            let _ = refusing.send(());
        };
        let server =
            add(self.router).serve_with_incoming_shutdown(incoming(self.listener), draining);
        tokio::pin!(server);
        // Calls still in flight after the drain timeout (a stream nobody reads, a peer
        // gone silent) are cut off: a replica must stop in time.
        let cut_off = async move {
            if refused.await.is_err() || drain_timeout.is_zero() {
                return std::future::pending::<()>().await;
            }
            tokio::time::sleep(drain_timeout).await;
        };
        tokio::select! {
            served = &mut server => served,
            () = cut_off => {
                tracing::warn!(service, ?drain_timeout, "calls still in flight after the drain timeout are cut off");
                Ok(())
            }
        }
    }
}

/// The reflection service's own name (v1), which reflection lists too.
const REFLECTION_SERVICE: &str = "grpc.reflection.v1.ServerReflection";

fn name_of<S: NamedService>(_: &S) -> &'static str {
    S::NAME
}

/// The connections a host serves, accepted with TCP_NODELAY. Without it the last
/// segment of an answer waits for the client's ACK of the previous one, and a client
/// delays that ACK (≈40 ms on Linux) on a connection that carries more than one call,
/// which every gRPC client's does. (tonic sets TCP_NODELAY only on listeners it binds
/// itself; `serve_with_incoming_shutdown` takes the sockets as they come.)
fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// Readiness follows the dependencies: NOT_SERVING while NATS or PostgreSQL is gone or
/// a `readiness` check fails (a halted projection), and once shutdown starts; checked
/// every second.
async fn follow_readiness(
    health: HealthReporter,
    status_lock: std::sync::Arc<tokio::sync::Mutex<()>>,
    service: &'static str,
    nats: async_nats::Client,
    pool: sqlx::PgPool,
    readiness: Readiness,
    shutdown: Shutdown,
) {
    let mut ready = true;
    let stopped = shutdown.signal();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            // Shutdown's NOT_SERVING is set by `Host::serve`.
            () = &mut stopped => return,
            () = tokio::time::sleep(READINESS_CHECK) => {}
        }
        let nats_up = nats.connection_state() == async_nats::connection::State::Connected;
        let database_up = sqlx::query("SELECT 1").execute(&pool).await.is_ok();
        let parts_ready = readiness.ready();
        // Checked and set under the status lock: shutdown sets NOT_SERVING under it
        // once it has begun, so a status set here never lands after that.
        let _setting = status_lock.lock().await;
        if shutdown.is_stopped() {
            // Shutting down: NOT_SERVING stays, whatever the dependencies say.
            return;
        }
        if (nats_up && database_up && parts_ready) != ready {
            ready = nats_up && database_up && parts_ready;
            let status = if ready {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            health.set_service_status(service, status).await;
            tracing::warn!(
                service,
                nats_up,
                database_up,
                parts_ready,
                "readiness changed"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio_stream::StreamExt as _;

    use super::*;

    #[tokio::test]
    async fn accepted_connections_send_without_delay() -> Result<(), Box<dyn std::error::Error>> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let mut accepted = incoming(listener);
        let _client = tokio::net::TcpStream::connect(address).await?;
        let served = accepted.next().await.ok_or("no connection accepted")??;
        assert!(
            served.nodelay()?,
            "TCP_NODELAY is not set on the accepted socket"
        );
        Ok(())
    }
}
