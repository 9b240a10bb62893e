//! `observatory.v1.ExchangeService`, for partner systems: bulk import of registry writes, and
//! the feed of the registry's changes.
//!
//! An import applies each item through the very handler of the RegistryService call of the same
//! name, as the caller: same validation, role rule, scope check, idempotency, audit event. Up to
//! [`IMPORT_WINDOW`] items (and [`IMPORT_BYTES`] of them) are in flight at once, so that they
//! fill commit groups; results go back in the order the items came.
//!
//! The feed reads the store's change positions in batches, keeps the changes the caller's scope
//! covers (a whole batch's reaches looked up at once), records the patient-level ones it sends
//! in the audit trail before sending them, and, when following, waits for the writer's signal
//! of a new commit (or polls, for writers of other processes on the same database).
//!
//! Both outlast the call that opened them, so both check every [`LIVENESS_CHECK`] that the
//! caller's token is still live, end when the server stops, and count against the
//! [`STREAMS_PER_TOKEN`] a token may hold open at once.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use observatory_domain::{Violations, access::Principal, model::RecordKind};
use observatory_proto::v1::{self as pb, exchange_service_server::ExchangeService, history_entry::Record as H};
use observatory_store::Change;
use opentelemetry::{
    KeyValue,
    metrics::{Counter, Histogram},
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::convert::enum_in;
use crate::registry::RegistryApi;
use crate::{ApiState, access, error};

/// Import items applied at once: as many as one commit group of the writer takes (its
/// `max_batch`), so that an import fills whole groups.
pub const IMPORT_WINDOW: usize = 256;
/// Bytes of import items (as encoded) in flight at once, at most (and one item more).
pub const IMPORT_BYTES: usize = 64 * 1024 * 1024;
/// Exchange streams one token may hold open at once; more are RESOURCE_EXHAUSTED.
pub const STREAMS_PER_TOKEN: usize = 4;
/// How often an open stream checks that its token is still live.
pub const LIVENESS_CHECK: Duration = Duration::from_secs(2);
/// Changes read from the store at a time.
const FEED_BATCH: u32 = 500;
/// How often a following feed looks for changes committed by other processes.
const FEED_POLL: Duration = Duration::from_secs(1);
/// How long a following feed lets commits gather after being woken by one, so that a busy
/// writer wakes each feed into one read of several commits rather than one read each.
const FEED_COALESCE: Duration = Duration::from_millis(50);
/// Longest reference an import item may carry.
const MAX_REFERENCE: usize = 100;

#[derive(Clone)]
pub struct ExchangeApi {
    state: ApiState,
    registry: RegistryApi,
    metrics: Metrics,
    /// Becomes true when the server stops: open streams end, so that shutdown is not held up
    /// by streams that never end by themselves.
    stopping: watch::Receiver<bool>,
    /// Streams open, by token id.
    open: Arc<Mutex<HashMap<String, usize>>>,
}

/// One of the streams a token holds open; given back when dropped (the stream's task ended).
struct StreamSlot {
    open: Arc<Mutex<HashMap<String, usize>>>,
    token: String,
}

impl StreamSlot {
    fn take(open: &Arc<Mutex<HashMap<String, usize>>>, principal: &Principal) -> Result<Self, Status> {
        let mut held = open.lock().unwrap_or_else(|e| e.into_inner());
        let count = held.entry(principal.token_id.clone()).or_default();
        if *count >= STREAMS_PER_TOKEN {
            return Err(Status::resource_exhausted(format!(
                "this token already holds {STREAMS_PER_TOKEN} exchange streams open: end one first"
            )));
        }
        *count += 1;
        Ok(Self {
            open: Arc::clone(open),
            token: principal.token_id.clone(),
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut held = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = held.get_mut(&self.token) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.token);
            }
        }
    }
}

/// Waits until `stopping` turns true (or its sender is gone: the server is gone too).
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stopping| *stopping).await.map(|_| ());
}

impl std::fmt::Debug for ExchangeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExchangeApi").finish_non_exhaustive()
    }
}

/// Instruments of the exchange, from the global meter provider.
#[derive(Clone)]
struct Metrics {
    items: Counter<u64>,
    lag: Histogram<f64>,
}

impl Metrics {
    fn new() -> Self {
        let meter = opentelemetry::global::meter("observatory");
        Self {
            items: meter
                .u64_counter("observatory.import.items")
                .with_unit("{item}")
                .with_description(
                    "import items answered, by write and status code: their rate is the import throughput",
                )
                .build(),
            lag: meter
                .f64_histogram("observatory.changes.lag")
                .with_unit("s")
                .with_description("age of each change when the feed sends it: how far behind its reader is")
                .build(),
        }
    }
}

impl ExchangeApi {
    /// `stopping` turns true when the server begins to stop.
    pub fn new(state: ApiState, stopping: watch::Receiver<bool>) -> Self {
        Self {
            registry: RegistryApi::new(state.clone()),
            state,
            metrics: Metrics::new(),
            stopping,
            open: Arc::default(),
        }
    }
}

/// Who imports: the import's call, whose principal and ids each item's operation carries.
#[derive(Clone)]
struct Caller {
    call: observatory_app::Call,
    principal: Principal,
}

impl Caller {
    fn of<T>(req: &Request<T>) -> Result<Self, Status> {
        Ok(Self {
            call: crate::guard::call(req, "Import")?,
            principal: crate::guard::principal(req)?.clone(),
        })
    }
}

/// Field name of a write in an item: the root of its violations' paths, and its metric label.
fn write_name(write: &pb::import_item::Write) -> &'static str {
    use pb::import_item::Write as W;
    match write {
        W::RegisterPatient(_) => "register_patient",
        W::UpdatePatient(_) => "update_patient",
        W::DeclareEpisode(_) => "declare_episode",
        W::TransitionEpisode(_) => "transition_episode",
        W::TransitionAuthorisation(_) => "transition_authorisation",
        W::RecordFollowUp(_) => "record_follow_up",
        W::RecordAdverseEvent(_) => "record_adverse_event",
        W::UpdateAdverseEvent(_) => "update_adverse_event",
        W::UpdateEpisode(_) => "update_episode",
        W::UpdateAuthorisation(_) => "update_authorisation",
        W::UpdateFollowUp(_) => "update_follow_up",
        W::RequestRcpReview(_) => "request_rcp_review",
        W::RecordRcpOpinion(_) => "record_rcp_opinion",
    }
}

/// A refused item: the status, its field violations rooted at `root`.
fn import_error(status: &Status, root: &str) -> pb::ImportError {
    use tonic_types::StatusExt;
    let violations = status
        .get_details_bad_request()
        .map(|b| {
            b.field_violations
                .into_iter()
                .map(|v| pb::FieldViolation {
                    field: if root.is_empty() {
                        v.field
                    } else {
                        format!("{root}.{}", v.field)
                    },
                    description: v.description,
                })
                .collect()
        })
        .unwrap_or_default();
    pb::ImportError {
        code: status.code() as i32,
        message: status.message().to_owned(),
        violations,
    }
}

impl ExchangeApi {
    /// Reads items and answers them in order, [`IMPORT_WINDOW`] and [`IMPORT_BYTES`] at most in
    /// flight, until the caller's stream ends. It ends sooner, once the items in flight are
    /// answered, when the caller's stream breaks (its error), the token is no longer live
    /// (UNAUTHENTICATED) or the server stops (UNAVAILABLE).
    async fn run_import(
        self,
        caller: Caller,
        mut items: Streaming<pb::ImportItem>,
        tx: mpsc::Sender<Result<pb::ImportResult, Status>>,
        _slot: StreamSlot,
    ) {
        type InFlight = (u64, String, usize, tokio::task::JoinHandle<pb::ImportResult>);
        let mut window: VecDeque<InFlight> = VecDeque::with_capacity(IMPORT_WINDOW);
        let mut bytes = 0usize;
        let mut index = 0u64;
        let mut ended: Option<Option<Status>> = None;
        let mut checked = Instant::now();
        let mut stopping = self.stopping.clone();
        loop {
            let reading = ended.is_none() && window.len() < IMPORT_WINDOW && bytes < IMPORT_BYTES;
            tokio::select! {
                // Answers first: a caller waiting for a result before sending more is served.
                biased;
                done = async { (&mut window.front_mut().expect("checked non-empty").3).await }, if !window.is_empty() => {
                    let (index, reference, size, _) = window.pop_front().expect("checked non-empty");
                    bytes -= size;
                    let result = done.unwrap_or_else(|e| {
                        tracing::error!(error = %e, "an import item stopped");
                        pb::ImportResult {
                            index,
                            reference,
                            outcome: Some(pb::import_result::Outcome::Error(import_error(
                                &Status::internal("internal error; it has been logged"),
                                "",
                            ))),
                        }
                    });
                    if tx.send(Ok(result)).await.is_err() {
                        // The caller left: the writes in flight end by themselves, and an import
                        // sent again with the same keys replays them.
                        return;
                    }
                }
                () = stopped(&mut stopping), if ended.is_none() => {
                    ended = Some(Some(Status::unavailable(format!(
                        "the observatory is stopping: items from index {index} on were not read; send them again"
                    ))));
                }
                next = items.message(), if reading => match next {
                    Ok(Some(item)) => {
                        if checked.elapsed() >= LIVENESS_CHECK {
                            checked = Instant::now();
                            if let Err(status) = access::still_live(&self.state.store, &caller.principal).await {
                                ended = Some(Some(status));
                                continue;
                            }
                        }
                        // Each item counts against the token's rate, as a call would: the import
                        // is paced, not refused.
                        self.state.limiter.pace(&caller.principal.token_id).await;
                        let size = prost::Message::encoded_len(&item);
                        let api = self.clone();
                        let caller = caller.clone();
                        let reference = item.reference.clone();
                        let span = tracing::info_span!("import.item", index);
                        let task = tokio::spawn(async move { api.import_item(&caller, index, item).await }.instrument(span));
                        window.push_back((index, reference, size, task));
                        bytes += size;
                        index += 1;
                    }
                    Ok(None) => ended = Some(None),
                    Err(status) => ended = Some(Some(status)),
                },
                else => break,
            }
        }
        if let Some(Some(status)) = ended {
            let _ = tx.send(Err(status)).await;
        }
    }

    async fn import_item(&self, caller: &Caller, index: u64, item: pb::ImportItem) -> pb::ImportResult {
        let (root, result) = import_item(&self.registry, &caller.call, index, item).await;
        let status = match &result.outcome {
            Some(pb::import_result::Outcome::Error(e)) => tonic::Code::from_i32(e.code),
            _ => tonic::Code::Ok,
        };
        let item = if root.is_empty() { "none" } else { root };
        self.metrics.items.add(
            1,
            &[
                KeyValue::new("item", item),
                KeyValue::new("rpc.grpc.status", error::code_name(status)),
            ],
        );
        result
    }
}

/// Applies one import item as `call` (its operation `Import`: each write is made as the
/// operation it is), with the same parsing and the same application-layer operation as its
/// RegistryService call: what `ExchangeService.Import` does with each item it reads, and
/// `observatory import` with each line of a file. Returns the root of the item's field paths
/// (`register_patient`; empty when the item carries no write) and the result.
pub async fn import_item(
    registry: &RegistryApi,
    call: &observatory_app::Call,
    index: u64,
    item: pb::ImportItem,
) -> (&'static str, pb::ImportResult) {
    let pb::ImportItem { reference, write } = item;
    let (root, outcome) = if reference.chars().count() > MAX_REFERENCE {
        (
            "",
            Err(error::invalid_field(
                "reference",
                "TOO_LONG",
                &format!("must be at most {MAX_REFERENCE} characters"),
            )),
        )
    } else if let Some(write) = write {
        (write_name(&write), apply(registry, call, write).await)
    } else {
        let mut v = Violations::new();
        v.push("write", "REQUIRED", "an item carries one write");
        ("", Err(error::invalid(&v)))
    };
    (
        root,
        pb::ImportResult {
            index,
            reference,
            outcome: Some(match outcome {
                Ok(record) => pb::import_result::Outcome::Written(pb::HistoryEntry { record: Some(record) }),
                Err(status) => pb::import_result::Outcome::Error(import_error(&status, root)),
            }),
        },
    )
}

/// Applies one write as the operation it is: the same parsing and the same operation of the
/// application layer as its RegistryService call.
async fn apply(r: &RegistryApi, call: &observatory_app::Call, write: pb::import_item::Write) -> Result<H, Status> {
    use pb::import_item::Write as W;
    Ok(match write {
        W::RegisterPatient(m) => H::Patient(r.register_patient_as(&call.making("RegisterPatient"), &m).await?),
        W::UpdatePatient(m) => H::Patient(r.update_patient_as(&call.making("UpdatePatient"), &m).await?),
        W::DeclareEpisode(m) => {
            let declared = r.declare_episode_as(&call.making("DeclareEpisode"), &m).await?;
            H::Episode(
                declared
                    .episode
                    .ok_or_else(|| Status::internal("a declaration answered no episode"))?,
            )
        }
        W::TransitionEpisode(m) => H::Episode(r.transition_episode_as(&call.making("TransitionEpisode"), &m).await?),
        W::TransitionAuthorisation(m) => H::Authorisation(
            r.transition_authorisation_as(&call.making("TransitionAuthorisation"), &m)
                .await?,
        ),
        W::RecordFollowUp(m) => H::FollowUp(r.record_follow_up_as(&call.making("RecordFollowUp"), &m).await?),
        W::RecordAdverseEvent(m) => H::AdverseEvent(
            r.record_adverse_event_as(&call.making("RecordAdverseEvent"), &m)
                .await?,
        ),
        W::UpdateAdverseEvent(m) => H::AdverseEvent(
            r.update_adverse_event_as(&call.making("UpdateAdverseEvent"), &m)
                .await?,
        ),
        W::UpdateEpisode(m) => H::Episode(r.update_episode_as(&call.making("UpdateEpisode"), &m).await?),
        W::UpdateAuthorisation(m) => H::Authorisation(
            r.update_authorisation_as(&call.making("UpdateAuthorisation"), &m)
                .await?,
        ),
        W::UpdateFollowUp(m) => H::FollowUp(r.update_follow_up_as(&call.making("UpdateFollowUp"), &m).await?),
        W::RequestRcpReview(m) => H::Patient(r.request_rcp_review_as(&call.making("RequestRcpReview"), &m).await?),
        W::RecordRcpOpinion(m) => H::Patient(r.record_rcp_opinion_as(&call.making("RecordRcpOpinion"), &m).await?),
    })
}

/// What a following or catching-up feed needs.
struct Feed {
    app: observatory_app::App,
    /// The feed's call: who reads, for the scope and the audit events of what is sent.
    call: observatory_app::Call,
    principal: Principal,
    kinds: Vec<RecordKind>,
    follow: bool,
    metrics: Metrics,
    stopping: watch::Receiver<bool>,
    _slot: StreamSlot,
}

impl Feed {
    /// Sends the changes after `cursor` the scope covers, batch by batch; then, when following,
    /// waits for more. Ends when caught up (not following), when the caller leaves, when the
    /// token is no longer live (UNAUTHENTICATED) or when the server stops (UNAVAILABLE, with the
    /// position to resume after).
    async fn run(mut self, mut cursor: i64, tx: mpsc::Sender<Result<pb::Change, Status>>) {
        let mut committed = self.app.store.watch_changes();
        let mut checked = Instant::now();
        let stopping =
            |cursor: i64| Status::unavailable(format!("the observatory is stopping; resume after position {cursor}"));
        loop {
            // Seen before reading: a commit from now on wakes the wait below.
            committed.borrow_and_update();
            if checked.elapsed() >= LIVENESS_CHECK {
                checked = Instant::now();
                if let Err(status) = access::still_live(&self.app.store, &self.principal).await {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
            }
            let read =
                observatory_app::exchange::read_changes(&self.app, &self.call, cursor, &self.kinds, FEED_BATCH).await;
            let (visible, read_to, full) = match read {
                Ok(read) => (read.visible, read.read_to, read.full),
                Err(e) => {
                    let _ = tx.send(Err(error::app(e))).await;
                    return;
                }
            };
            match self.send(visible, &tx).await {
                // Positions out of scope between those sent are passed all the same.
                Sent::All => cursor = read_to,
                Sent::CallerLeft => return,
                Sent::Stopped { last_sent } => {
                    let _ = tx.send(Err(stopping(last_sent.unwrap_or(cursor)))).await;
                    return;
                }
            }
            if full {
                continue;
            }
            if !self.follow {
                return;
            }
            tokio::select! {
                changed = committed.changed() => {
                    if changed.is_err() {
                        let _ = tx.send(Err(stopping(cursor))).await;
                        return;
                    }
                    tokio::time::sleep(FEED_COALESCE).await;
                }
                () = tokio::time::sleep(FEED_POLL) => {}
                () = tx.closed() => return,
                () = stopped(&mut self.stopping) => {
                    let _ = tx.send(Err(stopping(cursor))).await;
                    return;
                }
            }
        }
    }

    /// Sends changes (already recorded in the audit trail) in order, until the caller leaves or
    /// the server stops.
    async fn send(&mut self, visible: Vec<Change>, tx: &mpsc::Sender<Result<pb::Change, Status>>) -> Sent {
        let mut last_sent = None;
        for change in visible {
            let age = (chrono::Utc::now() - change.record.meta().recorded_at).as_seconds_f64();
            self.metrics.lag.record(age.max(0.0), &[]);
            let position = change.position;
            let change = pb::Change {
                position: position as u64,
                record: Some(crate::convert::history_entry(&change.record)),
            };
            // A caller that stops reading holds the send: the server's stop ends the wait.
            tokio::select! {
                sent = tx.send(Ok(change)) => if sent.is_err() {
                    return Sent::CallerLeft;
                },
                () = stopped(&mut self.stopping) => return Sent::Stopped { last_sent },
            }
            last_sent = Some(position);
        }
        Sent::All
    }
}

/// How sending a batch ended.
enum Sent {
    All,
    /// The caller went away (or the feed cannot go on and has said why).
    CallerLeft,
    /// The server is stopping; the last position sent, if any of the batch was.
    Stopped {
        last_sent: Option<i64>,
    },
}

#[tonic::async_trait]
impl ExchangeService for ExchangeApi {
    type ImportStream = ReceiverStream<Result<pb::ImportResult, Status>>;
    type WatchChangesStream = ReceiverStream<Result<pb::Change, Status>>;
    type ExportFhirStream = ReceiverStream<Result<pb::ExportFhirResponse, Status>>;

    async fn export_fhir(
        &self,
        req: Request<pb::ExportFhirRequest>,
    ) -> Result<Response<Self::ExportFhirStream>, Status> {
        let asked = parse_fhir_export(req.get_ref())?;
        let call = crate::guard::call(&req, "ExportFhir")?;
        // Admitted now, so that a refusal is the call's answer rather than the stream's end.
        let export = observatory_app::fhir::start(&self.state.app, &call, asked.clone())
            .await
            .map_err(error::app)?;
        let principal = crate::guard::principal(&req)?.clone();
        let slot = StreamSlot::take(&self.open, &principal)?;
        let (tx, rx) = mpsc::channel(4);
        let job = FhirJob {
            store: self.state.store.clone(),
            principal,
            request: fhir_request_text(&asked),
            stopping: self.stopping.clone(),
            _slot: slot,
        };
        tokio::spawn(job.run(export, tx).in_current_span());
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn import(&self, req: Request<Streaming<pb::ImportItem>>) -> Result<Response<Self::ImportStream>, Status> {
        let caller = Caller::of(&req)?;
        let slot = StreamSlot::take(&self.open, &caller.principal)?;
        let items = req.into_inner();
        let (tx, rx) = mpsc::channel(IMPORT_WINDOW);
        tokio::spawn(self.clone().run_import(caller, items, tx, slot).in_current_span());
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn watch_changes(
        &self,
        req: Request<pb::WatchChangesRequest>,
    ) -> Result<Response<Self::WatchChangesStream>, Status> {
        let r = req.get_ref();
        let mut v = Violations::new();
        // Each kind once, in the order first named: a list longer than the kinds there are is
        // refused before anything is done with it.
        let mut kinds: Vec<RecordKind> = Vec::new();
        if r.kinds.len() > RecordKind::ALL.len() {
            v.push(
                "kinds",
                "TOO_MANY",
                format!("must hold at most {} kinds, each once", RecordKind::ALL.len()),
            );
        } else {
            for (i, k) in r.kinds.iter().enumerate() {
                if let Some(kind) = v.check(
                    &format!("kinds[{i}]"),
                    enum_in!(*k, pb::RecordKind, "RECORD_KIND_", RecordKind),
                ) && !kinds.contains(&kind)
                {
                    kinds.push(kind);
                }
            }
        }
        let after = i64::try_from(r.after_position).unwrap_or_else(|_| {
            v.push("after_position", "OUT_OF_RANGE", "is past any position of the feed");
            0
        });
        if !v.is_empty() {
            return Err(error::invalid(&v));
        }
        let follow = r.follow;
        let call = crate::guard::call(&req, "WatchChanges")?;
        // Admitted now, so that a refusal is the call's answer rather than the stream's end.
        observatory_app::scope::admit(&self.state.store, &call, observatory_app::scope::Target::List)
            .await
            .map_err(error::app)?;
        let principal = crate::guard::principal(&req)?.clone();
        let slot = StreamSlot::take(&self.open, &principal)?;
        let feed = Feed {
            app: self.state.app.clone(),
            call,
            principal,
            kinds,
            follow,
            metrics: self.metrics.clone(),
            stopping: self.stopping.clone(),
            _slot: slot,
        };
        let (tx, rx) = mpsc::channel(FEED_BATCH as usize);
        tokio::spawn(feed.run(after, tx).in_current_span());
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// An `ExportFhirRequest` as the export it asks for.
pub fn parse_fhir_export(r: &pb::ExportFhirRequest) -> Result<observatory_app::fhir::FhirExport, Status> {
    let mut v = Violations::new();
    let cohort = v.check("cohort_id", crate::convert::optional(&r.cohort_id, crate::convert::id));
    let since = match &r.since {
        None => Some(None),
        Some(t) => match chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(u32::MAX)) {
            Some(at) => Some(Some(at)),
            None => {
                v.push("since", "OUT_OF_RANGE", "is not an instant the registry can read");
                None
            }
        },
    };
    if !v.is_empty() {
        return Err(error::invalid(&v));
    }
    Ok(observatory_app::fhir::FhirExport {
        cohort: cohort.flatten(),
        since: since.flatten(),
    })
}

/// The request as the manifest names it.
fn fhir_request_text(asked: &observatory_app::fhir::FhirExport) -> String {
    let mut s = "observatory.v1.ExchangeService/ExportFhir".to_owned();
    if let Some(c) = &asked.cohort {
        s.push_str(&format!("?cohort_id={c}"));
    }
    if let Some(t) = asked.since {
        s.push_str(if asked.cohort.is_some() { "&" } else { "?" });
        s.push_str(&format!("since={}", t.to_rfc3339()));
    }
    s
}

/// A FHIR export streamed to its caller.
struct FhirJob {
    store: observatory_store::Store,
    principal: Principal,
    request: String,
    stopping: watch::Receiver<bool>,
    _slot: StreamSlot,
}

impl FhirJob {
    /// Sends the export's batches, then its manifest. Ends early when the caller leaves, when the
    /// token is no longer live (UNAUTHENTICATED) or when the server stops (UNAVAILABLE).
    async fn run(
        mut self,
        mut export: observatory_app::fhir::Export,
        tx: mpsc::Sender<Result<pb::ExportFhirResponse, Status>>,
    ) {
        let started = chrono::Utc::now();
        let mut counts: Vec<(&'static str, u64)> = Vec::new();
        let mut checked = Instant::now();
        loop {
            if checked.elapsed() >= LIVENESS_CHECK {
                checked = Instant::now();
                if let Err(status) = access::still_live(&self.store, &self.principal).await {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
            }
            let batch = match export.next().await {
                Ok(Some(batch)) => batch,
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send(Err(error::app(e))).await;
                    return;
                }
            };
            for (resource_type, lines) in batch.parts {
                let count = lines.len() as u64;
                match counts.iter_mut().find(|(t, _)| *t == resource_type) {
                    Some((_, n)) => *n += count,
                    None => counts.push((resource_type, count)),
                }
                let mut ndjson = lines.join("\n");
                ndjson.push('\n');
                let part = pb::ExportFhirResponse {
                    part: Some(pb::export_fhir_response::Part::Lines(pb::FhirLines {
                        resource_type: resource_type.to_owned(),
                        ndjson: ndjson.into_bytes(),
                        count: u32::try_from(count).unwrap_or(u32::MAX),
                    })),
                };
                tokio::select! {
                    sent = tx.send(Ok(part)) => if sent.is_err() {
                        return;
                    },
                    () = stopped(&mut self.stopping) => {
                        let _ = tx.send(Err(Status::unavailable("the observatory is stopping; export again"))).await;
                        return;
                    }
                }
            }
        }
        let files: Vec<(&str, String, u64)> = observatory_app::fhir::RESOURCE_TYPES
            .iter()
            .filter_map(|t| {
                counts
                    .iter()
                    .find(|(c, _)| c == t)
                    .map(|(_, n)| (*t, format!("{t}.ndjson"), *n))
            })
            .collect();
        let manifest = observatory_app::fhir::manifest(started, &self.request, &files);
        let _ = tx
            .send(Ok(pb::ExportFhirResponse {
                part: Some(pb::export_fhir_response::Part::Manifest(manifest.to_string())),
            }))
            .await;
    }
}
