//! Readiness: gRPC health is NOT_SERVING while the database lacks a migration of this binary or
//! (PostgreSQL) cannot be reached, and SERVING again by itself once it recovers.

use std::time::Duration;

use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

use crate::helpers::{Backend, fresh_database, postgres_url, start_app};
use crate::on_both_backends;

on_both_backends!(health_follows_the_database_and_its_migrations);

/// Runs one statement on the database behind `url`, as an operator would.
async fn execute(url: &str, sql: &str) {
    crate::helpers::execute_sql(url, sql).await.expect("statement");
}

/// Polls the health of `service` until it is `expected`, for at most ten seconds.
async fn until(health: &mut HealthClient<tonic::transport::Channel>, service: &str, expected: ServingStatus) {
    let mut last = None;
    for _ in 0..100 {
        let status = health
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .map(|r| r.into_inner().status());
        if status.as_ref().ok() == Some(&expected) {
            return;
        }
        last = Some(status);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("health of {service:?} never became {expected:?}: {last:?}");
}

async fn health_follows_the_database_and_its_migrations(backend: Backend) {
    let (url, dir) = fresh_database(backend).await;
    let app = start_app(url.clone(), dir, &[("OBSERVATORY_HEALTH_CHECK_SECONDS", "1")]).await;
    let mut health = HealthClient::new(app.channel.clone());
    until(&mut health, "", ServingStatus::Serving).await;
    until(&mut health, "observatory.v1.RegistryService", ServingStatus::Serving).await;

    // The newest migration of this binary missing from the database: not ready.
    let newest = "(SELECT MAX(version) FROM _sqlx_migrations)";
    execute(
        &url,
        &format!("UPDATE _sqlx_migrations SET success = false WHERE version = {newest}"),
    )
    .await;
    until(&mut health, "", ServingStatus::NotServing).await;
    until(&mut health, "observatory.v1.RegistryService", ServingStatus::NotServing).await;
    execute(
        &url,
        &format!("UPDATE _sqlx_migrations SET success = true WHERE version = {newest}"),
    )
    .await;
    until(&mut health, "", ServingStatus::Serving).await;

    if backend == Backend::Postgres {
        // The database refusing connections: not ready, then ready again by itself.
        let name = url.rsplit('/').next().expect("database name").to_owned();
        let admin = postgres_url().expect("postgres url");
        execute(&admin, &format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false")).await;
        execute(
            &admin,
            &format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"),
        )
        .await;
        until(&mut health, "", ServingStatus::NotServing).await;
        execute(&admin, &format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS true")).await;
        until(&mut health, "", ServingStatus::Serving).await;
    }
    app.stop().await;
}
