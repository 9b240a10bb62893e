//! Crash durability: the server, run in a child process, is killed with SIGKILL while 64 callers
//! register patients; restarted, it holds every write it acknowledged, and the writes whose
//! answer was lost, retried with their idempotency keys, are written once. Several rounds, on
//! each database; the audit trail verifies after each.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::time::{Duration, Instant};

use observatory_domain::access::Role;
use observatory_proto::v1::{self as pb, registry_service_client::RegistryServiceClient};
use observatory_server::{Application, Config};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::helpers::{Authed, Backend, Bearer, TEST_CENTRE, fresh_database, scoped_token};
use crate::on_both_backends;

on_both_backends!(acknowledged_writes_survive_sigkill_and_retried_ones_are_written_once);

/// The server of a child process, started by the crash test with its configuration in the
/// environment: prints its port, then serves until it is killed. Run by the test only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the server process of the crash test, which starts it with its configuration"]
async fn crash_child_server() {
    let env: HashMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("OBSERVATORY_"))
        .collect();
    assert!(
        env.contains_key("OBSERVATORY_CRASH_CHILD"),
        "started by the crash test only"
    );
    // Its logs go to stderr, which the test keeps in `server.log`.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter("info")
        .try_init();
    let config = Config::load(None, &env).expect("config");
    let app = Application::build(&config).await.expect("the server starts");
    println!("CRASH-CHILD-PORT {}", app.local_addr().port());
    app.run_until(std::future::pending()).await.expect("serves");
}

/// A server in a child process over `url`, with its keys in `dir`.
pub(crate) struct Child {
    pub(crate) process: std::process::Child,
    pub(crate) port: u16,
}

fn start_child(url: &str, dir: &std::path::Path) -> Child {
    start_child_within(&[], url, dir, &[])
}

/// A server in a child process over `url`, with its keys in `dir`, started through `wrapper`
/// (a command that ends by running the arguments it is given, such as `unshare`), with `env`
/// besides.
pub(crate) fn start_child_within(wrapper: &[&str], url: &str, dir: &std::path::Path, env: &[(&str, &str)]) -> Child {
    let binary = std::env::current_exe().expect("test binary");
    let arguments = [
        "--ignored",
        "--exact",
        "crash::crash_child_server",
        "--nocapture",
        "--test-threads=1",
    ];
    let mut command = match wrapper.split_first() {
        Some((program, rest)) => {
            let mut c = std::process::Command::new(program);
            c.args(rest).arg(&binary).args(arguments);
            c
        }
        None => {
            let mut c = std::process::Command::new(&binary);
            c.args(arguments);
            c
        }
    };
    let mut process = command
        .envs(env.iter().copied())
        .env("OBSERVATORY_CRASH_CHILD", "1")
        .env("OBSERVATORY_DATABASE_URL", url)
        .env("OBSERVATORY_LISTEN", "127.0.0.1:0")
        .env("OBSERVATORY_ALLOW_PLAINTEXT", "true")
        .env("OBSERVATORY_PSEUDONYM_KEY_FILE", dir.join("observatory.key"))
        .env("OBSERVATORY_AUDIT_KEY_FILE", dir.join("observatory-audit.key"))
        .env("OBSERVATORY_REPORTS_DIR", dir.join("reports"))
        .env("OBSERVATORY_RATE_LIMIT_PER_SECOND", "100000")
        .env("OBSERVATORY_RATE_LIMIT_BURST", "100000")
        .stdout(std::process::Stdio::piped())
        // Its logs, for a failing test to be understood (appended across restarts).
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("server.log"))
                .expect("log file"),
        )
        .spawn()
        .expect("child server");
    let stdout = process.stdout.take().expect("stdout");
    let mut lines = std::io::BufReader::new(stdout).lines();
    let port = loop {
        let line = lines
            .next()
            .expect("the child server announces its port")
            .expect("a line");
        // The test harness may print the test's name on the same line first.
        if let Some(port) = line.split("CRASH-CHILD-PORT ").nth(1) {
            break port.trim().parse().expect("port");
        }
    };
    // Keep draining its output so that it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Child { process, port }
}

pub(crate) async fn client(port: u16, secret: &str) -> RegistryServiceClient<Authed> {
    let channel = Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(2))
        .connect_lazy();
    RegistryServiceClient::new(InterceptedService::new(channel, Bearer::new(secret)))
}

fn registration(n: u32) -> pb::RegisterPatientRequest {
    pb::RegisterPatientRequest {
        idempotency_key: format!("crash-{n}"),
        subject: Some(pb::register_patient_request::Subject::Idmr(format!(
            "{:020}",
            70_000_000 + n
        ))),
        sex: pb::Sex::Female as i32,
        birth_year_month: "2011-02".into(),
        region_code: "11".into(),
        objects_to_reuse: false,
        diagnoses: Vec::new(),
        cde: None,
    }
}

async fn acknowledged_writes_survive_sigkill_and_retried_ones_are_written_once(backend: Backend) {
    let (url, dir) = fresh_database(backend).await;
    let mut child = start_child(&url, dir.path());
    // The child created the keys and migrated: a handle on the same database, with its audit key.
    let mut options = observatory_store::StoreOptions::new(&url);
    let audit_key = std::fs::read_to_string(dir.path().join("observatory-audit.key")).expect("audit key");
    options.audit_key = Some(observatory_store::audit::AuditKey::from_hex(&audit_key).expect("key"));
    let store = observatory_store::Store::connect(&options).await.expect("store");
    let secret = scoped_token(&store, Role::Prescriber, &[TEST_CENTRE], &[]).await;

    // key number -> patient id, for every write acknowledged.
    let mut acknowledged: BTreeMap<u32, String> = BTreeMap::new();
    let mut attempted = 0u32;
    for round in 0..3u32 {
        let registry = client(child.port, &secret).await;
        let started = Instant::now();
        let mut callers = tokio::task::JoinSet::new();
        for caller in 0..64u32 {
            let mut registry = registry.clone();
            callers.spawn(async move {
                let mut done = Vec::new();
                let mut lost = Vec::new();
                for i in 0.. {
                    let n = round * 1_000_000 + caller * 10_000 + i;
                    match registry.register_patient(registration(n)).await {
                        Ok(answer) => done.push((n, answer.into_inner().meta.expect("meta").id)),
                        Err(_) => {
                            lost.push(n);
                            break;
                        }
                    }
                    if started.elapsed() > Duration::from_secs(20) {
                        break;
                    }
                }
                (done, lost)
            });
        }
        // Killed while the writes go on.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        child.process.kill().expect("SIGKILL");
        child.process.wait().expect("reaped");
        eprintln!("crash round {round}: killed");
        let mut lost = Vec::new();
        while let Some(joined) = callers.join_next().await {
            let (done, missed) = joined.expect("caller");
            attempted += (done.len() + missed.len()) as u32;
            acknowledged.extend(done);
            lost.extend(missed);
        }
        assert!(!lost.is_empty(), "round {round}: the kill interrupted calls");
        eprintln!(
            "crash round {round}: {} acknowledged, {} lost",
            acknowledged.len(),
            lost.len()
        );

        // Restarted: every acknowledged write is there, as acknowledged.
        child = start_child(&url, dir.path());
        let mut registry = client(child.port, &secret).await;
        for (n, id) in &acknowledged {
            let got = registry
                .get_patient(pb::GetRequest { id: id.clone() })
                .await
                .unwrap_or_else(|s| panic!("acknowledged write {n} lost: {s:?}"));
            assert_eq!(got.into_inner().meta.expect("meta").id, *id);
        }
        // The writes whose answer was lost, retried with their keys: written once each.
        for n in lost {
            let first = registry
                .register_patient(registration(n))
                .await
                .expect("retry")
                .into_inner();
            let again = registry
                .register_patient(registration(n))
                .await
                .expect("replay")
                .into_inner();
            assert_eq!(first.meta, again.meta);
            acknowledged.insert(n, first.meta.expect("meta").id);
        }
        let stored = store
            .scalar_i64("SELECT COUNT(*) FROM patient_versions")
            .await
            .expect("count");
        assert_eq!(
            stored,
            acknowledged.len() as i64,
            "round {round}: one record per write, none twice"
        );
        let trail = store.verify_audit(None).await.expect("verify");
        assert_eq!(trail.broken, None, "round {round}: {trail:?}");
    }
    assert!(attempted > 200, "{attempted} writes attempted");
    child.process.kill().expect("stop");
    child.process.wait().expect("reaped");
    store.close().await;
}
