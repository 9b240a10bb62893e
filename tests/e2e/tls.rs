//! Transport security: the server's certificate, and mutual TLS where a client certificate
//! bound to a token (`token create --client-cert`) stands for that token.

use observatory_domain::access::Role;
use observatory_proto::v1::{self as pb, reference_service_client::ReferenceServiceClient};
use observatory_server::access::{TokenRequest, create_token, revoke_token};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::helpers::{Backend, Bearer, TEST_CENTRE, fresh_database, start_app, token_for};
use crate::on_both_backends;

on_both_backends!(
    tls_serves_token_holders_and_client_certificates_bound_to_tokens,
    the_web_front_speaks_tls_with_the_grpc_certificate_and_marks_its_cookies_secure,
    the_web_front_bounds_failed_sign_ins_per_address,
);

/// A certificate authority of the test.
fn authority(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA")
}

/// A certificate and its key (PEM) issued by `ca`: for the server (`localhost`) or a client
/// (`common_name`, organisation `Partner`).
fn issue(ca: &CertifiedIssuer<'static, KeyPair>, server: bool, common_name: &str) -> (String, String) {
    issue_as(ca, server, common_name, Some("Partner"))
}

fn issue_as(
    ca: &CertifiedIssuer<'static, KeyPair>,
    server: bool,
    common_name: &str,
    organisation: Option<&str>,
) -> (String, String) {
    let names = if server { vec!["localhost".to_owned()] } else { vec![] };
    let mut params = CertificateParams::new(names).expect("params");
    params.distinguished_name.push(DnType::CommonName, common_name);
    if let Some(organisation) = organisation {
        params.distinguished_name.push(DnType::OrganizationName, organisation);
    }
    params.extended_key_usages = vec![if server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, ca).expect("certificate");
    (cert.pem(), key.serialize_pem())
}

async fn tls_channel(
    port: u16,
    ca_pem: &str,
    identity: Option<(&str, &str)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Channel::from_shared(format!("https://localhost:{port}"))
        .expect("endpoint")
        .tls_config(tls)?
        .connect()
        .await
}

async fn list_centres(channel: Channel, bearer: Option<&str>) -> Code {
    let request = pb::ListCentresRequest::default();
    let answer = match bearer {
        Some(secret) => {
            let mut client = ReferenceServiceClient::new(tonic::service::interceptor::InterceptedService::new(
                channel,
                Bearer::new(secret),
            ));
            client.list_centres(request).await.map(drop)
        }
        None => ReferenceServiceClient::new(channel)
            .list_centres(request)
            .await
            .map(drop),
    };
    answer.err().map_or(Code::Ok, |s| s.code())
}

async fn tls_serves_token_holders_and_client_certificates_bound_to_tokens(backend: Backend) {
    let (url, dir) = fresh_database(backend).await;
    let ca = authority("Observatory test CA");
    let (server_cert, server_key) = issue(&ca, true, "observatory");
    let (client_cert, client_key) = issue(&ca, false, "registry.example");
    let (other_cert, other_key) = issue(&ca, false, "unbound.example");
    // A certificate of the same CA whose one attribute reads like the bound subject.
    let (lookalike_cert, lookalike_key) = issue_as(&ca, false, "registry.example, O=Partner", None);
    let stranger_ca = authority("Another CA");
    let (stranger_cert, stranger_key) = issue(&stranger_ca, false, "registry.example");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write PEM");
        path.display().to_string()
    };
    let cert_file = write("server.pem", &server_cert);
    let key_file = write("server.key", &server_key);
    let ca_file = write("clients-ca.pem", &ca.pem());
    let client_file = write("client.pem", &client_cert);
    let env = [
        ("OBSERVATORY_ALLOW_PLAINTEXT", "false"),
        ("OBSERVATORY_TLS_CERT_FILE", cert_file.as_str()),
        ("OBSERVATORY_TLS_KEY_FILE", key_file.as_str()),
        ("OBSERVATORY_TLS_CLIENT_CA_FILE", ca_file.as_str()),
    ];
    let app = start_app(url, dir, &env).await;
    let port = app.addr.port();

    // A partner system's token held as its client certificate, bound by the certificate's
    // subject as the command line reads it from the PEM file.
    let subject =
        observatory_server::access::client_certificate_subject(std::path::Path::new(&client_file)).expect("subject");
    assert_eq!(subject, "CN=registry.example, O=Partner");
    let request = TokenRequest {
        role: Role::Partner,
        centres: vec![TEST_CENTRE.to_owned()],
        filieres: vec![],
        expires_at: None,
        client_subject: Some(subject),
    };
    let (held, _) = create_token(&app.store, &request, "test").await.expect("token");

    let with_certificate = tls_channel(port, &ca.pem(), Some((&client_cert, &client_key)))
        .await
        .expect("mutual TLS");
    assert_eq!(list_centres(with_certificate.clone(), None).await, Code::Ok);
    // The principal is the token's: a partner may not create a centre.
    let denied = ReferenceServiceClient::new(with_certificate.clone())
        .create_centre(pb::CreateCentreRequest::default())
        .await
        .expect_err("a partner creating a centre");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");

    // TLS without a client certificate: bearer tokens work, nothing else does.
    let server_only = tls_channel(port, &ca.pem(), None).await.expect("TLS");
    assert_eq!(list_centres(server_only.clone(), None).await, Code::Unauthenticated);
    let admin = token_for(&app.store, Role::Admin).await;
    assert_eq!(list_centres(server_only, Some(&admin)).await, Code::Ok);

    // A certificate of the right CA bound to no token authenticates nobody.
    let unbound = tls_channel(port, &ca.pem(), Some((&other_cert, &other_key)))
        .await
        .expect("mutual TLS");
    assert_eq!(list_centres(unbound, None).await, Code::Unauthenticated);

    let lookalike = tls_channel(port, &ca.pem(), Some((&lookalike_cert, &lookalike_key)))
        .await
        .expect("mutual TLS");
    assert_eq!(list_centres(lookalike, None).await, Code::Unauthenticated);

    // A bearer token, when sent, wins over the certificate; a malformed one is refused, not
    // passed over for the certificate.
    let as_admin = ReferenceServiceClient::new(tonic::service::interceptor::InterceptedService::new(
        with_certificate.clone(),
        Bearer::new(&admin),
    ))
    .create_centre(pb::CreateCentreRequest::default())
    .await
    .expect_err("an empty centre");
    assert_eq!(
        as_admin.code(),
        Code::InvalidArgument,
        "the admin's rights, not the partner's"
    );
    let mut malformed = tonic::Request::new(pb::ListCentresRequest::default());
    malformed
        .metadata_mut()
        .insert("authorization", "Bearer not-a-token".parse().expect("metadata"));
    let status = ReferenceServiceClient::new(with_certificate.clone())
        .list_centres(malformed)
        .await
        .expect_err("malformed credentials");
    assert_eq!(status.code(), Code::Unauthenticated);

    // A certificate of another CA, with the same subject, is refused by the handshake.
    let stranger = match tls_channel(port, &ca.pem(), Some((&stranger_cert, &stranger_key))).await {
        Ok(channel) => list_centres(channel, None).await,
        Err(_) => Code::Unavailable,
    };
    assert_ne!(stranger, Code::Ok);

    // Plain text is not served.
    assert_ne!(list_centres(app.channel.clone(), Some(&admin)).await, Code::Ok);

    // Revoking the token ends what the certificate may do.
    revoke_token(&app.store, &held.id, "test").await.expect("revoke");
    assert_eq!(list_centres(with_certificate, None).await, Code::Unauthenticated);
    app.stop().await;
}

/// One HTTP/1.1 exchange over TLS with the web front (the test CA trusted): the answer's head
/// and body as text.
async fn https(port: u16, ca_pem: &str, request: String) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls::{
        self, ClientConfig, RootCertStore,
        pki_types::{CertificateDer, ServerName, pem::PemObject},
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("CA");
    }
    let config = ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let mut tls = connector
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await?;
    tls.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

fn header_values<'a>(answer: &'a str, name: &str) -> Vec<&'a str> {
    let head = answer.split("\r\n\r\n").next().unwrap_or_default();
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

/// The web front, served beside gRPC with the same certificate: signing in over TLS gives
/// HttpOnly, SameSite=Strict and Secure cookies, and the front answers nothing in plain text.
async fn the_web_front_speaks_tls_with_the_grpc_certificate_and_marks_its_cookies_secure(backend: Backend) {
    let (url, dir) = fresh_database(backend).await;
    let ca = authority("Observatory test CA");
    let (server_cert, server_key) = issue(&ca, true, "observatory");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write PEM");
        path.display().to_string()
    };
    let cert_file = write("server.pem", &server_cert);
    let key_file = write("server.key", &server_key);
    let env = [
        ("OBSERVATORY_ALLOW_PLAINTEXT", "false"),
        ("OBSERVATORY_TLS_CERT_FILE", cert_file.as_str()),
        ("OBSERVATORY_TLS_KEY_FILE", key_file.as_str()),
        ("OBSERVATORY_WEB_LISTEN", "127.0.0.1:0"),
    ];
    let app = start_app(url, dir, &env).await;
    let port = app.web_addr.expect("the web front is served").port();
    let host = format!("localhost:{port}");

    let form = https(
        port,
        &ca.pem(),
        format!("GET /sign-in HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    )
    .await
    .expect("the sign-in page over TLS");
    assert!(form.starts_with("HTTP/1.1 200"), "{form}");
    let pre = header_values(&form, "set-cookie");
    assert!(
        pre.iter().all(|c| c.contains("Secure") && c.contains("HttpOnly")),
        "{pre:?}"
    );
    let csrf = form
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the form's CSRF secret")
        .to_owned();
    let pre_cookie = pre[0].split(';').next().expect("cookie").to_owned();

    let secret = token_for(&app.store, Role::Prescriber).await;
    let body = format!("csrf={csrf}&next=%2Fpatients&token={secret}");
    let signed_in = https(
        port,
        &ca.pem(),
        format!(
            "POST /sign-in HTTP/1.1\r\nHost: {host}\r\nOrigin: https://{host}\r\nCookie: {pre_cookie}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await
    .expect("sign in over TLS");
    assert!(signed_in.starts_with("HTTP/1.1 303"), "{signed_in}");
    let session = header_values(&signed_in, "set-cookie")
        .into_iter()
        .find(|c| c.starts_with("obs_session=") && !c.starts_with("obs_session=;"))
        .expect("a session cookie")
        .to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Secure"] {
        assert!(session.contains(attribute), "{session} lacks {attribute}");
    }
    let cookie = session.split(';').next().expect("cookie").to_owned();
    let patients = https(
        port,
        &ca.pem(),
        format!("GET /patients HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"),
    )
    .await
    .expect("a page over TLS");
    assert!(patients.starts_with("HTTP/1.1 200"), "{patients}");
    assert!(patients.contains("<h1>Patients</h1>"));
    assert!(
        header_values(&patients, "content-security-policy")
            .iter()
            .any(|v| v.contains("default-src 'none'")),
        "{patients}"
    );

    // Plain HTTP on the TLS port gets no page.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut plain = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    plain
        .write_all(format!("GET /sign-in HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), plain.read_to_end(&mut answer)).await;
    assert!(!String::from_utf8_lossy(&answer).contains("HTTP/1.1 200"));
}

/// One HTTP/1.1 exchange in plain text.
async fn http_plain(port: u16, request: String) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.expect("read");
    String::from_utf8_lossy(&answer).into_owned()
}

/// Failed sign-ins are counted per address, as calls with invalid credentials are over gRPC:
/// past the burst, the address waits (429 with Retry-After) before any token is looked up, a
/// valid one included.
async fn the_web_front_bounds_failed_sign_ins_per_address(backend: Backend) {
    let (url, dir) = fresh_database(backend).await;
    let env = [
        ("OBSERVATORY_WEB_LISTEN", "127.0.0.1:0"),
        ("OBSERVATORY_AUTH_FAILURE_BURST", "2"),
        ("OBSERVATORY_AUTH_FAILURE_RATE_PER_SECOND", "1"),
    ];
    let app = start_app(url, dir, &env).await;
    let port = app.web_addr.expect("the web front is served").port();
    let host = format!("127.0.0.1:{port}");
    let form = http_plain(
        port,
        format!("GET /sign-in HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    let csrf = form
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the form's CSRF secret")
        .to_owned();
    let cookie = header_values(&form, "set-cookie")[0]
        .split(';')
        .next()
        .expect("cookie")
        .to_owned();
    let sign_in = |secret: String| {
        let body = format!("csrf={csrf}&next=%2F&token={secret}");
        format!(
            "POST /sign-in HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\nCookie: {cookie}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    for n in 0..2 {
        let refused = http_plain(port, sign_in(format!("obs_{n:064}"))).await;
        assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    }
    let valid = token_for(&app.store, Role::Prescriber).await;
    let barred = http_plain(port, sign_in(valid.clone())).await;
    assert!(barred.starts_with("HTTP/1.1 429"), "{barred}");
    assert!(!header_values(&barred, "retry-after").is_empty(), "{barred}");
    // The bucket refills: after a wait the valid token signs in.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let signed_in = http_plain(port, sign_in(valid)).await;
    assert!(signed_in.starts_with("HTTP/1.1 303"), "{signed_in}");
}
