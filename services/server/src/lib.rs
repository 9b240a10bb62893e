//! The observatory application: configuration, start-up (connect, migrate, key), the gRPC
//! server with health and reflection, and graceful shutdown. `main.rs` only parses the command
//! line, installs logging and calls in here, so tests run the very same server on port 0.

pub mod access;
pub mod audit;
pub mod config;
pub mod exports;
pub mod file_import;
pub mod reference_import;
pub mod seed;
pub mod telemetry;

use std::{future::Future, net::SocketAddr, sync::Arc};

use anyhow::Context;
use observatory_analytics::{
    CsvStyle,
    runs::{Runner, ScheduleConfig},
};
use observatory_grpc::{ApiState, AuditApi, ExchangeApi, ReferenceApi, RegistryApi, ReportApi};
use observatory_proto::v1::{
    audit_service_server::AuditServiceServer, exchange_service_server::ExchangeServiceServer,
    reference_service_server::ReferenceServiceServer, registry_service_server::RegistryServiceServer,
    report_service_server::ReportServiceServer,
};
use observatory_store::{Store, StoreOptions};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

pub use config::Config;

/// Largest request or response the server accepts (4 MiB).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// How long calls in flight may take to finish once the server is asked to stop.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// Connects to the database named by the configuration and applies migrations.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let mut options = StoreOptions::new(&config.database_url);
    options.max_connections = config.max_connections;
    options.audit_key = Some(config.audit_key()?);
    options.acquire_timeout = std::time::Duration::from_millis(config.database_acquire_timeout_ms);
    options.statement_timeout = std::time::Duration::from_secs(config.database_statement_timeout_seconds);
    let store = Store::connect(&options).await.with_context(|| {
        format!(
            "cannot open database {}",
            observatory_store::redact_url(&config.database_url)
        )
    })?;
    store.migrate().await.context("cannot migrate the database")?;
    Ok(store)
}

/// A bound, migrated server ready to run.
pub struct Application {
    listener: TcpListener,
    state: ApiState,
    runner: Runner,
    schedule: Option<ScheduleConfig>,
    report_retention_days: u32,
    addr: SocketAddr,
    dev_admin_token: Option<String>,
    limits: observatory_grpc::bounds::Limits,
    tls: Option<tonic::transport::ServerTlsConfig>,
    health_check: std::time::Duration,
    catalogue_refresh: std::time::Duration,
    report_min_threshold: u32,
    web: Option<WebFront>,
}

/// The web front, bound: its listener, state and TLS.
struct WebFront {
    listener: TcpListener,
    web: observatory_web::Web,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    addr: SocketAddr,
    /// Development mode: `(role, sign-in link)` of each token created at start.
    sign_in_links: Vec<(String, String)>,
}

/// How many demonstration patients `serve --dev` writes into an empty registry.
pub const DEV_DEMO_PATIENTS: u32 = 40;

/// Development mode, on an empty registry: centres, prescribers, frameworks, cohorts and a few
/// synthetic patients, so that the web front has something to show. Nothing is written to a
/// registry that holds centres already.
async fn demonstration_data(app: &observatory_app::App) -> anyhow::Result<()> {
    if app.store.scalar_i64("SELECT COUNT(*) FROM centre_versions").await? > 0 {
        return Ok(());
    }
    let today = observatory_store::today(chrono::Utc::now());
    let options = seed::SeedOptions {
        patients: DEV_DEMO_PATIENTS,
        seed: 2026,
        until: today,
        concurrency: 4,
    };
    let summary = seed::seed(app, &options)
        .await
        .context("cannot write the demonstration data")?;
    tracing::info!(?summary, "development mode: demonstration data written (synthetic)");
    Ok(())
}

/// Development mode: a token of each role the pages serve (24 hours), and its sign-in link.
async fn dev_tokens(store: &Store, web: &observatory_web::Web, base: &str) -> anyhow::Result<Vec<(String, String)>> {
    use observatory_domain::access::Role;
    let page = observatory_store::PageRequest { size: 500, token: None };
    let centres = store
        .list_centres(&observatory_store::CentreFilter::default(), &page)
        .await?
        .items;
    let mhemo = |c: &&observatory_store::Versioned<observatory_domain::model::Centre>| {
        c.record.filieres.iter().any(|f| f.as_str() == "MHEMO")
    };
    let centre = centres.iter().find(mhemo).or(centres.first()).and_then(|c| {
        let filiere = if mhemo(&c) {
            "MHEMO".to_owned()
        } else {
            c.record.first_filiere()?.as_str().to_owned()
        };
        Some((c.record.finess.as_str().to_owned(), filiere))
    });
    let mut wanted = vec![(Role::Admin, Vec::new(), Vec::new())];
    if let Some((finess, filiere)) = centre {
        wanted.insert(0, (Role::Prescriber, vec![finess], Vec::new()));
        wanted.insert(1, (Role::DataManager, Vec::new(), vec![filiere.clone()]));
        wanted.insert(2, (Role::Analyst, Vec::new(), vec![filiere]));
        wanted.insert(3, (Role::NationalAnalyst, Vec::new(), Vec::new()));
    }
    let mut links = Vec::new();
    for (role, centres, filieres) in wanted {
        let scope = centres
            .iter()
            .chain(filieres.iter())
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        let request = access::TokenRequest {
            client_subject: None,
            role,
            centres,
            filieres,
            expires_at: Some(chrono::Utc::now() + chrono::Duration::hours(24)),
        };
        let (_, secret) = access::create_token(store, &request, "development-mode").await?;
        let code = web.add_sign_in_code(&secret);
        let who = if scope.is_empty() {
            role.code().to_owned()
        } else {
            format!("{} ({scope})", role.code())
        };
        links.push((who, format!("{base}/sign-in?code={code}")));
    }
    Ok(links)
}

/// Sets the gRPC health of the whole server ("") and of each service.
async fn set_health(reporter: &tonic_health::server::HealthReporter, serving: bool) {
    use tonic::server::NamedService;
    use tonic_health::ServingStatus;
    let status = if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    for name in [
        "",
        <RegistryServiceServer<RegistryApi> as NamedService>::NAME,
        <ReferenceServiceServer<ReferenceApi> as NamedService>::NAME,
        <ReportServiceServer<ReportApi> as NamedService>::NAME,
        <AuditServiceServer<AuditApi> as NamedService>::NAME,
        <ExchangeServiceServer<ExchangeApi> as NamedService>::NAME,
    ] {
        reporter.set_service_status(name, status).await;
    }
}

/// Checks readiness every `every`, and at once when a write is refused for want of the
/// database (or goes through again after that): NOT_SERVING while the database does not answer,
/// lacks a migration of this binary or refuses writes (read-only, full), SERVING again as soon
/// as it is back. Changes are logged.
async fn watch_readiness(store: Store, reporter: tonic_health::server::HealthReporter, every: std::time::Duration) {
    let mut serving = true;
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = store.write_fault_changed() => {}
        }
        let ready = store.readiness(every.min(std::time::Duration::from_secs(5))).await;
        match (&ready, serving) {
            (Err(why), true) => tracing::warn!(reason = %why, "not ready: health is NOT_SERVING"),
            (Ok(()), false) => tracing::info!("ready again: health is SERVING"),
            _ => {}
        }
        if ready.is_ok() != serving {
            serving = ready.is_ok();
            set_health(&reporter, serving).await;
        }
    }
}

/// Rebuilds the reference catalogue every `every` when a release was recorded since.
async fn refresh_catalogue(app: observatory_app::App, every: std::time::Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        match app.refresh_catalogue().await {
            Ok(true) => tracing::info!(
                last_release = app.catalogue().last_seq(),
                "a new reference release is in force"
            ),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the reference releases; the catalogue in force is kept"),
        }
    }
}

impl Application {
    /// Opens the store, loads the pseudonymisation key and binds the listener (port 0 picks a
    /// free port: see [`Application::local_addr`]).
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        // Development mode serves loopback only, in plain text.
        let tls = if config.dev { None } else { config.tls()? };
        if let Some(tls) = &tls {
            // Unreadable certificates and keys stop the start here, not at the first call.
            tonic::transport::Server::builder()
                .tls_config(tls.clone())
                .context("invalid TLS certificate or key")?;
        }
        if tls.is_none() && !config.dev && !config.allow_plaintext {
            anyhow::bail!(
                "refusing to serve without TLS: give tls_cert_file and tls_key_file (OBSERVATORY_TLS_CERT_FILE, \
                 OBSERVATORY_TLS_KEY_FILE); behind a proxy that terminates TLS set allow_plaintext = true \
                 (OBSERVATORY_ALLOW_PLAINTEXT=true); on this machine only, run `observatory serve --dev`"
            );
        }
        let key = config.pseudonym_key()?;
        let store = open_store(config).await?;
        let listener = TcpListener::bind(&config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        if config.dev && !addr.ip().is_loopback() {
            anyhow::bail!("development mode listens on a loopback address only, not {addr}");
        }
        let dev_admin_token = if config.dev {
            let request = access::TokenRequest {
                client_subject: None,
                role: observatory_domain::access::Role::Admin,
                centres: Vec::new(),
                filieres: Vec::new(),
                expires_at: Some(chrono::Utc::now() + chrono::Duration::hours(24)),
            };
            let (_, secret) = access::create_token(&store, &request, "development-mode").await?;
            Some(secret)
        } else {
            None
        };
        let runner = Runner::new(store.clone(), config.reports_dir.clone())
            .bounded_per_requester(config.report_runs_per_token as usize);
        let interrupted = runner.recover().await.context("cannot read the report runs")?;
        if interrupted > 0 {
            tracing::warn!(
                interrupted,
                "report runs left unfinished by the last stop are recorded as interrupted"
            );
        }
        let schedule = config.report_schedule.schedule().map(|schedule| ScheduleConfig {
            schedule,
            threshold: config.report_threshold,
            csv: if config.report_french_csv {
                CsvStyle::French
            } else {
                CsvStyle::Standard
            },
            per_filiere: config.report_schedule_per_filiere,
            language: config.report_language,
        });
        let app = observatory_app::App::open(store.clone(), Arc::new(key))
            .await
            .context("cannot read the reference catalogue")?;
        let web = match config
            .web_listen
            .clone()
            .or_else(|| config.dev.then(|| config::DEV_WEB_LISTEN.to_owned()))
        {
            None => None,
            Some(listen) => {
                let web_tls = if config.dev { None } else { config.web_tls()? };
                let listener = TcpListener::bind(&listen)
                    .await
                    .with_context(|| format!("cannot listen on {listen} for the web front"))?;
                let web_addr = listener.local_addr()?;
                if config.dev && !web_addr.ip().is_loopback() {
                    anyhow::bail!("development mode serves the web front on a loopback address only, not {web_addr}");
                }
                let web = observatory_web::Web::new(
                    app.clone(),
                    observatory_app::reports::Reports::new(runner.clone(), config.report_min_threshold),
                    observatory_web::WebOptions {
                        // Off loopback a browser reaches the front over TLS (here or at a proxy).
                        secure_cookies: web_tls.is_some() || !web_addr.ip().is_loopback(),
                        sessions: observatory_web::session::SessionPolicy::default(),
                        failures_burst: config.limits().failures_burst,
                        failures_per_second: config.limits().failures_per_second,
                    },
                );
                let sign_in_links = if config.dev {
                    demonstration_data(&app).await?;
                    dev_tokens(&store, &web, &format!("http://{web_addr}")).await?
                } else {
                    Vec::new()
                };
                Some(WebFront {
                    listener,
                    web,
                    tls: web_tls,
                    addr: web_addr,
                    sign_in_links,
                })
            }
        };
        Ok(Self {
            listener,
            web,
            state: ApiState {
                app,
                store,
                limiter: Arc::new(observatory_grpc::bounds::RateLimiter::new(config.limits())),
            },
            runner,
            schedule,
            report_retention_days: config.report_retention_days,
            addr,
            dev_admin_token,
            limits: config.limits(),
            tls,
            health_check: std::time::Duration::from_secs(config.health_check_seconds),
            catalogue_refresh: std::time::Duration::from_secs(config.catalogue_refresh_seconds),
            report_min_threshold: config.report_min_threshold,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the web front listens, when it is served.
    pub fn web_addr(&self) -> Option<SocketAddr> {
        self.web.as_ref().map(|w| w.addr)
    }

    /// The web front's state (its sessions), when it is served.
    pub fn web(&self) -> Option<&observatory_web::Web> {
        self.web.as_ref().map(|w| &w.web)
    }

    /// Development mode: `(role and scope, sign-in link)` of each token created at start.
    pub fn sign_in_links(&self) -> &[(String, String)] {
        self.web.as_ref().map_or(&[], |w| w.sign_in_links.as_slice())
    }

    /// Development mode: the admin token created at start (valid 24 hours), to be shown once.
    pub fn dev_admin_token(&self) -> Option<&str> {
        self.dev_admin_token.as_deref()
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets calls in flight finish and
    /// closes the database.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let Application {
            listener,
            state,
            runner,
            schedule,
            report_retention_days,
            addr,
            dev_admin_token: _,
            limits,
            tls,
            health_check,
            catalogue_refresh,
            report_min_threshold,
            web,
        } = self;
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        set_health(&health_reporter, true).await;
        let error_details =
            observatory_proto::error_details_descriptors().context("cannot read the error details' descriptors")?;
        // Both reflection versions: grpcurl and recent clients speak v1, older tools v1alpha.
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(observatory_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                // google.rpc.BadRequest and the other error details the server sends, so that
                // grpcurl and other reflection clients decode an INVALID_ARGUMENT's fields.
                .register_file_descriptor_set(error_details.clone())
        };
        let reflection_v1 = reflection().build_v1().context("cannot build the reflection service")?;
        let reflection_v1alpha = reflection()
            .build_v1alpha()
            .context("cannot build the reflection service")?;
        let registry = RegistryServiceServer::new(RegistryApi::new(state.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let reference = ReferenceServiceServer::new(ReferenceApi::new(state.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let reports = ReportServiceServer::new(ReportApi::new(runner.clone(), report_min_threshold))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let audit = AuditServiceServer::new(AuditApi::new(state.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        // True once shutdown begins: the schedule and readiness checks stop, and following change
        // feeds end (a stream that never ends would hold up the graceful shutdown).
        let (stopping, stopped) = tokio::sync::watch::channel(false);
        let exchange = ExchangeServiceServer::new(ExchangeApi::new(state.clone(), stopped.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        // A stop first turns health NOT_SERVING, so that balancers send new calls elsewhere
        // while the calls in flight finish.
        let stopping_health = health_reporter.clone();
        let shutdown = async move {
            shutdown.await;
            set_health(&stopping_health, false).await;
            tracing::info!("stopping: health is NOT_SERVING");
            let _ = stopping.send(true);
        };
        // Periodic reports: checked at start (catching up missed periods), then hourly.
        // Readiness: checked now and every `health_check`, reported by gRPC health.
        {
            let store = state.store.clone();
            let mut stopped = stopped.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = watch_readiness(store, health_reporter, health_check) => {}
                    _ = stopped.changed() => {}
                }
            });
        }
        {
            let app = state.app.clone();
            let mut stopped = stopped.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = refresh_catalogue(app, catalogue_refresh) => {}
                    _ = stopped.changed() => {}
                }
            });
        }
        if let Some(schedule) = schedule {
            tracing::info!(schedule = schedule.schedule.code(), reports_dir = %runner.reports_dir().display(), "periodic reports on");
            let mut stopped = stopped.clone();
            tokio::spawn(runner.clone().run_schedule(schedule, async move {
                let _ = stopped.changed().await;
            }));
        }
        // Retention of report files: applied at start, then hourly.
        {
            let mut stopped = stopped.clone();
            tokio::spawn(runner.clone().run_retention(report_retention_days, async move {
                let _ = stopped.changed().await;
            }));
        }
        log_audit_head(&state.store).await;
        let web_task = web.map(|front| {
            let mut stopped = stopped.clone();
            tracing::info!(addr = %front.addr, tls = front.tls.is_some(), "observatory serving the web front");
            tokio::spawn(observatory_web::serve::run(
                front.listener,
                front.web.router(),
                front.tls,
                async move {
                    let _ = stopped.wait_for(|stopping| *stopping).await;
                },
            ))
        });
        tracing::info!(%addr, store = ?state.store, tls = tls.is_some(), "observatory serving gRPC");
        let mut server = tonic::transport::Server::builder();
        if let Some(tls) = tls {
            server = server.tls_config(tls).context("invalid TLS configuration")?;
        }
        let serving = server
            // One span per call, named by its method only, continuing the caller's trace: request
            // bodies (which may hold identity fields) are never recorded.
            .trace_fn(telemetry::rpc_span)
            // Every call counted and timed by method and status code, refused ones included.
            .layer(telemetry::RpcLayer::new())
            // Every call but health checks authenticated, and its role checked, here.
            .layer(observatory_grpc::access::AuthLayer::new(state.store.clone(), limits))
            // Then each call's deadline, and its token's rate.
            .layer(observatory_grpc::bounds::BoundsLayer::sharing(state.limiter.clone()))
            // A handler's panic is INTERNAL for its call alone.
            .layer(observatory_grpc::bounds::CatchPanicLayer)
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(registry)
            .add_service(reference)
            .add_service(reports)
            .add_service(audit)
            .add_service(exchange)
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown);
        // Calls in flight finish, but a client that holds a stream without reading cannot hold
        // the stop up for longer than the grace period.
        let mut grace = stopped.clone();
        tokio::select! {
            served = serving => served.context("gRPC server failed")?,
            () = async {
                let _ = grace.wait_for(|stopping| *stopping).await.map(|_| ());
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } => tracing::warn!(
                grace_seconds = SHUTDOWN_GRACE.as_secs(),
                "calls still open after the grace period are cut off"
            ),
        }
        drop(stopped);
        if let Some(task) = web_task {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "the web front stopped with an error"),
                Err(e) => tracing::warn!(error = %e, "the web front's task failed"),
            }
        }
        tracing::info!("observatory stopped accepting calls; closing the database");
        log_audit_head(&state.store).await;
        state.store.close().await;
        Ok(())
    }
}

/// Logs the head of the audit trail: logs shipped off the host keep it as an anchor for
/// `observatory audit verify --anchor`, which catches the removal of the newest events.
async fn log_audit_head(store: &Store) {
    match store.audit_head().await {
        Ok(Some(head)) => tracing::info!(anchor = %format!("{}:{}", head.seq, head.hash), "audit trail head"),
        Ok(None) => tracing::info!("audit trail empty"),
        Err(e) => tracing::warn!(error = %e, "cannot read the audit trail head"),
    }
}

/// Resolves on ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested");
}
