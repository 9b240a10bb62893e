//! Import benchmark: patients registered through a running server, by one `Import` stream and by
//! as many unary `RegisterPatient` calls from concurrent callers, against a baseline of bare
//! single-row inserts on the same database in the same run (full durability everywhere). The
//! server runs as `serve` runs it, with its tracing subscriber (spans and trace ids, no export).
//!
//! cargo bench -p observatory-tests --bench import
//! (PostgreSQL too when OBSERVATORY_BENCH_POSTGRES_URL names a server where it may create
//! databases; OBSERVATORY_BENCH_OPS and OBSERVATORY_BENCH_CLIENTS change the load.)

use std::{collections::HashMap, time::Instant};

use observatory_domain::access::Role;
use observatory_proto::v1::{
    self as pb, exchange_service_client::ExchangeServiceClient, import_result::Outcome,
    registry_service_client::RegistryServiceClient,
};
use observatory_server::{
    Application, Config,
    access::{TokenRequest, create_token},
};
use observatory_store::{Store, StoreOptions, testing};
use tonic::{metadata::MetadataValue, service::interceptor::InterceptedService, transport::Channel};

const RUNS: usize = 5;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[derive(Clone)]
struct Bearer(MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

type Authed = InterceptedService<Channel, Bearer>;

/// Patient `n` of run `run`: an IdMR of its own.
fn patient(run: usize, n: usize, how: &str) -> pb::RegisterPatientRequest {
    let base = match how {
        "import" => 1,
        _ => 2,
    };
    pb::RegisterPatientRequest {
        idempotency_key: format!("{how}-{run}-{n}"),
        subject: Some(pb::register_patient_request::Subject::Idmr(format!(
            "{base}{run:04}{n:015}"
        ))),
        sex: pb::Sex::Female as i32,
        birth_year_month: "2011-04".into(),
        region_code: "11".into(),
        objects_to_reuse: false,
        diagnoses: vec![],
        cde: None,
    }
}

/// `ops` patients through one Import stream; items per second.
async fn import_run(client: &mut ExchangeServiceClient<Authed>, run: usize, ops: usize) -> f64 {
    let items: Vec<pb::ImportItem> = (0..ops)
        .map(|n| pb::ImportItem {
            reference: n.to_string(),
            write: Some(pb::import_item::Write::RegisterPatient(patient(run, n, "import"))),
        })
        .collect();
    let started = Instant::now();
    let mut results = client
        .import(tokio_stream::iter(items))
        .await
        .expect("import")
        .into_inner();
    let mut answered = 0;
    while let Some(result) = results.message().await.expect("result") {
        assert!(matches!(result.outcome, Some(Outcome::Written(_))), "{result:?}");
        answered += 1;
    }
    assert_eq!(answered, ops);
    ops as f64 / started.elapsed().as_secs_f64()
}

/// `ops` patients through unary calls from `clients` concurrent callers; calls per second.
async fn unary_run(client: &RegistryServiceClient<Authed>, run: usize, ops: usize, clients: usize) -> f64 {
    let client = client.clone();
    testing::per_second(ops, clients, move |n| {
        let mut client = client.clone();
        async move {
            client
                .register_patient(patient(run, n, "unary"))
                .await
                .expect("register");
        }
    })
    .await
}

async fn bench(name: &str, url: String, ops: usize, clients: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let env = HashMap::from([
        ("OBSERVATORY_DATABASE_URL".to_owned(), url.clone()),
        ("OBSERVATORY_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        ("OBSERVATORY_ALLOW_PLAINTEXT".to_owned(), "true".to_owned()),
        (
            "OBSERVATORY_PSEUDONYM_KEY_FILE".to_owned(),
            dir.path().join("observatory.key").display().to_string(),
        ),
        // Calls, not the rate limit of one token, are measured.
        ("OBSERVATORY_RATE_LIMIT_PER_SECOND".to_owned(), "1000000".to_owned()),
        ("OBSERVATORY_RATE_LIMIT_BURST".to_owned(), "1000000".to_owned()),
    ]);
    let config = Config::load(None, &env).expect("config");
    let app = Application::build(&config).await.expect("server");
    let addr = app.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    let store = Store::connect(&StoreOptions::new(&url)).await.expect("store");
    let request = TokenRequest {
        client_subject: None,
        role: Role::Partner,
        centres: vec!["750100125".to_owned()],
        filieres: vec![],
        expires_at: None,
    };
    let secret = create_token(&store, &request, "bench").await.expect("token").1;
    let bearer = Bearer(format!("Bearer {secret}").parse().expect("metadata"));
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut exchange = ExchangeServiceClient::new(InterceptedService::new(channel.clone(), bearer.clone()));
    let registry = RegistryServiceClient::new(InterceptedService::new(channel, bearer));
    let (mut base, mut imported, mut unary) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..RUNS {
        // Interleaved, to spread any drift of the machine over all three.
        base.push(testing::bare_inserts(&url, run, ops, clients).await);
        imported.push(import_run(&mut exchange, run, ops).await);
        unary.push(unary_run(&registry, run, ops, clients).await);
    }
    let (b, i, u) = (
        testing::median(base.clone()),
        testing::median(imported.clone()),
        testing::median(unary.clone()),
    );
    println!(
        "{name:<10} ops/run={ops:<6} baseline bare insert ({clients} callers): {b:>7.0}/s   Import (one stream): {i:>7.0}/s   RegisterPatient ({clients} callers): {u:>7.0}/s   import/baseline {:.2}   import/unary {:.2}",
        i / b,
        i / u
    );
    let rounded = |v: &[f64]| v.iter().map(|x| x.round()).collect::<Vec<_>>();
    println!("{:<10} runs baseline {:?}", "", rounded(&base));
    println!("{:<10} runs import   {:?}", "", rounded(&imported));
    println!("{:<10} runs unary    {:?}", "", rounded(&unary));
    let _ = stop.send(());
    server.await.expect("server task").expect("server ran");
    store.close().await;
}

fn main() {
    // The subscriber of `serve`, spans with trace ids and all, logs at warn only (to nowhere).
    use tracing_subscriber::util::SubscriberInitExt;
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    observatory_server::telemetry::subscriber(
        &observatory_server::config::LogFormat::Text,
        std::io::sink,
        false,
        tracing_subscriber::EnvFilter::new("warn"),
        &provider,
    )
    .try_init()
    .expect("subscriber");
    let ops = env_usize("OBSERVATORY_BENCH_OPS", 2000);
    let clients = env_usize("OBSERVATORY_BENCH_CLIENTS", 64);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, url) in testing::bench_databases(dir.path()).await {
            bench(name, url, ops, clients).await;
        }
    });
}
