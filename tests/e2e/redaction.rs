//! What the observatory logs: every tracing event of the process, at debug level, is captured
//! while a session registers patients from identity fields (one of them twice at once, the race
//! the unique index settles), sends malformed identity fields, and calls with valid, unknown
//! and revoked tokens; neither an identity field, a pseudonym, an IdMR, a token secret nor the
//! pseudonymisation key may appear in the logs or in an error message.

use observatory_domain::access::Role;
use observatory_proto::v1::{self as pb, registry_service_client::RegistryServiceClient};
use tonic::service::interceptor::InterceptedService;

use crate::helpers::{Backend, Bearer, spawn_app, telemetry, token_for};
use crate::on_both_backends;

on_both_backends!(logs_and_errors_hold_no_identity_pseudonym_or_secret);

fn identity_registration(key: &str, last: &str, first: &str, birth: &str) -> pb::RegisterPatientRequest {
    pb::RegisterPatientRequest {
        idempotency_key: key.into(),
        subject: Some(pb::register_patient_request::Subject::Identity(pb::Identity {
            last_name: last.into(),
            first_name: first.into(),
            birth_date: birth.into(),
            sex: pb::Sex::Female as i32,
        })),
        region_code: "84".into(),
        ..Default::default()
    }
}

async fn logs_and_errors_hold_no_identity_pseudonym_or_secret(backend: Backend) {
    let captured = &telemetry().logs;
    let app = spawn_app(backend).await;
    let key_hex = std::fs::read_to_string(app.dir.path().join("observatory.key")).expect("key file");
    let secret = token_for(&app.store, Role::Prescriber).await;
    let client =
        |secret: &str| RegistryServiceClient::new(InterceptedService::new(app.channel.clone(), Bearer::new(secret)));
    let mut registry = client(&secret);
    let mut messages = Vec::new();

    // One identity, registered by two calls at once: one wins, the other is told the patient
    // exists; either way, the same pseudonym.
    let mut twin = registry.clone();
    let first = registry.register_patient(identity_registration("a", "Vexqurande", "Oriabelle", "2010-04-05"));
    let second = twin.register_patient(identity_registration("b", "Vexqurande", "Oriabelle", "2010-04-05"));
    let (first, second) = tokio::join!(first, second);
    let mut registered = 0;
    for answer in [first, second] {
        match answer {
            Ok(_) => registered += 1,
            Err(status) => messages.push(status.message().to_owned()),
        }
    }
    assert!(registered >= 1, "{messages:?}");
    // Malformed identity fields are named, never repeated.
    for request in [
        identity_registration("c", "Vexqurande7%%", "Oriabelle", "2010-13-45"),
        identity_registration("d", "", "Oriabelle", "2010-04-05"),
        identity_registration("e", "Vexqurande", "Oriabelle", "05/04/2010"),
    ] {
        let status = registry.register_patient(request).await.expect_err("invalid identity");
        messages.push(status.message().to_owned());
    }
    // An IdMR registration, then the same again.
    let idmr = "00000000000000424242";
    let by_idmr = pb::RegisterPatientRequest {
        idempotency_key: "f".into(),
        subject: Some(pb::register_patient_request::Subject::Idmr(idmr.into())),
        sex: pb::Sex::Male as i32,
        birth_year_month: "2009-01".into(),
        ..Default::default()
    };
    registry.register_patient(by_idmr.clone()).await.expect("IdMR");
    let again = pb::RegisterPatientRequest {
        idempotency_key: "g".into(),
        ..by_idmr
    };
    messages.push(
        registry
            .register_patient(again)
            .await
            .expect_err("registered twice")
            .message()
            .to_owned(),
    );
    // Unknown and revoked tokens.
    let unknown = observatory_grpc::access::new_secret();
    let status = client(&unknown)
        .get_patient(pb::GetRequest { id: "x".into() })
        .await
        .expect_err("unknown token");
    messages.push(status.message().to_owned());
    let revoked = token_for(&app.store, Role::DataManager).await;
    let id = app
        .store
        .list_tokens()
        .await
        .expect("tokens")
        .into_iter()
        .find(|t| {
            t.token.role == Role::DataManager
                && t.token.secret_sha256 == observatory_grpc::access::secret_sha256(&revoked)
        })
        .expect("token")
        .token
        .id;
    observatory_server::access::revoke_token(&app.store, &id, "test")
        .await
        .expect("revoke");
    let status = client(&revoked)
        .list_cohorts(pb::ListCohortsRequest::default())
        .await
        .expect_err("revoked token");
    messages.push(status.message().to_owned());
    // The pseudonyms as stored (the API never returns them): HMACs, and the IdMR.
    let stored_pseudonyms =
        crate::helpers::text_rows(&app.database_url, "SELECT pseudonym FROM patient_versions").await;
    assert_eq!(stored_pseudonyms.len(), 2, "{stored_pseudonyms:?}");
    app.stop().await;

    let logs = captured.text();
    // The capture works: the session's calls are there, by method only.
    assert!(
        logs.contains("observatory.v1.RegistryService/RegisterPatient"),
        "nothing captured"
    );
    let mut forbidden = vec![
        "Vexqurande".to_owned(),
        "Oriabelle".to_owned(),
        "vexqurande".to_owned(),
        "2010-04-05".to_owned(),
        "2010-13-45".to_owned(),
        "05/04/2010".to_owned(),
        idmr.to_owned(),
        secret.clone(),
        unknown.clone(),
        revoked.clone(),
        key_hex.trim().to_owned(),
    ];
    forbidden.extend(stored_pseudonyms);
    for value in &forbidden {
        assert!(!logs.contains(value.as_str()), "the logs hold {value:?}");
        for message in &messages {
            assert!(
                !message.contains(value.as_str()),
                "an error message holds {value:?}: {message}"
            );
        }
    }
}
