//! Authentication on every RPC: a tower layer in front of a service's routes that
//! verifies the call's bearer token (`circle_auth::Verifier`) for this service's
//! audience, holds a calling service to the RPCs configured for its identity, and puts
//! the [`Caller`] into the request's extensions, where [`crate::caller`] reads it.
//! Health (for probes) and, when it is served at all, reflection are the only open
//! paths. A refused call is answered here, before any handler runs.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::task::{Context, Poll};

use circle_auth::{AuthError, Caller, Role, Verifier};
use tonic::Code;

use crate::ApiError;

/// Paths served without a token.
const OPEN_PREFIXES: [&str; 3] = [
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// Verifies calls for one service.
pub struct Authenticator {
    verifier: Verifier,
    audience: String,
    domain: String,
    /// Service identity → the RPCs (`package.Service/Method`) it may call.
    services: HashMap<String, HashSet<String>>,
}

impl Authenticator {
    pub fn new(
        verifier: Verifier,
        audience: &str,
        domain: &str,
        services: impl IntoIterator<Item = (String, Vec<String>)>,
    ) -> Self {
        Self {
            verifier,
            audience: audience.to_owned(),
            domain: domain.to_owned(),
            services: services
                .into_iter()
                .map(|(identity, methods)| (identity, methods.into_iter().collect()))
                .collect(),
        }
    }

    /// The caller of a call to `path` (`/package.Service/Method`) with `headers`.
    pub fn authenticate(&self, headers: &http::HeaderMap, path: &str) -> Result<Caller, ApiError> {
        let token = bearer(headers)?;
        let now = circle_auth::unix_now();
        let claims = self
            .verifier
            .verify(token, &self.audience, now)
            .map_err(unauthenticated)?;
        let caller = claims.caller();
        if caller.has(Role::Service) {
            let method = path.trim_start_matches('/');
            let Some(allowed) = self.services.get(&caller.actor_id) else {
                return Err(ApiError::new(
                    Code::PermissionDenied,
                    "SERVICE_UNKNOWN",
                    "this service identity is not configured to call Circle",
                ));
            };
            if !allowed.contains(method) {
                return Err(ApiError::new(
                    Code::PermissionDenied,
                    "SERVICE_NOT_ALLOWED",
                    "this service identity is not configured to call this RPC",
                ));
            }
        }
        Ok(caller)
    }
}

fn bearer(headers: &http::HeaderMap) -> Result<&str, ApiError> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Err(unauthenticated(AuthError::Missing));
    };
    let value = value
        .to_str()
        .map_err(|_| unauthenticated(AuthError::Malformed))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| unauthenticated(AuthError::Malformed))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(unauthenticated(AuthError::Malformed));
    }
    Ok(token.trim())
}

fn unauthenticated(error: AuthError) -> ApiError {
    ApiError::new(Code::Unauthenticated, error.reason(), error.to_string())
}

/// The layer `Host` puts in front of every route.
#[derive(Clone)]
pub struct AuthLayer {
    authenticator: Arc<Authenticator>,
}

impl AuthLayer {
    pub fn new(authenticator: Arc<Authenticator>) -> Self {
        Self { authenticator }
    }
}

impl<S> tower_layer::Layer<S> for AuthLayer {
    type Service = Authenticated<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticated {
            inner,
            authenticator: self.authenticator.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Authenticated<S> {
    inner: S,
    authenticator: Arc<Authenticator>,
}

type BoxFuture<T, E> = std::pin::Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B> tower_service::Service<http::Request<B>> for Authenticated<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        if !OPEN_PREFIXES.iter().any(|open| path.starts_with(open)) {
            match self.authenticator.authenticate(request.headers(), path) {
                Ok(caller) => {
                    // The per-caller limit counts a person or service in a network.
                    request
                        .extensions_mut()
                        .insert(crate::limits::CallerKey(format!(
                            "{}/{}",
                            caller.network, caller.actor_id
                        )));
                    request.extensions_mut().insert(caller);
                }
                Err(error) => {
                    let answer = error.into_status(&self.authenticator.domain).into_http();
                    return Box::pin(async move { Ok(answer) });
                }
            }
        }
        // The clone took `poll_ready`'s place; call the one that is ready.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(inner.call(request))
    }
}
