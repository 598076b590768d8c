//! `ApiClient` against a daemon with its own TLS certificate: refused (with a
//! message naming `--ca-file`) without the CA, accepted with it.
//!
//! The "daemon" is a minimal HTTPS responder on loopback: a self-signed
//! certificate for 127.0.0.1 (its own CA) made at run time, one canned JSON
//! answer per connection.

use std::sync::Arc;

use jobstack::client::{ApiClient, ClientError, ClientTls};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Serve `body` as JSON over TLS to every connection; returns the base URL and
/// the PEM of the certificate.
async fn tls_server(body: &'static str) -> (String, String) {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()])
        .expect("generate a certificate");
    let pem = certified.cert.pem();
    let cert = CertificateDer::from(certified.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .expect("server config");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A refused handshake (the client without the CA) ends here.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (url, pem)
}

#[tokio::test]
async fn own_certificate_needs_the_ca_file() {
    let (url, pem) = tls_server(r#"[{"ok": true}]"#).await;

    let without = ApiClient::new(&url, ClientTls::default()).unwrap();
    let error = without.get_json::<serde_json::Value>("/tasks").await.unwrap_err();
    assert!(matches!(error, ClientError::Transport(_)), "{error:?}");
    let text = error.to_string();
    assert!(text.contains("TLS") && text.contains("--ca-file") && text.contains(&url), "{text}");

    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, pem).unwrap();
    let with = ApiClient::new(&url, ClientTls { ca_file: Some(ca_file) }).unwrap();
    let answer: serde_json::Value = with.get_json("/tasks").await.unwrap();
    assert_eq!(answer, serde_json::json!([{"ok": true}]));
}
