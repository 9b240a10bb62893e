//! Configuration: defaults, then an optional TOML file, then `OBSERVATORY_*` environment
//! variables (the last one wins). The README's configuration table documents every key.

use std::{
    collections::HashMap,
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use observatory_domain::pseudonym::PseudonymKey;
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportSchedule {
    Off,
    Monthly,
    Quarterly,
}

impl ReportSchedule {
    pub fn schedule(self) -> Option<observatory_analytics::runs::Schedule> {
        match self {
            ReportSchedule::Off => None,
            ReportSchedule::Monthly => Some(observatory_analytics::runs::Schedule::Monthly),
            ReportSchedule::Quarterly => Some(observatory_analytics::runs::Schedule::Quarterly),
        }
    }
}

/// Where `serve --dev` serves the web front unless `web_listen` says otherwise.
pub const DEV_WEB_LISTEN: &str = "127.0.0.1:8080";

/// Settings of the observatory. The pseudonymisation key itself is never part of a file read
/// here; only the path of the file that holds it.

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `sqlite://observatory.db` (default) or `postgres://user@host/db`.
    pub database_url: String,
    /// gRPC listen address.
    pub listen: String,
    /// The web front's listen address: the front is served when this is set, and by
    /// `serve --dev` (on [`DEV_WEB_LISTEN`] unless set). Over TLS with the gRPC certificate,
    /// or in plain text where the gRPC server is (`allow_plaintext`, development mode).
    pub web_listen: Option<String>,
    /// File holding the hex-encoded HMAC key of identity pseudonyms; created (mode 0600) on
    /// first start when absent.
    pub pseudonym_key_file: PathBuf,
    /// File holding the hex-encoded HMAC key of the audit trail's MACs; created (mode 0600) on
    /// first start when absent. Kept apart from the database: whoever can write the database
    /// without it cannot rewrite the trail unnoticed.
    pub audit_key_file: PathBuf,
    /// Database connections (SQLite: readers beside the single writer).
    pub max_connections: u32,
    /// PostgreSQL: milliseconds a call waits for a database connection (connecting included)
    /// before it is answered UNAVAILABLE.
    pub database_acquire_timeout_ms: u64,
    /// PostgreSQL: seconds a statement may run (`statement_timeout`) before it is cancelled and
    /// its call answered UNAVAILABLE.
    pub database_statement_timeout_seconds: u64,
    /// Log format: text or json.
    pub log_format: LogFormat,
    /// Directory under which report runs started by `serve` write their outputs (one
    /// sub-directory per run, named by its id).
    pub reports_dir: PathBuf,
    /// Periodic reports run by `serve`: off, monthly or quarterly.
    pub report_schedule: ReportSchedule,
    /// Suppression threshold of scheduled reports (at least `report_min_threshold`).
    pub report_threshold: u32,
    /// Lowest suppression threshold of any report that leaves the server (a `RunReport` call,
    /// the schedule); only `observatory report` on the command line may go lower.
    pub report_min_threshold: u32,
    /// Scheduled reports write French CSV (';' separator and byte-order mark).
    pub report_french_csv: bool,
    /// Besides the national report (read by national analysts), the schedule writes one report
    /// per filière that has a cohort, limited to it, for that filière's analysts.
    pub report_schedule_per_filiere: bool,
    /// Language of the scheduled reports' HTML pages: fr or en.
    pub report_language: observatory_analytics::synthesis::Language,
    /// Serve gRPC without TLS: only behind a proxy that terminates TLS. Without TLS and without
    /// this, `serve` refuses to start (`serve --dev` excepted).
    pub allow_plaintext: bool,
    /// TLS: the server's certificate chain and private key (PEM files). Both, or neither.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Mutual TLS: the CA (PEM) whose client certificates are accepted; a certificate's subject
    /// bound to a token (`token create --client-cert`) acts as that token.
    pub tls_client_ca_file: Option<PathBuf>,
    /// With a client CA: refuse connections without a client certificate (otherwise bearer
    /// tokens remain accepted beside certificates).
    pub tls_client_auth_required: bool,
    /// Seconds an RPC may take before it is answered DEADLINE_EXCEEDED (ten times that for
    /// `VerifyAudit`).
    pub request_timeout_seconds: u64,
    /// Seconds between two readiness checks (database answering, migrations applied), which
    /// set gRPC health to SERVING or NOT_SERVING.
    pub health_check_seconds: u64,
    /// Seconds between checks for a reference release recorded by another process (the
    /// command line's `reference import` on the same database), 1 to 3600.
    pub catalogue_refresh_seconds: u64,
    /// Calls per second one token may sustain; beyond, RESOURCE_EXHAUSTED.
    pub rate_limit_per_second: u32,
    /// Calls one token may make at once after a pause.
    pub rate_limit_burst: u32,
    /// Calls with invalid credentials one peer address may make per second after its burst;
    /// beyond, its calls are RESOURCE_EXHAUSTED before any token lookup.
    pub auth_failure_rate_per_second: u32,
    /// Calls with invalid credentials one peer address may make at once.
    pub auth_failure_burst: u32,
    /// Report runs one token may have waiting or running at once; beyond, RESOURCE_EXHAUSTED.
    pub report_runs_per_token: u32,
    /// Days audit events are kept in the database before `audit archive` may move them to a
    /// file (183: six rolling months, as health establishments keep access traces).
    /// Days after its end a report run keeps its files (snapshot, tables, documents) in
    /// `reports_dir`; then `serve` deletes them, keeping the run, its manifest and a record of
    /// the deletion (30 to 3650).
    pub report_retention_days: u32,
    pub audit_retention_days: u32,
    /// Development mode (`serve --dev`): loopback only, no TLS, a one-time admin token printed
    /// at start. Never read from a file or the environment.
    #[serde(skip)]
    pub dev: bool,
    /// Hex key given directly (environment only, `OBSERVATORY_PSEUDONYM_KEY`): wins over the file.
    #[serde(skip)]
    pub pseudonym_key_hex: Option<String>,
    /// Audit key given directly (environment only, `OBSERVATORY_AUDIT_KEY`): wins over the file.
    #[serde(skip)]
    pub audit_key_hex: Option<String>,
    /// TLS certificate chain and key given directly as PEM (environment only,
    /// `OBSERVATORY_TLS_CERT`, `OBSERVATORY_TLS_KEY`): win over the files.
    #[serde(skip)]
    pub tls_cert_pem: Option<String>,
    #[serde(skip)]
    pub tls_key_pem: Option<String>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("database_url", &observatory_store::redact_url(&self.database_url))
            .field("listen", &self.listen)
            .field("pseudonym_key_file", &self.pseudonym_key_file)
            .field("audit_key_file", &self.audit_key_file)
            .field("audit_key_hex", &self.audit_key_hex.as_ref().map(|_| "<redacted>"))
            .field("max_connections", &self.max_connections)
            .field("database_acquire_timeout_ms", &self.database_acquire_timeout_ms)
            .field(
                "database_statement_timeout_seconds",
                &self.database_statement_timeout_seconds,
            )
            .field("log_format", &self.log_format)
            .field("reports_dir", &self.reports_dir)
            .field("report_schedule", &self.report_schedule)
            .field("report_threshold", &self.report_threshold)
            .field("report_min_threshold", &self.report_min_threshold)
            .field("report_french_csv", &self.report_french_csv)
            .field("report_schedule_per_filiere", &self.report_schedule_per_filiere)
            .field("report_language", &self.report_language)
            .field("allow_plaintext", &self.allow_plaintext)
            .field("tls_cert_file", &self.tls_cert_file)
            .field("tls_key_file", &self.tls_key_file)
            .field("tls_client_ca_file", &self.tls_client_ca_file)
            .field("tls_client_auth_required", &self.tls_client_auth_required)
            .field("tls_cert_pem", &self.tls_cert_pem.as_ref().map(|_| "<given>"))
            .field("tls_key_pem", &self.tls_key_pem.as_ref().map(|_| "<redacted>"))
            .field("request_timeout_seconds", &self.request_timeout_seconds)
            .field("health_check_seconds", &self.health_check_seconds)
            .field("catalogue_refresh_seconds", &self.catalogue_refresh_seconds)
            .field("rate_limit_per_second", &self.rate_limit_per_second)
            .field("rate_limit_burst", &self.rate_limit_burst)
            .field("auth_failure_rate_per_second", &self.auth_failure_rate_per_second)
            .field("auth_failure_burst", &self.auth_failure_burst)
            .field("report_runs_per_token", &self.report_runs_per_token)
            .field("audit_retention_days", &self.audit_retention_days)
            .field("report_retention_days", &self.report_retention_days)
            .field("dev", &self.dev)
            .field("web_listen", &self.web_listen)
            .field(
                "pseudonym_key_hex",
                &self.pseudonym_key_hex.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database_url: "sqlite://observatory.db".into(),
            listen: "127.0.0.1:50051".into(),
            pseudonym_key_file: PathBuf::from("observatory.key"),
            audit_key_file: PathBuf::from("observatory-audit.key"),
            max_connections: 8,
            database_acquire_timeout_ms: 1500,
            database_statement_timeout_seconds: 20,
            log_format: LogFormat::Text,
            reports_dir: PathBuf::from("reports"),
            report_schedule: ReportSchedule::Off,
            report_threshold: observatory_analytics::suppress::DEFAULT_THRESHOLD,
            report_min_threshold: observatory_analytics::suppress::DEFAULT_THRESHOLD,
            report_french_csv: false,
            report_schedule_per_filiere: true,
            report_language: observatory_analytics::synthesis::Language::Fr,
            allow_plaintext: false,
            tls_cert_file: None,
            tls_key_file: None,
            tls_client_ca_file: None,
            tls_client_auth_required: false,
            request_timeout_seconds: 30,
            health_check_seconds: 5,
            catalogue_refresh_seconds: 30,
            rate_limit_per_second: 200,
            rate_limit_burst: 400,
            auth_failure_rate_per_second: 1,
            auth_failure_burst: 30,
            report_runs_per_token: 4,
            audit_retention_days: 183,
            report_retention_days: 730,
            dev: false,
            web_listen: None,
            pseudonym_key_hex: None,
            audit_key_hex: None,
            tls_cert_pem: None,
            tls_key_pem: None,
        }
    }
}

impl Config {
    /// Defaults, overridden by `file` when given, overridden by the `OBSERVATORY_*` entries of
    /// `env`.
    pub fn load(file: Option<&Path>, env: &HashMap<String, String>) -> anyhow::Result<Config> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read configuration file {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("invalid configuration file {}", path.display()))?
            }
            None => Config::default(),
        };
        if let Some(v) = env.get("OBSERVATORY_DATABASE_URL") {
            config.database_url = v.clone();
        }
        if let Some(v) = env.get("OBSERVATORY_LISTEN") {
            config.listen = v.clone();
        }
        if let Some(v) = env.get("OBSERVATORY_PSEUDONYM_KEY_FILE") {
            config.pseudonym_key_file = PathBuf::from(v);
        }
        if let Some(v) = env.get("OBSERVATORY_PSEUDONYM_KEY") {
            config.pseudonym_key_hex = Some(v.clone());
        }
        if let Some(v) = env.get("OBSERVATORY_AUDIT_KEY_FILE") {
            config.audit_key_file = PathBuf::from(v);
        }
        if let Some(v) = env.get("OBSERVATORY_AUDIT_KEY") {
            config.audit_key_hex = Some(v.clone());
        }
        if let Some(v) = env.get("OBSERVATORY_MAX_CONNECTIONS") {
            config.max_connections = v
                .parse()
                .ok()
                .filter(|n| (1..=256).contains(n))
                .context("OBSERVATORY_MAX_CONNECTIONS must be a number from 1 to 256")?;
        }
        if let Some(v) = env.get("OBSERVATORY_LOG_FORMAT") {
            config.log_format = match v.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => bail!("OBSERVATORY_LOG_FORMAT must be text or json"),
            };
        }
        if let Some(v) = env.get("OBSERVATORY_REPORTS_DIR") {
            config.reports_dir = PathBuf::from(v);
        }
        if let Some(v) = env.get("OBSERVATORY_REPORT_SCHEDULE") {
            config.report_schedule = match v.as_str() {
                "off" => ReportSchedule::Off,
                "monthly" => ReportSchedule::Monthly,
                "quarterly" => ReportSchedule::Quarterly,
                _ => bail!("OBSERVATORY_REPORT_SCHEDULE must be off, monthly or quarterly"),
            };
        }
        if let Some(v) = env.get("OBSERVATORY_REPORT_THRESHOLD") {
            config.report_threshold = v
                .parse()
                .context("OBSERVATORY_REPORT_THRESHOLD must be a number from 1 to 1000")?;
        }
        if let Some(v) = env.get("OBSERVATORY_REPORT_MIN_THRESHOLD") {
            config.report_min_threshold = v
                .parse()
                .context("OBSERVATORY_REPORT_MIN_THRESHOLD must be a number from 1 to 1000")?;
        }
        if let Some(v) = env.get("OBSERVATORY_REPORT_FRENCH_CSV") {
            config.report_french_csv = match v.as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => bail!("OBSERVATORY_REPORT_FRENCH_CSV must be true or false"),
            };
        }
        if let Some(v) = env.get("OBSERVATORY_REPORT_LANGUAGE") {
            config.report_language = match v.as_str() {
                "fr" => observatory_analytics::synthesis::Language::Fr,
                "en" => observatory_analytics::synthesis::Language::En,
                _ => bail!("OBSERVATORY_REPORT_LANGUAGE must be fr or en"),
            };
        }
        if let Some(v) = env.get("OBSERVATORY_REPORT_SCHEDULE_PER_FILIERE") {
            config.report_schedule_per_filiere = match v.as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => bail!("OBSERVATORY_REPORT_SCHEDULE_PER_FILIERE must be true or false"),
            };
        }
        if let Some(v) = env.get("OBSERVATORY_ALLOW_PLAINTEXT") {
            config.allow_plaintext = match v.as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => bail!("OBSERVATORY_ALLOW_PLAINTEXT must be true or false"),
            };
        }
        for (key, field) in [
            ("OBSERVATORY_TLS_CERT_FILE", &mut config.tls_cert_file),
            ("OBSERVATORY_TLS_KEY_FILE", &mut config.tls_key_file),
            ("OBSERVATORY_TLS_CLIENT_CA_FILE", &mut config.tls_client_ca_file),
        ] {
            if let Some(v) = env.get(key) {
                *field = Some(PathBuf::from(v));
            }
        }
        if let Some(v) = env.get("OBSERVATORY_WEB_LISTEN") {
            config.web_listen = Some(v.clone());
        }
        if let Some(v) = env.get("OBSERVATORY_TLS_CERT") {
            config.tls_cert_pem = Some(v.clone());
        }
        if let Some(v) = env.get("OBSERVATORY_TLS_KEY") {
            config.tls_key_pem = Some(v.clone());
        }
        if let Some(v) = env.get("OBSERVATORY_TLS_CLIENT_AUTH_REQUIRED") {
            config.tls_client_auth_required = match v.as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => bail!("OBSERVATORY_TLS_CLIENT_AUTH_REQUIRED must be true or false"),
            };
        }
        let number = |key: &str| -> anyhow::Result<Option<u64>> {
            env.get(key)
                .map(|v| {
                    v.parse::<u64>()
                        .with_context(|| format!("{key} must be a whole number"))
                })
                .transpose()
        };
        if let Some(n) = number("OBSERVATORY_REQUEST_TIMEOUT_SECONDS")? {
            config.request_timeout_seconds = n;
        }
        if let Some(n) = number("OBSERVATORY_DATABASE_ACQUIRE_TIMEOUT_MS")? {
            config.database_acquire_timeout_ms = n;
        }
        if let Some(n) = number("OBSERVATORY_DATABASE_STATEMENT_TIMEOUT_SECONDS")? {
            config.database_statement_timeout_seconds = n;
        }
        if let Some(n) = number("OBSERVATORY_HEALTH_CHECK_SECONDS")? {
            config.health_check_seconds = n;
        }
        if let Some(n) = number("OBSERVATORY_CATALOGUE_REFRESH_SECONDS")? {
            config.catalogue_refresh_seconds = n;
        }
        if let Some(n) = number("OBSERVATORY_RATE_LIMIT_PER_SECOND")? {
            config.rate_limit_per_second = u32::try_from(n).unwrap_or(u32::MAX);
        }
        if let Some(n) = number("OBSERVATORY_RATE_LIMIT_BURST")? {
            config.rate_limit_burst = u32::try_from(n).unwrap_or(u32::MAX);
        }
        if let Some(n) = number("OBSERVATORY_AUTH_FAILURE_RATE_PER_SECOND")? {
            config.auth_failure_rate_per_second = u32::try_from(n).unwrap_or(u32::MAX);
        }
        if let Some(n) = number("OBSERVATORY_AUTH_FAILURE_BURST")? {
            config.auth_failure_burst = u32::try_from(n).unwrap_or(u32::MAX);
        }
        if let Some(n) = number("OBSERVATORY_AUDIT_RETENTION_DAYS")? {
            config.audit_retention_days = u32::try_from(n).unwrap_or(u32::MAX);
        }
        if let Some(n) = number("OBSERVATORY_REPORT_RETENTION_DAYS")? {
            config.report_retention_days = u32::try_from(n).unwrap_or(u32::MAX);
        }
        if let Some(n) = number("OBSERVATORY_REPORT_RUNS_PER_TOKEN")? {
            config.report_runs_per_token = u32::try_from(n).unwrap_or(u32::MAX);
        }
        if !(1..=1000).contains(&config.report_threshold) {
            bail!("report_threshold must be a number from 1 to 1000");
        }
        if !(1..=1000).contains(&config.report_min_threshold) {
            bail!("report_min_threshold must be a number from 1 to 1000");
        }
        if config.report_threshold < config.report_min_threshold {
            bail!(
                "report_threshold ({}) is below report_min_threshold ({}): scheduled reports leave the server too",
                config.report_threshold,
                config.report_min_threshold
            );
        }
        if !(1..=3600).contains(&config.request_timeout_seconds) {
            bail!("request_timeout_seconds must be a number from 1 to 3600");
        }
        if !(100..=60_000).contains(&config.database_acquire_timeout_ms) {
            bail!("database_acquire_timeout_ms must be a number from 100 to 60000");
        }
        if !(1..=3600).contains(&config.database_statement_timeout_seconds) {
            bail!("database_statement_timeout_seconds must be a number from 1 to 3600");
        }
        if !(1..=3600).contains(&config.catalogue_refresh_seconds) {
            bail!("catalogue_refresh_seconds must be a number from 1 to 3600");
        }
        if !(1..=300).contains(&config.health_check_seconds) {
            bail!("health_check_seconds must be a number from 1 to 300");
        }
        if !(1..=1_000_000).contains(&config.rate_limit_per_second) {
            bail!("rate_limit_per_second must be a number from 1 to 1000000");
        }
        if !(1..=1_000_000).contains(&config.rate_limit_burst) {
            bail!("rate_limit_burst must be a number from 1 to 1000000");
        }
        if !(1..=1_000_000).contains(&config.auth_failure_rate_per_second) {
            bail!("auth_failure_rate_per_second must be a number from 1 to 1000000");
        }
        if !(1..=1_000_000).contains(&config.auth_failure_burst) {
            bail!("auth_failure_burst must be a number from 1 to 1000000");
        }
        if !(30..=3650).contains(&config.audit_retention_days) {
            bail!("audit_retention_days must be a number from 30 to 3650");
        }
        if !(30..=3650).contains(&config.report_retention_days) {
            bail!("report_retention_days must be a number from 30 to 3650");
        }
        if !(1..=1000).contains(&config.report_runs_per_token) {
            bail!("report_runs_per_token must be a number from 1 to 1000");
        }
        Ok(config)
    }

    /// The TLS configuration of the server, when a certificate and key are given (from the
    /// environment, else from files); an error when only one of them is, or one cannot be read.
    /// The server's certificate chain and key, PEM, when TLS is configured.
    pub fn tls_pems(&self) -> anyhow::Result<Option<(String, String)>> {
        let read = |pem: &Option<String>, file: &Option<PathBuf>, what: &str| -> anyhow::Result<Option<String>> {
            match (pem, file) {
                (Some(pem), _) => Ok(Some(pem.clone())),
                (None, Some(path)) => std::fs::read_to_string(path)
                    .map(Some)
                    .with_context(|| format!("cannot read the TLS {what} file {}", path.display())),
                (None, None) => Ok(None),
            }
        };
        let cert = read(&self.tls_cert_pem, &self.tls_cert_file, "certificate")?;
        let key = read(&self.tls_key_pem, &self.tls_key_file, "key")?;
        let (cert, key) = match (cert, key) {
            (Some(cert), Some(key)) => (cert, key),
            (None, None) => {
                if self.tls_client_ca_file.is_some() {
                    bail!("tls_client_ca_file needs TLS: give tls_cert_file and tls_key_file too");
                }
                return Ok(None);
            }
            _ => bail!("TLS needs both a certificate and its key (tls_cert_file and tls_key_file)"),
        };
        anyhow::ensure!(
            cert.contains("-----BEGIN CERTIFICATE-----"),
            "the TLS certificate is not PEM (-----BEGIN CERTIFICATE-----)"
        );
        anyhow::ensure!(key.contains("PRIVATE KEY-----"), "the TLS key is not a PEM private key");
        Ok(Some((cert, key)))
    }

    /// The TLS configuration of the web front: the gRPC server's certificate.
    pub fn web_tls(&self) -> anyhow::Result<Option<std::sync::Arc<tokio_rustls::rustls::ServerConfig>>> {
        match self.tls_pems()? {
            None => Ok(None),
            Some((cert, key)) => observatory_web::serve::tls_config(cert.as_bytes(), key.as_bytes()).map(Some),
        }
    }

    pub fn tls(&self) -> anyhow::Result<Option<tonic::transport::ServerTlsConfig>> {
        let Some((cert, key)) = self.tls_pems()? else {
            return Ok(None);
        };
        let mut tls =
            tonic::transport::ServerTlsConfig::new().identity(tonic::transport::Identity::from_pem(cert, key));
        if let Some(path) = &self.tls_client_ca_file {
            let ca = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the TLS client CA file {}", path.display()))?;
            tls = tls
                .client_ca_root(tonic::transport::Certificate::from_pem(ca))
                .client_auth_optional(!self.tls_client_auth_required);
        } else if self.tls_client_auth_required {
            bail!("tls_client_auth_required needs tls_client_ca_file");
        }
        Ok(Some(tls))
    }

    /// Deadlines and rate limits of calls.
    pub fn limits(&self) -> observatory_grpc::bounds::Limits {
        observatory_grpc::bounds::Limits {
            request_timeout: std::time::Duration::from_secs(self.request_timeout_seconds),
            per_second: f64::from(self.rate_limit_per_second),
            burst: self.rate_limit_burst,
            failures_per_second: f64::from(self.auth_failure_rate_per_second),
            failures_burst: self.auth_failure_burst,
        }
    }

    /// The pseudonymisation key: from `OBSERVATORY_PSEUDONYM_KEY`, else from the key file,
    /// which is created with a fresh random key (readable by its owner only) when absent.
    pub fn pseudonym_key(&self) -> anyhow::Result<PseudonymKey> {
        let bytes = key_bytes(
            self.pseudonym_key_hex.as_deref(),
            &self.pseudonym_key_file,
            "OBSERVATORY_PSEUDONYM_KEY",
            "pseudonymisation key",
            "without it, identity-based registrations can no longer be matched",
        )?;
        PseudonymKey::new(bytes).map_err(|e| anyhow::anyhow!(e))
    }

    /// The audit key: from `OBSERVATORY_AUDIT_KEY`, else from the key file, which is created with
    /// a fresh random key (readable by its owner only) when absent.
    pub fn audit_key(&self) -> anyhow::Result<observatory_store::audit::AuditKey> {
        let bytes = key_bytes(
            self.audit_key_hex.as_deref(),
            &self.audit_key_file,
            "OBSERVATORY_AUDIT_KEY",
            "audit key",
            "without it, the audit trail's MACs can no longer be checked",
        )?;
        observatory_store::audit::AuditKey::new(bytes).map_err(|e| anyhow::anyhow!(e))
    }
}

/// Key material: the hex text given in the environment, else the key file's, else a new random
/// key written to the file (mode 0600) and announced in the logs.
fn key_bytes(hex_given: Option<&str>, path: &Path, variable: &str, what: &str, why: &str) -> anyhow::Result<Vec<u8>> {
    if let Some(text) = hex_given {
        return hex::decode(text.trim()).map_err(|_| anyhow::anyhow!("{variable}: the {what} must be hex-encoded"));
    }
    match std::fs::read_to_string(path) {
        Ok(text) => {
            hex::decode(text.trim()).map_err(|_| anyhow::anyhow!("{}: the {what} must be hex-encoded", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let bytes: [u8; 32] = rand::random();
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options
                .open(path)
                .with_context(|| format!("cannot create the {what} file {}", path.display()))?;
            file.write_all(hex::encode(bytes).as_bytes())?;
            file.sync_all()?;
            tracing::warn!(path = %path.display(), "created a new {what}: back it up apart from the database; {why}");
            Ok(bytes.to_vec())
        }
        Err(e) => Err(e).with_context(|| format!("cannot read the {what} file {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("observatory.toml");
        std::fs::write(&file, "listen = \"0.0.0.0:6000\"\nmax_connections = 3\n").unwrap();
        let env = HashMap::from([("OBSERVATORY_LISTEN".to_string(), "127.0.0.1:7000".to_string())]);
        let c = Config::load(Some(&file), &env).unwrap();
        assert_eq!(c.listen, "127.0.0.1:7000");
        assert_eq!(c.max_connections, 3);
        assert_eq!(c.database_url, "sqlite://observatory.db");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "lisen = \"x\"\n").unwrap();
        assert!(Config::load(Some(&file), &HashMap::new()).is_err());
        let env = HashMap::from([("OBSERVATORY_LOG_FORMAT".to_string(), "xml".to_string())]);
        assert!(Config::load(None, &env).is_err());
        let env = HashMap::from([("OBSERVATORY_REPORT_SCHEDULE".to_string(), "weekly".to_string())]);
        assert!(Config::load(None, &env).is_err());
        let env = HashMap::from([("OBSERVATORY_REPORT_THRESHOLD".to_string(), "0".to_string())]);
        assert!(Config::load(None, &env).is_err());
        for (key, bad) in [
            ("OBSERVATORY_REQUEST_TIMEOUT_SECONDS", "0"),
            ("OBSERVATORY_REQUEST_TIMEOUT_SECONDS", "30s"),
            ("OBSERVATORY_RATE_LIMIT_PER_SECOND", "0"),
            ("OBSERVATORY_RATE_LIMIT_BURST", "-1"),
        ] {
            let env = HashMap::from([(key.to_string(), bad.to_string())]);
            assert!(Config::load(None, &env).is_err(), "{key}={bad}");
        }
        let env = HashMap::from([("OBSERVATORY_RATE_LIMIT_BURST".to_string(), "5".to_string())]);
        assert_eq!(Config::load(None, &env).unwrap().limits().burst, 5);
        std::fs::write(&file, "report_schedule = \"quarterly\"\n").unwrap();
        let c = Config::load(Some(&file), &HashMap::new()).unwrap();
        assert_eq!(c.report_schedule, ReportSchedule::Quarterly);
    }

    #[test]
    fn scheduled_reports_are_never_suppressed_below_the_floor() {
        let env = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let c = Config::load(None, &HashMap::new()).unwrap();
        assert_eq!((c.report_threshold, c.report_min_threshold), (10, 10));
        let low = Config::load(None, &env(&[("OBSERVATORY_REPORT_THRESHOLD", "5")]));
        assert!(
            low.unwrap_err().to_string().contains("below report_min_threshold (10)"),
            "a schedule below the default floor"
        );
        let c = Config::load(
            None,
            &env(&[
                ("OBSERVATORY_REPORT_THRESHOLD", "5"),
                ("OBSERVATORY_REPORT_MIN_THRESHOLD", "5"),
            ]),
        )
        .unwrap();
        assert_eq!((c.report_threshold, c.report_min_threshold), (5, 5));
        assert!(Config::load(None, &env(&[("OBSERVATORY_REPORT_MIN_THRESHOLD", "11")])).is_err());
        assert!(Config::load(None, &env(&[("OBSERVATORY_REPORT_MIN_THRESHOLD", "0")])).is_err());
    }

    #[test]
    fn tls_needs_a_certificate_and_its_key_together() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\n").unwrap();
        std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\n").unwrap();
        let with = |pairs: &[(&str, &std::path::Path)]| Config {
            tls_cert_file: pairs.iter().find(|(k, _)| *k == "cert").map(|(_, p)| p.to_path_buf()),
            tls_key_file: pairs.iter().find(|(k, _)| *k == "key").map(|(_, p)| p.to_path_buf()),
            tls_client_ca_file: pairs.iter().find(|(k, _)| *k == "ca").map(|(_, p)| p.to_path_buf()),
            ..Config::default()
        };
        assert!(with(&[]).tls().unwrap().is_none(), "no TLS configured");
        assert!(with(&[("cert", &cert), ("key", &key)]).tls().unwrap().is_some());
        assert!(with(&[("cert", &cert)]).tls().is_err(), "a certificate without its key");
        assert!(with(&[("key", &key)]).tls().is_err(), "a key without its certificate");
        assert!(with(&[("ca", &cert)]).tls().is_err(), "a client CA without TLS");
        let missing = dir.path().join("missing.pem");
        assert!(with(&[("cert", &missing), ("key", &key)]).tls().is_err());
        assert!(
            with(&[("cert", &key), ("key", &key)]).tls().is_err(),
            "a key given as the certificate"
        );
        let required = Config {
            tls_client_auth_required: true,
            ..with(&[("cert", &cert), ("key", &key)])
        };
        assert!(
            required.tls().is_err(),
            "client certificates required without a client CA"
        );
        // Given in the environment, the PEM texts win over the files, and are never printed.
        let env = HashMap::from([
            (
                "OBSERVATORY_TLS_CERT".to_string(),
                "-----BEGIN CERTIFICATE-----\n".to_string(),
            ),
            (
                "OBSERVATORY_TLS_KEY".to_string(),
                "-----BEGIN PRIVATE KEY-----\nsecret".to_string(),
            ),
        ]);
        let c = Config::load(None, &env).unwrap();
        assert!(c.tls().unwrap().is_some());
        assert!(!format!("{c:?}").contains("secret"));
    }

    #[test]
    fn a_missing_key_file_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            pseudonym_key_file: dir.path().join("k"),
            ..Config::default()
        };
        config.pseudonym_key().unwrap();
        let first = std::fs::read_to_string(dir.path().join("k")).unwrap();
        config.pseudonym_key().unwrap();
        assert_eq!(first, std::fs::read_to_string(dir.path().join("k")).unwrap());
        assert_eq!(first.len(), 64);
        assert!(!format!("{config:?}").contains(&first));
    }
}
