//! Bounds on every call: a deadline per RPC, and a rate per principal.
//!
//! - **Deadlines**: each RPC gets at most its deadline (the configured request timeout; ten
//!   times that for `VerifyAudit`, which walks the whole trail) to produce its answer (for a
//!   streamed download, the start of the stream), then DEADLINE_EXCEEDED. The token lookup
//!   before it is not counted. A caller's shorter `grpc-timeout` ends the call sooner (answered
//!   CANCELLED by the transport). A write that reached the group-commit writer before the
//!   deadline still commits: retry with the same idempotency key to learn its outcome.
//! - **Rates**: each token has a bucket of `burst` calls refilled at `per_second` calls per
//!   second; a call finding it empty is RESOURCE_EXHAUSTED, with a `google.rpc.RetryInfo`
//!   saying when to try again. Health checks carry no token and are not limited; calls
//!   refused for want of a valid token are not counted against any bucket.
//!
//! The layer sits behind authentication, which puts the caller's principal in the request.

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use observatory_domain::access::Principal;
use tokio::time::Instant;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The configured bounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Deadline of an RPC (see [`deadline_for`]).
    pub request_timeout: Duration,
    /// Calls per second a token may sustain.
    pub per_second: f64,
    /// Calls a token may make at once after a pause.
    pub burst: u32,
    /// Calls with invalid credentials one peer address may make per second, once its burst is
    /// used up; beyond, its calls are refused before any token is looked up.
    pub failures_per_second: f64,
    /// Calls with invalid credentials one peer address may make at once.
    pub failures_burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            per_second: 200.0,
            burst: 400,
            failures_per_second: 1.0,
            failures_burst: 30,
        }
    }
}

/// The deadline of the RPC at `path`.
pub fn deadline_for(path: &str, limits: &Limits) -> Duration {
    if path == "/observatory.v1.AuditService/VerifyAudit" {
        limits.request_timeout * 10
    } else {
        limits.request_timeout
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets, one per token id.
#[derive(Debug)]
pub struct RateLimiter {
    limits: Limits,
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// Buckets kept before full ones (as good as absent) are dropped.
const PRUNE_ABOVE: usize = 10_000;

impl RateLimiter {
    /// Takes one call from `key`'s bucket, waiting as long as the bucket needs to refill: how
    /// the items of an import stream are paced at their token's rate.
    pub async fn pace(&self, key: &str) {
        while let Err(wait) = self.take(key, Instant::now()) {
            tokio::time::sleep(wait).await;
        }
    }

    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `key`'s bucket is empty now, without taking from it: how long until it holds a
    /// call again.
    pub fn empty(&self, key: &str, now: Instant) -> Option<Duration> {
        let Limits { per_second, burst, .. } = self.limits;
        let buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let b = buckets.get(key)?;
        let tokens =
            (b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_second).min(f64::from(burst.max(1)));
        (tokens < 1.0).then(|| Duration::from_secs_f64((1.0 - tokens) / per_second.max(f64::MIN_POSITIVE)))
    }

    /// Takes one call from `key`'s bucket: `Ok`, or how long until one is available.
    pub fn take(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let Limits { per_second, burst, .. } = self.limits;
        let burst = f64::from(burst.max(1));
        let refill =
            |b: &Bucket| (b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_second).min(burst);
        // A poisoned map only holds counters: keep using it.
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > PRUNE_ABOVE {
            buckets.retain(|_, b| refill(b) < burst);
        }
        let bucket = buckets
            .entry(key.to_owned())
            .or_insert(Bucket { tokens: burst, at: now });
        let tokens = refill(bucket);
        if tokens >= 1.0 {
            *bucket = Bucket {
                tokens: tokens - 1.0,
                at: now,
            };
            Ok(())
        } else {
            *bucket = Bucket { tokens, at: now };
            Err(Duration::from_secs_f64(
                (1.0 - tokens) / per_second.max(f64::MIN_POSITIVE),
            ))
        }
    }
}

/// Puts deadlines and rate limits in front of every service.
#[derive(Debug, Clone)]
pub struct BoundsLayer {
    limiter: Arc<RateLimiter>,
}

impl BoundsLayer {
    pub fn new(limits: Limits) -> Self {
        Self::sharing(Arc::new(RateLimiter::new(limits)))
    }

    /// A layer applying `limiter`, shared with whatever else counts against a token's rate.
    pub fn sharing(limiter: Arc<RateLimiter>) -> Self {
        Self { limiter }
    }
}

impl<S> tower::Layer<S> for BoundsLayer {
    type Service = Bounds<S>;

    fn layer(&self, inner: S) -> Bounds<S> {
        Bounds {
            inner,
            limiter: self.limiter.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Bounds<S> {
    inner: S,
    limiter: Arc<RateLimiter>,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for Bounds<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // The service polled ready is the one that must serve the call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let deadline = deadline_for(req.uri().path(), &self.limiter.limits);
        if let Some(principal) = req.extensions().get::<Principal>()
            && let Err(wait) = self.limiter.take(&principal.token_id, Instant::now())
        {
            tracing::warn!(role = %principal.role, token_id = %principal.token_id, "rate limit reached");
            let status = Status::with_error_details(
                Code::ResourceExhausted,
                format!(
                    "this token's rate of {} calls per second (bursts of {}) is used up; retry in {} ms",
                    self.limiter.limits.per_second,
                    self.limiter.limits.burst,
                    wait.as_millis().max(1)
                ),
                ErrorDetails::with_retry_info(Some(wait)),
            );
            return Box::pin(async move { Ok(status.into_http()) });
        }
        Box::pin(async move {
            match tokio::time::timeout(deadline, inner.call(req)).await {
                Ok(answer) => answer,
                Err(_) => Ok(Status::deadline_exceeded(format!(
                    "no answer within this call's deadline of {} ms",
                    deadline.as_millis()
                ))
                .into_http()),
            }
        })
    }
}

/// Turns a panic while serving a call into INTERNAL for that call alone: the server, its other
/// calls and the connection go on. The panic's message is logged, never sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct CatchPanicLayer;

impl<S> tower::Layer<S> for CatchPanicLayer {
    type Service = CatchPanic<S>;

    fn layer(&self, inner: S) -> CatchPanic<S> {
        CatchPanic { inner }
    }
}

#[derive(Debug, Clone)]
pub struct CatchPanic<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for CatchPanic<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        use futures_util::FutureExt;
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let path = req.uri().path().to_owned();
        // Building the future may panic too.
        let future = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.call(req)));
        Box::pin(async move {
            let outcome = match future {
                Ok(future) => std::panic::AssertUnwindSafe(future).catch_unwind().await,
                Err(panic) => Err(panic),
            };
            match outcome {
                Ok(answer) => answer,
                Err(panic) => {
                    let message = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    tracing::error!(method = %crate::access::known_or_other(&path), panic = %message, "a call panicked; answered INTERNAL");
                    Ok(Status::internal("internal error; it has been logged").into_http())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_second: f64, burst: u32) -> Limits {
        Limits {
            request_timeout: Duration::from_secs(30),
            per_second,
            burst,
            ..Limits::default()
        }
    }

    #[test]
    fn a_bucket_gives_its_burst_then_its_rate() {
        let limiter = RateLimiter::new(limits(2.0, 3));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.take("a", t0), Ok(()));
        }
        let wait = limiter.take("a", t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        // Another token has its own bucket.
        assert_eq!(limiter.take("b", t0), Ok(()));
        // Half a second refills one call, not more.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(limiter.take("a", t1), Ok(()));
        assert!(limiter.take("a", t1).is_err());
        // A long pause refills up to the burst only.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(limiter.take("a", t2), Ok(()));
        }
        assert!(limiter.take("a", t2).is_err());
    }

    #[test]
    fn full_buckets_are_dropped_when_the_map_grows() {
        let limiter = RateLimiter::new(limits(1000.0, 1));
        let t0 = Instant::now();
        for i in 0..=PRUNE_ABOVE {
            limiter.take(&i.to_string(), t0).unwrap();
        }
        limiter.take("last", t0 + Duration::from_secs(1)).unwrap();
        assert!(limiter.buckets.lock().unwrap().len() <= 2);
    }

    #[test]
    fn verification_of_the_whole_trail_gets_a_longer_deadline() {
        let l = Limits::default();
        assert_eq!(
            deadline_for("/observatory.v1.RegistryService/GetPatient", &l),
            l.request_timeout
        );
        assert_eq!(
            deadline_for("/observatory.v1.AuditService/VerifyAudit", &l),
            l.request_timeout * 10
        );
    }

    /// Answers after a second, or after a minute for paths ending in `/Slow`.
    #[derive(Clone)]
    struct Sleepy;

    impl tower::Service<http::Request<()>> for Sleepy {
        type Response = http::Response<tonic::body::Body>;
        type Error = std::convert::Infallible;
        type Future = BoxFuture<Result<Self::Response, Self::Error>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, req: http::Request<()>) -> Self::Future {
            let wait = if req.uri().path().ends_with("/Slow") {
                60_000
            } else {
                10
            };
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(wait)).await;
                Ok(http::Response::new(tonic::body::Body::empty()))
            })
        }
    }

    /// Panics on paths ending in `/Panic`, answers OK otherwise.
    #[derive(Clone)]
    struct Panicky;

    impl tower::Service<http::Request<()>> for Panicky {
        type Response = http::Response<tonic::body::Body>;
        type Error = std::convert::Infallible;
        type Future = BoxFuture<Result<Self::Response, Self::Error>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, req: http::Request<()>) -> Self::Future {
            let panics = req.uri().path().ends_with("/Panic");
            Box::pin(async move {
                tokio::task::yield_now().await;
                assert!(!panics, "a handler bug");
                Ok(http::Response::new(tonic::body::Body::empty()))
            })
        }
    }

    #[tokio::test]
    async fn a_panic_in_a_handler_is_internal_for_that_call_only() {
        use tower::{Layer, Service};
        let mut service = CatchPanicLayer.layer(Panicky);
        let code =
            |r: &http::Response<tonic::body::Body>| Status::from_header_map(r.headers()).map_or(Code::Ok, |s| s.code());
        let request = |path: &str| http::Request::builder().uri(path).body(()).unwrap();
        let panicked = service.call(request("/x.S/Panic")).await.unwrap();
        assert_eq!(code(&panicked), Code::Internal);
        let status = Status::from_header_map(panicked.headers()).expect("status");
        assert!(
            !status.message().contains("handler bug"),
            "the panic is logged, not sent"
        );
        // The service serves the next call as before.
        let fine = service.call(request("/x.S/Fine")).await.unwrap();
        assert_eq!(code(&fine), Code::Ok);
    }

    #[tokio::test]
    async fn a_call_past_its_deadline_is_answered_deadline_exceeded() {
        use tower::{Layer, Service};
        let bounds = Limits {
            request_timeout: Duration::from_millis(200),
            ..limits(10.0, 10)
        };
        let mut service = BoundsLayer::new(bounds).layer(Sleepy);
        let code =
            |r: &http::Response<tonic::body::Body>| Status::from_header_map(r.headers()).map_or(Code::Ok, |s| s.code());
        let request = |path: &str| http::Request::builder().uri(path).body(()).unwrap();
        let fast = service.call(request("/x.S/Fast")).await.unwrap();
        assert_eq!(code(&fast), Code::Ok);
        let started = std::time::Instant::now();
        let slow = service.call(request("/x.S/Slow")).await.unwrap();
        assert_eq!(code(&slow), Code::DeadlineExceeded);
        assert!(started.elapsed() < Duration::from_secs(30));
    }

    // The request codec (observatory_proto::bounded): repeated fields counted on the wire.

    use observatory_proto::{bounded::schema, v1 as pb};
    use prost::Message;

    fn declaration_with_axes(axes: Vec<i32>) -> pb::DeclareEpisodeRequest {
        pb::DeclareEpisodeRequest {
            off_label: Some(pb::OffLabelJustification {
                axes,
                evidence_reference: "PMID 1".into(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn every_repeated_field_a_request_can_carry_has_a_maximum() {
        assert_eq!(schema().unbounded_request_fields(), Vec::<String>::new());
    }

    #[test]
    fn repeated_fields_over_their_maximum_are_named_before_decoding() {
        let s = schema();
        let ok = declaration_with_axes(vec![1, 2, 3, 4]).encode_to_vec();
        assert_eq!(s.check_request("observatory.v1.DeclareEpisodeRequest", &ok), Ok(()));
        let huge = declaration_with_axes(vec![1; 1_000_000]).encode_to_vec();
        let err = s
            .check_request("observatory.v1.DeclareEpisodeRequest", &huge)
            .unwrap_err();
        assert_eq!((err.path.as_str(), err.max), ("off_label.axes", 4));
        // Inside an import item, the path starts at the item.
        let item = pb::ImportItem {
            reference: "row 1".into(),
            write: Some(pb::import_item::Write::DeclareEpisode(declaration_with_axes(vec![
                2;
                5
            ]))),
        }
        .encode_to_vec();
        let err = s.check_request("observatory.v1.ImportItem", &item).unwrap_err();
        assert_eq!(err.path, "declare_episode.off_label.axes");
        // Occurrences of a message field merge when decoded: their elements add up.
        let mut merged = Vec::new();
        for _ in 0..5 {
            merged.extend(
                pb::ImportItem {
                    reference: String::new(),
                    write: Some(pb::import_item::Write::DeclareEpisode(declaration_with_axes(vec![1]))),
                }
                .encode_to_vec(),
            );
        }
        assert_eq!(
            pb::ImportItem::decode(merged.as_slice())
                .ok()
                .and_then(|i| match i.write {
                    Some(pb::import_item::Write::DeclareEpisode(d)) => d.off_label.map(|o| o.axes.len()),
                    _ => None,
                }),
            Some(5),
            "prost merges them"
        );
        let err = s.check_request("observatory.v1.ImportItem", &merged).unwrap_err();
        assert_eq!(err.path, "declare_episode.off_label.axes");
        // Messages repeated: empty ones count too.
        let patient = pb::RegisterPatientRequest {
            diagnoses: vec![pb::Diagnosis::default(); 21],
            ..Default::default()
        }
        .encode_to_vec();
        let err = s
            .check_request("observatory.v1.RegisterPatientRequest", &patient)
            .unwrap_err();
        assert_eq!((err.path.as_str(), err.max), ("diagnoses", 20));
        // Unpacked elements (one tag each) are counted like packed ones.
        let unpacked: Vec<u8> = std::iter::repeat_n([0x10u8, 0x01], 10).flatten().collect();
        assert_eq!(
            pb::WatchChangesRequest::decode(unpacked.as_slice())
                .unwrap()
                .kinds
                .len(),
            10,
            "the bytes are a valid request"
        );
        let err = s
            .check_request("observatory.v1.WatchChangesRequest", &unpacked)
            .unwrap_err();
        assert_eq!(err.path, "kinds");
        // Responses are not requests: not checked here.
        let list = pb::ListEpisodesResponse {
            episodes: vec![pb::Episode::default(); 600],
            next_page_token: String::new(),
        }
        .encode_to_vec();
        assert_eq!(s.check_request("observatory.v1.ListEpisodesResponse", &list), Ok(()));
    }

    #[test]
    fn the_walker_never_panics_on_arbitrary_bytes() {
        // A small deterministic generator: truncations and mutations of valid requests, and noise.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let valid = declaration_with_axes(vec![1, 2]).encode_to_vec();
        let s = schema();
        for round in 0..20_000 {
            let mut bytes = valid.clone();
            let len = (next() as usize) % (bytes.len() + 1);
            bytes.truncate(len);
            for _ in 0..(next() % 4) {
                if !bytes.is_empty() {
                    let at = (next() as usize) % bytes.len();
                    bytes[at] = next() as u8;
                }
            }
            if round % 3 == 0 {
                bytes = (0..(next() % 64)).map(|_| next() as u8).collect();
            }
            for name in ["observatory.v1.DeclareEpisodeRequest", "observatory.v1.ImportItem"] {
                let _ = s.check_request(name, &bytes);
            }
        }
    }
}
