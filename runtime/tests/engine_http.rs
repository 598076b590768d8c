//! Outgoing HTTP in-process: a plugin reaches only the hosts its execution was
//! granted. Uses the esx plugin and a POSTing fixture (built in `plugins/` by
//! scripts/build-plugins.sh) and a one-shot HTTP responder on loopback.

mod common;

use jobstack::engine::{
    Engine, EngineConfig, ExecutionLimits, ExecutionRequest, Grants, LoadError, Part, Status,
};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::Duration;

fn esx() -> Vec<u8> {
    common::plugin_bytes("esx")
}

fn engine() -> Engine {
    Engine::new(EngineConfig {
        pooled_slots: 8,
        dedicated_slots: 1,
        pooled_threads: 2,
        ..EngineConfig::default()
    })
    .unwrap()
}

/// An esx execution against `http://{address}/sdk` with `grants`.
fn request(address: &str, grants: Grants) -> ExecutionRequest {
    let part = Part {
        label: address.into(),
        targets: vec![address.into()],
        payload: format!(r#"{{"url":"http://{address}/sdk"}}"#),
    };
    let params = format!(r#"{{"hosts":["http://{address}/sdk"],"user":"root"}}"#);
    ExecutionRequest::new(params, part)
        .secrets(r#"{"password":"x"}"#)
        .limits(ExecutionLimits::with_timeout(Duration::from_secs(30)))
        .grants(grants)
}

#[tokio::test]
async fn a_request_to_a_host_that_is_not_granted_is_refused_before_connecting() {
    let engine = engine();
    let plugin = engine.load(&esx()).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let other_port = listener.local_addr().unwrap().port().wrapping_add(1);
    let granted = format!("127.0.0.1:{other_port}");

    for grants in [Grants::new(), Grants::new().allow_http_host(granted.clone())] {
        let outcome = engine.execute(&plugin, request(&address, grants)).await;
        assert_eq!(outcome.status, Status::Failed, "{outcome:?}");
        let error = outcome.error.unwrap_or_default();
        assert!(error.contains("request denied by the host"), "{error}");
        let engine_log: Vec<&str> = outcome.logs.iter().map(|l| l.message.as_str()).collect();
        assert!(
            engine_log.iter().any(|m| m.contains(&format!("outgoing HTTP to {address} refused"))),
            "{engine_log:?}"
        );
    }
    // Refused before any connection was made.
    assert_eq!(listener.accept().unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
}

/// A refused request whose body is too large to be written before the host
/// drops it: the plugin reports the refusal, not the cut-off body (which it
/// used to, now and then, with the esx plugin's small bodies too).
#[tokio::test]
async fn a_refused_request_says_so_even_when_its_body_was_cut_off() {
    let engine = engine();
    let plugin = engine.load(&common::plugin_bytes("fixture-http-post")).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let part = Part {
        label: "post".into(),
        targets: vec![address.clone()],
        payload: format!("{} http://{address}/", 8 << 20),
    };
    let request = ExecutionRequest::new("{}".to_string(), part)
        .limits(ExecutionLimits::with_timeout(Duration::from_secs(30)))
        .grants(Grants::new());
    let outcome = engine.execute(&plugin, request).await;
    assert_eq!(outcome.status, Status::Failed, "{outcome:?}");
    let error = outcome.error.unwrap_or_default();
    assert!(error.contains("request denied by the host"), "{error}");
    assert_eq!(
        listener.accept().unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "refused before connecting"
    );
}

#[tokio::test]
async fn a_request_to_a_granted_host_reaches_it() {
    let engine = engine();
    let plugin = engine.load(&esx()).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut request_line = String::new();
        reader.read_line(&mut request_line).unwrap();
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap() > 0 && line != "\r\n" {
            line.clear();
        }
        let mut stream = stream;
        stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .unwrap();
        request_line
    });
    // Granted by host name alone: any port of 127.0.0.1.
    let grants = Grants::new().allow_http_host("127.0.0.1");
    let outcome = engine.execute(&plugin, request(&address, grants)).await;
    assert_eq!(outcome.status, Status::Failed, "{outcome:?}");
    let error = outcome.error.unwrap_or_default();
    assert!(error.contains("answered HTTP 404"), "{error}");
    assert_eq!(server.join().unwrap().trim(), "POST /sdk HTTP/1.1");
}

#[tokio::test]
async fn a_plugin_importing_wasi_http_without_declaring_http_is_refused_at_load() {
    let engine = engine();
    let err = engine.load(&common::plugin_bytes("fixture-http-undeclared")).await.unwrap_err();
    assert!(matches!(err, LoadError::UnsupportedImport(_)), "{err}");
    let message = err.to_string();
    assert!(message.contains("wasi:http"), "{message}");
    assert!(message.contains("does not declare the `http` capability"), "{message}");
}
