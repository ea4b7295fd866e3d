//! A TCP proxy in front of MariaDB, for the tests that need MySQL to misbehave on cue: it
//! can cut every connection and refuse new ones (an outage, `faults.rs`), and it can hold
//! each reply of the server for a fixed time (a slow MySQL, `crash.rs`: a writer whose
//! commits take longer holds its entries read-and-unacked long enough for a kill to land
//! there every time, not by luck).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct MysqlProxy {
    pub port: u16,
    up: Arc<AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl MysqlProxy {
    /// Proxies to `target` (`host:port`); every chunk the server sends reaches the client
    /// `reply_delay` later (zero: passed on at once), so each round trip takes that much
    /// longer.
    pub async fn start(target: String, reply_delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        let up2 = up.clone();
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if !up2.load(Ordering::SeqCst) {
                    drop(client); // MySQL "unreachable": the connection closes at once
                    continue;
                }
                let mut cuts = cuts.clone();
                // A clone remembers the version its source saw: mark the cuts before this
                // connection as seen, or it would be cut at once.
                cuts.mark_unchanged();
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = relay(client, server, reply_delay) => {}
                        _ = cuts.changed() => {} // dropping both sockets cuts the link
                    }
                });
            }
        });
        MysqlProxy { port, up, cut }
    }

    /// `url` (a MySQL URL of the real server) pointed at this proxy instead.
    pub fn url_for(&self, url: &str) -> String {
        let mut url = url::Url::parse(url).unwrap();
        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(self.port)).unwrap();
        url.to_string()
    }

    /// Cuts every connection and refuses new ones until [`MysqlProxy::restore`].
    pub fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// The `host:port` of the MySQL server a URL names.
pub fn target_of(url: &str) -> String {
    let url = url::Url::parse(url).unwrap();
    format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(3306))
}

/// Copies both ways until either side closes; the server's chunks wait `reply_delay` each.
async fn relay(mut client: TcpStream, mut server: TcpStream, reply_delay: Duration) {
    if reply_delay.is_zero() {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        return;
    }
    let (mut client_read, mut client_write) = client.split();
    let (mut server_read, mut server_write) = server.split();
    let requests = tokio::io::copy(&mut client_read, &mut server_write);
    let replies = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = server_read.read(&mut buf).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(());
            }
            tokio::time::sleep(reply_delay).await;
            client_write.write_all(&buf[..n]).await?;
        }
    };
    tokio::select! {
        _ = requests => {}
        _ = replies => {}
    }
}
