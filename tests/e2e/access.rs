//! Authentication and role rules, tried on every RPC of the API: with no token, an expired
//! token, a revoked token, and a token of each role; unknown and malformed tokens; rates.

use chrono::{Duration, Utc};
use observatory_domain::access::Role;
use observatory_grpc::access::RULES;
use observatory_server::access::{TokenRequest, create_token, revoke_token};
use tonic::{Code, transport::Channel};

use crate::helpers::{Backend, TEST_CENTRE, TEST_FILIERES, fresh_database, spawn_app, start_app, token_for};
use crate::on_both_backends;

/// Every RPC of the observatory's services, by path, from the compiled descriptors.
fn every_rpc() -> Vec<String> {
    use prost::Message;
    let set = prost_types::FileDescriptorSet::decode(observatory_proto::FILE_DESCRIPTOR_SET).expect("descriptors");
    set.file
        .iter()
        .flat_map(|file| {
            file.service.iter().flat_map(move |service| {
                service
                    .method
                    .iter()
                    .map(move |method| format!("/{}.{}/{}", file.package(), service.name(), method.name()))
            })
        })
        .collect()
}

/// Calls `path` with an empty request (valid protobuf for every message), with `token` if
/// any, and gives back the status code (Ok when it succeeded).
async fn call(channel: &Channel, path: &str, token: Option<&str>) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("channel ready");
    let mut request = tonic::Request::new(());
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().expect("metadata"));
    }
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let path = http::uri::PathAndQuery::try_from(path.to_owned()).expect("path");
    match grpc.unary(request, path, codec).await {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

async fn every_rpc_answers_each_role_as_its_rule_says(backend: Backend) {
    let app = spawn_app(backend).await;
    let paths = every_rpc();
    assert_eq!(paths.len(), RULES.len(), "one rule per RPC");
    let mut tokens = Vec::new();
    for role in Role::ALL {
        tokens.push((role, token_for(&app.store, role).await));
    }
    // An admin token that has expired (written straight to the store: the command line refuses
    // an expiry in the past), and one revoked.
    let expired = observatory_grpc::access::new_secret();
    let now = chrono::SubsecRound::trunc_subsecs(Utc::now(), 6);
    app.store
        .create_token(&observatory_store::tokens::NewToken {
            id: uuid::Uuid::now_v7().to_string(),
            secret_sha256: observatory_grpc::access::secret_sha256(&expired),
            role: Role::Admin,
            scope: observatory_domain::access::Scope::new(Role::Admin, vec![], vec![]).expect("scope"),
            created_at: now - Duration::days(2),
            created_by: "test".into(),
            expires_at: Some(now - Duration::days(1)),
            client_subject: None,
        })
        .await
        .expect("expired token");
    let revoked_request = TokenRequest {
        client_subject: None,
        role: Role::Admin,
        centres: vec![],
        filieres: vec![],
        expires_at: None,
    };
    let (revoked_token, revoked) = create_token(&app.store, &revoked_request, "test").await.expect("token");
    revoke_token(&app.store, &revoked_token.id, "test")
        .await
        .expect("revoke");
    for path in &paths {
        let allowed = RULES
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, roles)| *roles)
            .unwrap_or_else(|| panic!("{path} has no rule"));
        for (credentials, what) in [
            (None, "without a token"),
            (Some(expired.as_str()), "with an expired token"),
            (Some(revoked.as_str()), "with a revoked token"),
        ] {
            assert_eq!(
                call(&app.channel, path, credentials).await,
                Code::Unauthenticated,
                "{path} {what}"
            );
        }
        for (role, token) in &tokens {
            let code = call(&app.channel, path, Some(token)).await;
            if allowed.contains(role) {
                // Past the access check: the empty request itself is what it answers about.
                assert!(
                    !matches!(code, Code::Unauthenticated | Code::PermissionDenied),
                    "{path} as {role}: {code:?}"
                );
            } else {
                assert_eq!(code, Code::PermissionDenied, "{path} as {role}");
            }
        }
    }
    // Health needs no token.
    assert_eq!(call(&app.channel, "/grpc.health.v1.Health/Check", None).await, Code::Ok);
    app.stop().await;
}

async fn unknown_expired_and_revoked_tokens_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let path = "/observatory.v1.ReferenceService/ListDrugs";
    let unknown = observatory_grpc::access::new_secret();
    assert_eq!(call(&app.channel, path, Some(&unknown)).await, Code::Unauthenticated);
    assert_eq!(
        call(&app.channel, path, Some("not-a-token")).await,
        Code::Unauthenticated
    );

    // Expired: a token that expires two seconds after it is made (the command line refuses an
    // expiry in the past), tried before and after.
    let expiring = TokenRequest {
        client_subject: None,
        role: Role::Prescriber,
        centres: vec![TEST_CENTRE.to_owned()],
        filieres: vec![],
        expires_at: Some(Utc::now() + Duration::seconds(2)),
    };
    let (_, secret) = create_token(&app.store, &expiring, "test").await.unwrap();
    assert_eq!(call(&app.channel, path, Some(&secret)).await, Code::Ok);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(call(&app.channel, path, Some(&secret)).await, Code::Unauthenticated);

    // Revoked: refused from the next call on; a second revocation is an error.
    let analyst = TokenRequest {
        client_subject: None,
        role: Role::Analyst,
        centres: vec![],
        filieres: TEST_FILIERES.iter().map(|f| f.to_string()).collect(),
        expires_at: None,
    };
    let (token, secret) = create_token(&app.store, &analyst, "test").await.unwrap();
    assert_eq!(call(&app.channel, path, Some(&secret)).await, Code::Ok);
    revoke_token(&app.store, &token.id, "test").await.unwrap();
    assert_eq!(call(&app.channel, path, Some(&secret)).await, Code::Unauthenticated);
    assert!(revoke_token(&app.store, &token.id, "test").await.is_err());
    assert!(revoke_token(&app.store, "no-such-token", "test").await.is_err());

    // Only hashes are stored; the list says which tokens are live.
    let listed = app.store.list_tokens().await.unwrap();
    assert!(
        listed
            .iter()
            .all(|t| t.token.secret_sha256 != secret && t.token.secret_sha256.len() == 64)
    );
    let states = observatory_server::access::token_lines(&listed, Utc::now()).join("\n");
    assert!(states.contains(&format!("{}\tanalyst", token.id)), "{states}");
    assert!(states.contains("revoked"), "{states}");
    assert!(states.contains("expired"), "{states}");
    assert!(!states.contains(&secret), "{states}");
    app.stop().await;
}

async fn writes_are_recorded_under_the_token_that_made_them(backend: Backend) {
    let mut app = spawn_app(backend).await;
    app.centre_and_prescriber().await;
    let cohort = app.aac_cohort().await;
    let cohort_id = cohort.meta.expect("meta").id;
    let actors = crate::helpers::text_rows(
        &app.database_url,
        "SELECT DISTINCT recorded_by FROM cohort_versions UNION SELECT DISTINCT recorded_by FROM centre_versions",
    )
    .await;
    let tokens = app.store.list_tokens().await.unwrap();
    let id_of = |role: Role| {
        tokens
            .iter()
            .find(|t| t.token.role == role)
            .map(|t| format!("{role}:{}", t.token.id))
            .unwrap()
    };
    assert!(actors.contains(&id_of(Role::DataManager)), "{actors:?} ({cohort_id})");
    assert!(actors.contains(&id_of(Role::Admin)), "{actors:?}");
    assert!(!actors.iter().any(|a| a == "anonymous"), "{actors:?}");
    app.stop().await;
}

on_both_backends!(
    each_token_has_its_own_rate_and_health_checks_none,
    every_rpc_answers_each_role_as_its_rule_says,
    unknown_expired_and_revoked_tokens_are_refused,
    writes_are_recorded_under_the_token_that_made_them,
);

async fn each_token_has_its_own_rate_and_health_checks_none(backend: Backend) {
    let (url, dir) = fresh_database(backend).await;
    let limits = [
        ("OBSERVATORY_RATE_LIMIT_PER_SECOND", "1"),
        ("OBSERVATORY_RATE_LIMIT_BURST", "3"),
    ];
    let app = start_app(url, dir, &limits).await;
    let path = "/observatory.v1.ReferenceService/ListDrugs";
    let first = token_for(&app.store, Role::Analyst).await;
    let second = token_for(&app.store, Role::Analyst).await;
    for _ in 0..3 {
        assert_eq!(call(&app.channel, path, Some(&first)).await, Code::Ok);
    }
    // The burst is used up: refused, with when to retry, and nothing else of the call done.
    let mut client = observatory_proto::v1::reference_service_client::ReferenceServiceClient::new(
        tonic::service::interceptor::InterceptedService::new(app.channel.clone(), crate::helpers::Bearer::new(&first)),
    );
    let status = client
        .list_drugs(observatory_proto::v1::ListDrugsRequest::default())
        .await
        .expect_err("rate exceeded");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let retry = tonic_types::StatusExt::get_details_retry_info(&status)
        .and_then(|r| r.retry_delay)
        .expect("retry info");
    assert!(
        retry > std::time::Duration::ZERO && retry <= std::time::Duration::from_secs(1),
        "{retry:?}"
    );
    // Another token has its own bucket; health checks have none.
    assert_eq!(call(&app.channel, path, Some(&second)).await, Code::Ok);
    for _ in 0..10 {
        assert_eq!(call(&app.channel, "/grpc.health.v1.Health/Check", None).await, Code::Ok);
    }
    // The bucket refills at its rate.
    tokio::time::sleep(retry + std::time::Duration::from_millis(50)).await;
    assert_eq!(call(&app.channel, path, Some(&first)).await, Code::Ok);
    app.stop().await;
}
