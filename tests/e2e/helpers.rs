//! Test harness: a real server on port 0 over a fresh database (SQLite in a temp dir, or a new
//! PostgreSQL database when `OBSERVATORY_TEST_POSTGRES_URL` is set), typed clients, and helpers
//! that build valid requests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use observatory_domain::access::Role;
use observatory_proto::v1::{
    self as pb, audit_service_client::AuditServiceClient, reference_service_client::ReferenceServiceClient,
    registry_service_client::RegistryServiceClient, report_service_client::ReportServiceClient,
};
use observatory_server::{
    Application, Config,
    access::{TokenRequest, create_token},
};
use observatory_store::{Store, StoreOptions};
use tokio::sync::oneshot;
use tonic::{metadata::MetadataValue, service::interceptor::InterceptedService, transport::Channel};

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct Bearer(MetadataValue<tonic::metadata::Ascii>);

impl Bearer {
    pub fn new(secret: &str) -> Self {
        Bearer(format!("Bearer {secret}").parse().expect("token as metadata"))
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

/// A channel whose calls carry a token.
pub type Authed = InterceptedService<Channel, Bearer>;

/// The centre (FINESS) the test prescriber works at, and the filières of the test tokens.
pub const TEST_CENTRE: &str = "750100125";
pub const TEST_FILIERES: &[&str] = &["MHEMO", "FILNEMUS"];

/// Creates a token for `role` with the test scope, straight in the database.
pub async fn token_for(store: &Store, role: Role) -> String {
    match role {
        Role::Prescriber => scoped_token(store, role, &[TEST_CENTRE], &[]).await,
        Role::DataManager | Role::Analyst | Role::Partner => scoped_token(store, role, &[], TEST_FILIERES).await,
        Role::Admin | Role::NationalAnalyst => scoped_token(store, role, &[], &[]).await,
    }
}

/// Creates a token for `role` bound to `centres` and `filieres`, straight in the database.
pub async fn scoped_token(store: &Store, role: Role, centres: &[&str], filieres: &[&str]) -> String {
    try_scoped_token(store, role, centres, filieres)
        .await
        .expect("create token")
}

/// Like [`scoped_token`], the refusal of a binding the role does not take returned.
pub async fn try_scoped_token(
    store: &Store,
    role: Role,
    centres: &[&str],
    filieres: &[&str],
) -> Result<String, String> {
    let request = TokenRequest {
        client_subject: None,
        role,
        centres: centres.iter().map(|c| c.to_string()).collect(),
        filieres: filieres.iter().map(|f| f.to_string()).collect(),
        expires_at: None,
    };
    create_token(store, &request, "test")
        .await
        .map(|(_, secret)| secret)
        .map_err(|e| e.to_string())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    /// As a prescriber at [`TEST_CENTRE`].
    pub registry: RegistryServiceClient<Authed>,
    /// As a data manager of [`TEST_FILIERES`]: cohorts and corrections.
    pub manager: RegistryServiceClient<Authed>,
    /// As an admin.
    pub reference: ReferenceServiceClient<Authed>,
    /// As an analyst of [`TEST_FILIERES`].
    pub reports: ReportServiceClient<Authed>,
    /// As an admin.
    pub audit: AuditServiceClient<Authed>,
    /// Without credentials.
    pub channel: Channel,
    /// Where the server listens.
    pub addr: std::net::SocketAddr,
    /// Where the web front listens, when `OBSERVATORY_WEB_LISTEN` was given.
    pub web_addr: Option<std::net::SocketAddr>,
    pub database_url: String,
    /// A second handle on the same database, to look at what was stored.
    pub store: Store,
    pub dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub use observatory_store::testing::postgres_url;

/// A fresh, empty database for one test: a file in a temp dir, or a new PostgreSQL database.
pub async fn fresh_database(backend: Backend) -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.path().join("observatory.db").display()),
        Backend::Postgres => {
            let base = postgres_url().expect("postgres backend requested without OBSERVATORY_TEST_POSTGRES_URL");
            observatory_store::testing::fresh_postgres_database(&base).await
        }
    };
    (url, dir)
}

/// Rows of a one-column text query, straight from the database behind `url`.
pub async fn text_rows(url: &str, sql: &'static str) -> Vec<String> {
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.expect("connect sqlite");
        let rows = sqlx::query_scalar(sql).fetch_all(&pool).await.expect("query");
        pool.close().await;
        rows
    } else {
        let pool = sqlx::PgPool::connect(url).await.expect("connect postgres");
        let rows = sqlx::query_scalar(sql).fetch_all(&pool).await.expect("query");
        pool.close().await;
        rows
    }
}

/// [`text_rows`] for a query built at run time (from constants of the test only).
pub async fn text_rows_of(url: &str, sql: String) -> Vec<String> {
    let sql = sqlx::AssertSqlSafe(sql);
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.expect("connect sqlite");
        let rows = sqlx::query_scalar(sql).fetch_all(&pool).await.expect("query");
        pool.close().await;
        rows
    } else {
        let pool = sqlx::PgPool::connect(url).await.expect("connect postgres");
        let rows = sqlx::query_scalar(sql).fetch_all(&pool).await.expect("query");
        pool.close().await;
        rows
    }
}

/// Runs one statement on the database behind `url`, as an operator (or an attacker) with a SQL
/// console would: the rows it changed.
pub async fn execute_sql(url: &str, sql: &str) -> Result<u64, sqlx::Error> {
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await?;
        let done = sqlx::query(sql).execute(&pool).await.map(|r| r.rows_affected());
        pool.close().await;
        done
    } else {
        let pool = sqlx::PgPool::connect(url).await?;
        let done = sqlx::query(sql).execute(&pool).await.map(|r| r.rows_affected());
        pool.close().await;
        done
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    let (database_url, dir) = fresh_database(backend).await;
    start_app(database_url, dir, &[]).await
}

/// Starts a server over an existing database, with its key and reports in `dir`, and `extra`
/// configuration variables.
pub async fn start_app(database_url: String, dir: tempfile::TempDir, extra: &[(&str, &str)]) -> TestApp {
    let mut env = HashMap::from([
        ("OBSERVATORY_DATABASE_URL".to_string(), database_url.clone()),
        ("OBSERVATORY_LISTEN".to_string(), "127.0.0.1:0".to_string()),
        ("OBSERVATORY_ALLOW_PLAINTEXT".to_string(), "true".to_string()),
        (
            "OBSERVATORY_PSEUDONYM_KEY_FILE".to_string(),
            dir.path().join("observatory.key").display().to_string(),
        ),
        (
            "OBSERVATORY_AUDIT_KEY_FILE".to_string(),
            dir.path().join("observatory-audit.key").display().to_string(),
        ),
        (
            "OBSERVATORY_REPORTS_DIR".to_string(),
            dir.path().join("reports").display().to_string(),
        ),
        // Tests call with bad credentials on purpose, all from loopback: the limit per address
        // is tried by a test of its own.
        ("OBSERVATORY_AUTH_FAILURE_BURST".to_string(), "1000000".to_string()),
    ]);
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let config = Config::load(None, &env).expect("config");
    let app = Application::build(&config).await.expect("application starts");
    let addr = app.local_addr();
    let web_addr = app.web_addr();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    // Connected at the first call: a server configured for TLS has no plain-text channel.
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_lazy();
    // With the server's audit key, so that what the tests write directly is chained like the
    // server's own writes.
    let mut options = StoreOptions::new(&database_url);
    options.audit_key = Some(config.audit_key().expect("the server's audit key"));
    let store = Store::connect(&options).await.expect("second store handle");
    let as_role = async |role| InterceptedService::new(channel.clone(), Bearer::new(&token_for(&store, role).await));
    TestApp {
        registry: RegistryServiceClient::new(as_role(Role::Prescriber).await),
        manager: RegistryServiceClient::new(as_role(Role::DataManager).await),
        reference: ReferenceServiceClient::new(as_role(Role::Admin).await),
        reports: ReportServiceClient::new(as_role(Role::Analyst).await),
        audit: AuditServiceClient::new(as_role(Role::Admin).await),
        channel,
        addr,
        web_addr,
        database_url,
        store,

        dir,
        shutdown: Some(tx),
        server: Some(server),
    }
}

impl TestApp {
    /// A registry client holding `secret`.
    pub fn registry_as(&self, secret: &str) -> RegistryServiceClient<Authed> {
        RegistryServiceClient::new(InterceptedService::new(self.channel.clone(), Bearer::new(secret)))
    }

    /// A reference client holding `secret`.
    pub fn reference_as(&self, secret: &str) -> ReferenceServiceClient<Authed> {
        ReferenceServiceClient::new(InterceptedService::new(self.channel.clone(), Bearer::new(secret)))
    }

    /// A report client holding `secret`.
    pub fn reports_as(&self, secret: &str) -> ReportServiceClient<Authed> {
        ReportServiceClient::new(InterceptedService::new(self.channel.clone(), Bearer::new(secret)))
    }

    /// Rows in every table of the registry, to prove a rejected request stored nothing.
    pub async fn row_count(&self) -> i64 {
        self.store
            .scalar_i64(
                "SELECT (SELECT COUNT(*) FROM records) + (SELECT COUNT(*) FROM principal_idempotency_keys) \
                 + (SELECT COUNT(*) FROM centre_versions) + (SELECT COUNT(*) FROM prescriber_versions) \
                 + (SELECT COUNT(*) FROM framework_versions) + (SELECT COUNT(*) FROM cohort_versions) \
                 + (SELECT COUNT(*) FROM patient_versions) + (SELECT COUNT(*) FROM episode_versions) \
                 + (SELECT COUNT(*) FROM authorisation_versions) + (SELECT COUNT(*) FROM follow_up_versions) \
                 + (SELECT COUNT(*) FROM adverse_event_versions)",
            )
            .await
            .expect("count rows")
    }

    /// Stops the server gracefully and waits for it; gives back the database and directory,
    /// to start again on them.
    pub async fn stop(mut self) -> (String, tempfile::TempDir) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server ran cleanly");
        }
        self.store.close().await;
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
        (std::mem::take(&mut self.database_url), dir)
    }

    /// Declares a centre, a prescriber there, and returns (FINESS, RPPS).
    pub async fn centre_and_prescriber(&mut self) -> (String, String) {
        let finess = TEST_CENTRE.to_string();
        self.reference
            .create_centre(pb::CreateCentreRequest {
                idempotency_key: "centre-1".into(),
                finess: finess.clone(),
                name: "CRMR maladies hemorragiques, site coordonnateur".into(),
                r#type: pb::CentreType::CrmrCoordinating as i32,
                region_code: "11".into(),
                filieres: vec!["MHEMO".into()],
            })
            .await
            .expect("create centre");
        let rpps = rpps(1);
        self.reference
            .create_prescriber(pb::CreatePrescriberRequest {
                idempotency_key: "prescriber-1".into(),
                rpps: rpps.clone(),
                specialty: "haematology".into(),
                centre_finess: finess.clone(),
            })
            .await
            .expect("create prescriber");
        (finess, rpps)
    }

    pub async fn aac_cohort(&mut self) -> pb::Cohort {
        self.manager
            .create_cohort(pb::CreateCohortRequest {
                idempotency_key: "cohort-aac".into(),
                name: "Concizumab AAC, haemophilia with inhibitors".into(),
                filiere: "MHEMO".into(),
                pathway: pb::Pathway::Aac as i32,
                drug_atc: "B02BX07".into(),
                orpha_codes: vec!["98878".into(), "98879".into()],
                framework_id: String::new(),
                follow_up_months: 3,
            })
            .await
            .expect("create cohort")
            .into_inner()
    }

    pub async fn patient(&mut self, idmr_suffix: u32) -> pb::Patient {
        let request = self.patient_request(idmr_suffix);
        self.registry
            .register_patient(request)
            .await
            .expect("register patient")
            .into_inner()
    }

    /// The registration of [`Self::patient`]: an IdMR from `idmr_suffix`, haemophilia A.
    pub fn patient_request(&self, idmr_suffix: u32) -> pb::RegisterPatientRequest {
        pb::RegisterPatientRequest {
            idempotency_key: format!("patient-{idmr_suffix}"),
            subject: Some(pb::register_patient_request::Subject::Idmr(format!(
                "{:020}",
                1_000 + idmr_suffix
            ))),
            sex: pb::Sex::Male as i32,
            birth_year_month: "2010-05".into(),
            region_code: "11".into(),
            objects_to_reuse: false,
            diagnoses: vec![pb::Diagnosis {
                orpha_code: "98878".into(),
                icd10: "D66".into(),
                status: pb::DiagnosisStatus::Confirmed as i32,
                diagnosis_date: "2010-09-01".into(),
                factor_level_class: 0,
                inhibitor_status: 0,
            }],
            cde: None,
        }
    }

    /// The reason of every version of a patient, oldest first, as `GetHistory` returns them.
    pub async fn patient_history_reasons(&mut self, patient_id: &str) -> Vec<String> {
        self.registry
            .get_history(pb::GetHistoryRequest {
                kind: pb::RecordKind::Patient as i32,
                id: patient_id.to_owned(),
            })
            .await
            .expect("patient history")
            .into_inner()
            .versions
            .iter()
            .map(|h| match h.record.as_ref() {
                Some(pb::history_entry::Record::Patient(p)) => p.meta.as_ref().expect("meta").reason.clone(),
                other => panic!("a version of a patient's history is not a patient: {other:?}"),
            })
            .collect()
    }

    pub fn aac_declaration(
        &self,
        patient_id: &str,
        cohort_id: &str,
        rpps: &str,
        key: &str,
    ) -> pb::DeclareEpisodeRequest {
        pb::DeclareEpisodeRequest {
            idempotency_key: key.into(),
            patient_id: patient_id.into(),
            cohort_id: cohort_id.into(),
            pathway: pb::Pathway::Aac as i32,
            indication_orpha_code: "98878".into(),
            prescriber_rpps: rpps.into(),
            centre_finess: String::new(),
            rcp: Some(pb::Rcp {
                date: "2026-01-10".into(),
                opinion: pb::RcpOpinion::Favourable as i32,
                level: 0,
            }),
            off_label: None,
            dosage: Some(pb::Dosage {
                dose: 1.5,
                unit: "mg/kg".into(),
                frequency: "once daily".into(),
                route: pb::Route::Subcutaneous as i32,
            }),
            request_date: "2026-01-12".into(),
            authorisation: Some(pb::AuthorisationRequest {
                submitted_date: "2026-01-12".into(),
                reference: String::new(),
            }),
            previous_episode_id: String::new(),
            previous_episode_version: 0,
            dispense_first: false,
            rcp_review_id: String::new(),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A valid RPPS number (Luhn check digit) built from `n`.
pub fn rpps(n: u64) -> String {
    let payload = format!("{:010}", 1_000_000_000 + n);
    format!("{payload}{}", observatory_domain::codes::luhn_check_digit(&payload))
}

/// Field paths of the BadRequest details of an INVALID_ARGUMENT status.
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

/// Every formatted tracing event of the test process.
#[derive(Clone, Default)]
pub struct Captured(pub Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

/// What the test process emits: its logs at debug level; its spans, in memory (exported as each
/// ends) and over OTLP to a receiver on loopback (batched: see [`Telemetry::flush`]); its
/// metrics, likewise.
pub struct Telemetry {
    pub logs: Captured,
    pub spans: opentelemetry_sdk::trace::InMemorySpanExporter,
    pub metrics: opentelemetry_sdk::metrics::InMemoryMetricExporter,
    pub meter_provider: opentelemetry_sdk::metrics::SdkMeterProvider,
    pub tracer_provider: opentelemetry_sdk::trace::SdkTracerProvider,
    /// What the loopback OTLP receiver was sent.
    pub received: Received,
}

impl Telemetry {
    /// Exports every pending span and metric, over OTLP too.
    pub fn flush(&self) {
        self.tracer_provider.force_flush().expect("flush spans");
        self.meter_provider.force_flush().expect("flush metrics");
    }
}

/// Requests an OTLP receiver got.
#[derive(Clone, Default)]
pub struct Received {
    pub traces: Arc<Mutex<Vec<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest>>>,
    pub metrics: Arc<Mutex<Vec<opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest>>>,
}

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService for Received {
    async fn export(
        &self,
        request: tonic::Request<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest>,
    ) -> Result<
        tonic::Response<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse>,
        tonic::Status,
    > {
        self.traces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(request.into_inner());
        Ok(tonic::Response::new(Default::default()))
    }
}

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::MetricsService for Received {
    async fn export(
        &self,
        request: tonic::Request<opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest>,
    ) -> Result<
        tonic::Response<opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse>,
        tonic::Status,
    > {
        self.metrics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(request.into_inner());
        Ok(tonic::Response::new(Default::default()))
    }
}

/// Installs, once for the process, a subscriber capturing logs and spans and a global meter
/// provider capturing metrics, with the exporters `observatory serve` sets up (pointed at an
/// OTLP receiver on loopback) beside in-memory ones. The receiver and the exporters' channels
/// run on a runtime of their own, which outlives every test. Servers started afterwards report
/// to them.
pub fn telemetry() -> &'static Telemetry {
    use observatory_server::config::LogFormat;
    use opentelemetry_proto::tonic::collector::{
        metrics::v1::metrics_service_server::MetricsServiceServer, trace::v1::trace_service_server::TraceServiceServer,
    };
    use tracing_subscriber::{EnvFilter, util::SubscriberInitExt};
    static TELEMETRY: OnceLock<Telemetry> = OnceLock::new();
    TELEMETRY.get_or_init(|| {
        observatory_server::telemetry::install_propagator();
        let spans = opentelemetry_sdk::trace::InMemorySpanExporter::default();
        let metrics = opentelemetry_sdk::metrics::InMemoryMetricExporter::default();
        let received = Received::default();
        let (tx, rx) = std::sync::mpsc::channel();
        let (spans_out, metrics_out, receiver) = (spans.clone(), metrics.clone(), received.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("telemetry runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
                let addr = listener.local_addr().expect("address");
                tokio::spawn(
                    tonic::transport::Server::builder()
                        .add_service(TraceServiceServer::new(receiver.clone()))
                        .add_service(MetricsServiceServer::new(receiver))
                        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
                );
                let (tracer, meter) =
                    observatory_server::telemetry::otlp_exporters(Some(&format!("http://{addr}"))).expect("exporters");
                let tracer_provider = tracer.with_simple_exporter(spans_out).build();
                let meter_provider = meter.with_periodic_exporter(metrics_out).build();
                tx.send((tracer_provider, meter_provider)).expect("hand over");
                std::future::pending::<()>().await;
            });
        });
        let (tracer_provider, meter_provider) = rx.recv().expect("telemetry set up");
        opentelemetry::global::set_meter_provider(meter_provider.clone());
        let logs = Captured::default();
        let writer = logs.clone();
        // The subscriber `observatory serve` installs, logs captured at debug level.
        observatory_server::telemetry::subscriber(
            &LogFormat::Text,
            move || writer.clone(),
            false,
            EnvFilter::new("debug,h2=info,hyper=info,hyper_util=info,tower=info,rustls=info"),
            &tracer_provider,
        )
        .try_init()
        .expect("no other subscriber in this test process");
        Telemetry {
            logs,
            spans,
            metrics,
            meter_provider,
            tracer_provider,
            received,
        }
    })
}

/// The application layer over `store`, with a key of the tests' own: what `seed` and other local
/// processes call.
pub async fn app_of(store: &Store) -> observatory_app::App {
    let key = observatory_domain::pseudonym::PseudonymKey::new(vec![42; 32]).expect("key");
    observatory_app::App::open(store.clone(), std::sync::Arc::new(key))
        .await
        .expect("the application opens")
}
