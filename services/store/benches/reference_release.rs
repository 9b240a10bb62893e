//! Reference import benchmark: a full Orphadata-layout nomenclature (10,000 disorders by
//! default, each with synonyms, an ICD-10 and an OMIM reference, as in `en_product1.xml`)
//! parsed and recorded as a release (catalogue successor computed, entries in multi-row
//! statements, audit event, one transaction), against a baseline of bare multi-row inserts of
//! the same number of rows of the same size into a table of their own, on the same database.
//!
//! cargo bench -p observatory-store --bench reference_release
//! (PostgreSQL too when OBSERVATORY_BENCH_POSTGRES_URL names a server where it may create
//! databases; OBSERVATORY_BENCH_DISORDERS changes the size of the file.)

use std::fmt::Write as _;
use std::time::Instant;

use observatory_domain::catalogue::Catalogue;
use observatory_domain::reference_files::{InputFile, orphadata};
use observatory_store::{Store, StoreOptions, testing};

const RUNS: usize = 5;

/// A `product1` file of `n` disorders; `version` makes each run's file (and checksum) its own.
fn product1(n: usize, version: usize) -> String {
    let mut x = String::with_capacity(n * 1600);
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<JDBOR date=\"2025-07-01 04:48:41\" version=\"bench {version}\" copyright=\"Orphanet (c) 2025\">"
    );
    let _ = writeln!(x, "  <DisorderList count=\"{n}\">");
    for i in 0..n {
        let code = 100_000 + i;
        let _ = write!(
            x,
            "    <Disorder id=\"{i}\">\n      <OrphaCode>{code}</OrphaCode>\n      \
             <ExpertLink lang=\"en\">http://www.orpha.net/consor/cgi-bin/OC_Exp.php?lng=en&amp;Expert={code}</ExpertLink>\n      \
             <Name lang=\"en\">Synthetic rare disorder number {code} with a name of usual length</Name>\n      \
             <SynonymList count=\"2\">\n        <Synonym lang=\"en\">Synonym A of {code}</Synonym>\n        \
             <Synonym lang=\"en\">Synonym B of {code}, Smith&apos;s type</Synonym>\n      </SynonymList>\n      \
             <DisorderType id=\"21394\"><Name lang=\"en\">Disease</Name></DisorderType>\n      \
             <DisorderGroup id=\"36547\"><Name lang=\"en\">Disorder</Name></DisorderGroup>\n      \
             <ExternalReferenceList count=\"2\">\n        <ExternalReference id=\"{i}1\">\n          \
             <Source>ICD-10</Source>\n          <Reference>Q{:02}.{}</Reference>\n          \
             <DisorderMappingRelation id=\"21562\"><Name lang=\"en\">E (Exact mapping: the two concepts are equivalent)</Name></DisorderMappingRelation>\n          \
             <DisorderMappingICDRelation id=\"21581\"><Name lang=\"en\">Specific code</Name></DisorderMappingICDRelation>\n          \
             <DisorderMappingValidationStatus id=\"17991\"><Name lang=\"en\">Validated</Name></DisorderMappingValidationStatus>\n        \
             </ExternalReference>\n        <ExternalReference id=\"{i}2\">\n          <Source>OMIM</Source>\n          \
             <Reference>{}</Reference>\n          \
             <DisorderMappingRelation id=\"21562\"><Name lang=\"en\">E (Exact mapping: the two concepts are equivalent)</Name></DisorderMappingRelation>\n        \
             </ExternalReference>\n      </ExternalReferenceList>\n    </Disorder>\n",
            i % 100,
            i % 10,
            600_000 + i
        );
    }
    x.push_str("  </DisorderList>\n</JDBOR>\n");
    x
}

/// The baseline: `rows` bare rows of `body` in multi-row statements of 1,000, one transaction,
/// into a table of the run's own. Returns seconds.
async fn bare_multi_row(url: &str, run: usize, rows: usize, body: &str) -> f64 {
    macro_rules! go {
        ($pool:expr, $db:ty) => {{
            let pool = $pool;
            let table = format!("bench_entries_{run}");
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "CREATE TABLE {table} (release_seq BIGINT NOT NULL, kind TEXT NOT NULL, code TEXT NOT NULL, \
                 body TEXT NOT NULL, PRIMARY KEY (release_seq, kind, code))"
            )))
            .execute(&pool)
            .await
            .expect("table");
            let started = Instant::now();
            let mut tx = pool.begin().await.expect("begin");
            let codes: Vec<String> = (0..rows).map(|i| (100_000 + i).to_string()).collect();
            for chunk in codes.chunks(1000) {
                let mut q =
                    sqlx::QueryBuilder::<$db>::new(format!("INSERT INTO {table} (release_seq, kind, code, body) "));
                q.push_values(chunk, |mut b, code| {
                    b.push_bind(1_i64).push_bind("DISEASE").push_bind(code).push_bind(body);
                });
                q.build().execute(&mut *tx).await.expect("insert");
            }
            tx.commit().await.expect("commit");
            let seconds = started.elapsed().as_secs_f64();
            pool.close().await;
            seconds
        }};
    }
    if url.starts_with("sqlite:") {
        let options = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(url)
            .expect("url")
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Full);
        go!(
            sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options)
                .await
                .expect("pool"),
            sqlx::Sqlite
        )
    } else {
        go!(
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(url)
                .await
                .expect("pool"),
            sqlx::Postgres
        )
    }
}

async fn bench(name: &str, url: String, disorders: usize) {
    let mut options = StoreOptions::new(&url);
    options.audit_key = Some(observatory_store::audit::AuditKey::new(vec![7; 32]).expect("key"));
    let store = Store::connect(&options).await.expect("connect");
    store.migrate().await.expect("migrate");
    let (mut base, mut parse, mut record) = (Vec::new(), Vec::new(), Vec::new());
    let mut megabytes = 0.0;
    for run in 0..RUNS {
        let file = product1(disorders, run);
        megabytes = file.len() as f64 / 1e6;
        let started = Instant::now();
        let content = orphadata::parse(InputFile {
            name: "en_product1.xml",
            bytes: file.as_bytes(),
        })
        .expect("parses");
        parse.push(started.elapsed().as_secs_f64());
        let body = content
            .entries
            .values()
            .next()
            .map(|e| e.body().to_string())
            .unwrap_or_default();
        base.push(bare_multi_row(&url, run, content.entries.len(), &body).await);
        let started = Instant::now();
        let catalogue = store.catalogue().await.expect("catalogue");
        let content = catalogue.successor(content);
        let (_, new) = store
            .record_release(&content, "bench", &format!("bench-{run}"))
            .await
            .expect("record");
        assert!(new);
        // As the application does after an import.
        let rebuilt: Catalogue = store.catalogue().await.expect("catalogue");
        assert!(rebuilt.disease("100000").is_some());
        record.push(started.elapsed().as_secs_f64());
    }
    let (b, p, r) = (
        testing::median(base.clone()),
        testing::median(parse.clone()),
        testing::median(record.clone()),
    );
    println!(
        "{name:<10} disorders={disorders} file={megabytes:.1} MB   parse {p:.2} s   record + rebuild {r:.2} s   \
         total {:.2} s   baseline bare multi-row insert {b:.2} s   record/baseline {:.2}",
        p + r,
        r / b
    );
    println!("{name:<10} runs parse {parse:.2?} record {record:.2?} baseline {base:.2?}");
    store.close().await;
}

fn main() {
    let disorders = std::env::var("OBSERVATORY_BENCH_DISORDERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, url) in testing::bench_databases(dir.path()).await {
            bench(name, url, disorders).await;
        }
    });
}
