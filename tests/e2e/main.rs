//! Black-box end-to-end tests through the real gRPC interface. Every scenario runs on SQLite,
//! and on PostgreSQL when `OBSERVATORY_TEST_POSTGRES_URL` is set (CI sets it).

mod access;
mod app_layer;
mod audit;
mod corrections;
mod crash;
mod disk;
mod exchange;
mod fuzz;
mod hardening;
mod health;
mod helpers;
mod hostile;
mod pharmacovigilance;
mod rcp;
mod redaction;
mod reference_releases;
mod registry;
mod report;
mod reports_api;
mod scopes;
mod seed;
mod synthesis;
mod telemetry;
mod tls;

/// Runs a scenario `async fn name(backend)` once per backend, as `name::sqlite` and
/// `name::postgres`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::helpers::Backend::Sqlite).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if $crate::helpers::postgres_url().is_none() {
                        eprintln!("OBSERVATORY_TEST_POSTGRES_URL is not set: PostgreSQL run not requested");
                        return;
                    }
                    super::$name($crate::helpers::Backend::Postgres).await;
                }
            }
        )+
    };
}
