//! A TCP forwarder between an agent and a daemon that a test can cut and
//! restore: the agent's network disconnection of the FusionInventory scenario,
//! on loopback. While cut, existing connections are shut down and new ones are
//! accepted and closed at once (the agent sees its calls fail).

use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A forwarder from a loopback port chosen at run time to `target`.
#[derive(Debug)]
pub struct Proxy {
    /// The URL to give the agent, e.g. `http://127.0.0.1:40000`.
    pub url: String,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    /// Forward to `target` (`host:port`).
    pub fn start(target: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().expect("proxy address"));
        let cut = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::new()));
        let target = target.to_string();
        let (cut2, open2) = (cut.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if cut2.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&target) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                if let Err(e) = forward(client, server, &open2) {
                    eprintln!("proxy: {e}");
                }
            }
        });
        Proxy { url, cut, open }
    }

    /// Disconnect: shut every open connection, refuse new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for stream in self.open.lock().expect("proxy lock").drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Reconnect.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// Copy both ways on two threads; remember the sockets so `cut` can close them.
fn forward(client: TcpStream, server: TcpStream, open: &Mutex<Vec<TcpStream>>) -> io::Result<()> {
    {
        let mut open = open.lock().expect("proxy lock");
        open.push(client.try_clone()?);
        open.push(server.try_clone()?);
    }
    let (mut c_read, mut c_write) = (client.try_clone()?, client);
    let (mut s_read, mut s_write) = (server.try_clone()?, server);
    std::thread::spawn(move || {
        let _ = io::copy(&mut c_read, &mut s_write);
        let _ = s_write.shutdown(Shutdown::Write);
    });
    std::thread::spawn(move || {
        let _ = io::copy(&mut s_read, &mut c_write);
        let _ = c_write.shutdown(Shutdown::Write);
    });
    Ok(())
}
