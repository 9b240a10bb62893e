//! The store's instruments, taken when the store connects from the meter its options name, by
//! default the global OpenTelemetry meter provider's (no-ops until the binary installs one):
//! connection pools, the group-commit writer, and the episodes it records. Names follow the OpenTelemetry conventions for database
//! clients where there is one.

use std::{
    sync::{Arc, Weak},
    time::Instant,
};

use opentelemetry::{
    KeyValue,
    metrics::{Counter, Histogram, Meter, ObservableGauge},
};
use sqlx::pool::PoolConnection;

use crate::{Backend, Record, Result, Written};

/// Names of the pools, as the `db.client.connection.pool.name` attribute gives them.
pub(crate) const SQLITE_READERS: &str = "sqlite-readers";
pub(crate) const SQLITE_WRITER: &str = "sqlite-writer";
pub(crate) const POSTGRES: &str = "postgresql";

const POOL_NAME: &str = "db.client.connection.pool.name";

/// Cheap to clone: every instrument is a handle.
#[derive(Clone)]
pub(crate) struct StoreMetrics {
    wait_time: Histogram<f64>,
    episodes: Counter<u64>,
    group_size: Histogram<u64>,
    /// Observed at each collection; kept so that the callbacks live as long as the store.
    _pools: Arc<[ObservableGauge<i64>; 2]>,
}

impl StoreMetrics {
    /// Instruments of a store over `backend`, from `meter`; the pool gauges stop reporting once
    /// every handle on it is gone.
    pub(crate) fn new(meter: &Meter, backend: &Arc<Backend>) -> Self {
        let pools = |backend: &Backend| -> Vec<(&'static str, u32, u32, u32)> {
            // (name, size, idle, max)
            let stats = |name, size: u32, idle: usize, max: u32| (name, size, idle as u32, max);
            match backend {
                Backend::Sqlite { readers, writer } => vec![
                    stats(
                        SQLITE_READERS,
                        readers.size(),
                        readers.num_idle(),
                        readers.options().get_max_connections(),
                    ),
                    stats(
                        SQLITE_WRITER,
                        writer.size(),
                        writer.num_idle(),
                        writer.options().get_max_connections(),
                    ),
                ],
                Backend::Postgres(p) => vec![stats(
                    POSTGRES,
                    p.size(),
                    p.num_idle(),
                    p.options().get_max_connections(),
                )],
            }
        };
        let weak: Weak<Backend> = Arc::downgrade(backend);
        let count = meter
            .i64_observable_gauge("db.client.connection.count")
            .with_description("connections of the pool, by state: used or idle")
            .with_unit("{connection}")
            .with_callback(move |o| {
                if let Some(backend) = weak.upgrade() {
                    for (name, size, idle, _) in pools(&backend) {
                        let used = i64::from(size.saturating_sub(idle));
                        o.observe(
                            used,
                            &[
                                KeyValue::new(POOL_NAME, name),
                                KeyValue::new("db.client.connection.state", "used"),
                            ],
                        );
                        o.observe(
                            i64::from(idle),
                            &[
                                KeyValue::new(POOL_NAME, name),
                                KeyValue::new("db.client.connection.state", "idle"),
                            ],
                        );
                    }
                }
            })
            .build();
        let weak: Weak<Backend> = Arc::downgrade(backend);
        let max = meter
            .i64_observable_gauge("db.client.connection.max")
            .with_description("connections the pool may open")
            .with_unit("{connection}")
            .with_callback(move |o| {
                if let Some(backend) = weak.upgrade() {
                    for (name, _, _, max) in pools(&backend) {
                        o.observe(i64::from(max), &[KeyValue::new(POOL_NAME, name)]);
                    }
                }
            })
            .build();
        Self {
            wait_time: meter
                .f64_histogram("db.client.connection.wait_time")
                .with_unit("s")
                .with_description(
                    "time to obtain a connection from the pool: registry reads, token look-ups and write groups",
                )
                .build(),
            episodes: meter
                .u64_counter("observatory.episodes.recorded")
                .with_unit("{episode}")
                .with_description("treatment episodes declared, by pathway (replays of an earlier call not counted)")
                .build(),
            group_size: meter
                .u64_histogram("observatory.store.commit_group.size")
                .with_unit("{command}")
                .with_description("commands and audited reads committed together by one transaction of the writer")
                .build(),
            _pools: Arc::new([count, max]),
        }
    }

    /// A connection from `pool`, the wait recorded.
    pub(crate) async fn acquire<DB: sqlx::Database>(
        &self,
        pool: &sqlx::Pool<DB>,
        name: &'static str,
    ) -> sqlx::Result<PoolConnection<DB>> {
        let started = Instant::now();
        let conn = pool.acquire().await;
        self.wait_time
            .record(started.elapsed().as_secs_f64(), &[KeyValue::new(POOL_NAME, name)]);
        conn
    }

    /// Counts what one committed group wrote.
    pub(crate) fn committed(&self, size: usize, outcomes: &[Result<Written>]) {
        self.group_size.record(size as u64, &[]);
        for written in outcomes.iter().flatten().filter(|w| !w.replayed) {
            if let Some(Record::Episode(e)) = written.records.first()
                && e.meta.version == 1
            {
                self.episodes
                    .add(1, &[KeyValue::new("pathway", e.record.pathway.code())]);
            }
        }
    }
}
