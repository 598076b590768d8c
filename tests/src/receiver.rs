//! A webhook receiver for the tests: a real HTTP server on a loopback port
//! that checks each delivery's signature (HMAC-SHA256 over `t.body`, as a
//! subscriber would, without jobstack's code) and records what it received.
//! It can be stopped and started again on the same port.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// One delivery as received.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// `Jobstack-Event-Id`.
    pub id: i64,
    /// `Jobstack-Event`.
    pub kind: String,
    /// The body.
    pub body: serde_json::Value,
    /// Whether the signature held.
    pub verified: bool,
}

/// A running receiver; stopped when dropped.
pub struct Receiver {
    /// Where it listens.
    pub addr: SocketAddr,
    secret: String,
    received: Arc<Mutex<Vec<Delivery>>>,
    running: Option<(Arc<tiny_http::Server>, JoinHandle<()>)>,
}

impl Receiver {
    /// Start on a free loopback port, checking signatures with `secret`.
    pub fn start(secret: &str) -> Receiver {
        let mut receiver = Receiver {
            addr: "127.0.0.1:0".parse().unwrap(),
            secret: secret.to_string(),
            received: Arc::default(),
            running: None,
        };
        receiver.listen();
        receiver
    }

    /// The URL deliveries go to.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Stop listening: deliveries fail until [`Self::restart`].
    pub fn stop(&mut self) {
        if let Some((server, thread)) = self.running.take() {
            server.unblock();
            thread.join().unwrap();
        }
    }

    /// Listen again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.listen();
    }

    /// Everything received so far, in order (duplicates included).
    pub fn received(&self) -> Vec<Delivery> {
        self.received.lock().unwrap().clone()
    }

    fn listen(&mut self) {
        let server =
            Arc::new(tiny_http::Server::http(self.addr).expect("bind the webhook receiver"));
        self.addr = server.server_addr().to_ip().unwrap();
        let (srv, secret, received) = (server.clone(), self.secret.clone(), self.received.clone());
        let thread = std::thread::spawn(move || {
            for mut request in srv.incoming_requests() {
                let mut body = Vec::new();
                std::io::Read::read_to_end(request.as_reader(), &mut body).unwrap();
                let header = |name: &str| {
                    request
                        .headers()
                        .iter()
                        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
                        .map(|h| h.value.as_str().to_string())
                        .unwrap_or_default()
                };
                let delivery = Delivery {
                    id: header("Jobstack-Event-Id").parse().unwrap_or(-1),
                    kind: header("Jobstack-Event"),
                    verified: verify(&secret, &header("Jobstack-Signature"), &body),
                    body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
                };
                received.lock().unwrap().push(delivery);
                let _ = request.respond(tiny_http::Response::empty(200));
            }
        });
        self.running = Some((server, thread));
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether `header` (`t=…,v1=…`) signs `body` with `secret`.
fn verify(secret: &str, header: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut v1 = None;
    for field in header.split(',') {
        match field.split_once('=') {
            Some(("t", value)) => t = Some(value.to_string()),
            Some(("v1", value)) => v1 = hex::decode(value).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&v1).is_ok()
}
