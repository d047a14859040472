//! A minimal SMTP server on loopback that stores what it receives: EHLO/HELO, MAIL FROM, RCPT TO,
//! DATA, RSET, NOOP, QUIT. Enough for a real SMTP conversation with lettre, nothing more.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One message as the sink received it.
#[derive(Clone, Debug)]
pub(crate) struct Received {
    pub(crate) mail_from: String,
    pub(crate) rcpt_to: Vec<String>,
    /// The DATA section, dot-unstuffed, with CRLF line ends.
    pub(crate) data: String,
}

/// How the sink behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Behaviour {
    Accept,
    /// RCPT TO gets `451 4.3.0` try again later.
    RcptTransient,
    /// RCPT TO gets `550 5.1.1` no such user (quoting an address, as real servers do).
    RcptPermanent,
    /// Reads the whole DATA section, then hangs up without replying: the message may have
    /// been accepted.
    HangUpAfterData,
    /// Reads the whole DATA section, then says nothing (for a minute): the client must give up
    /// on its own, not knowing whether the message was accepted.
    SilentAfterData,
}

pub(crate) struct SmtpSink {
    pub(crate) port: u16,
    pub(crate) received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SmtpSink {
    pub(crate) async fn start(rcpt: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind sink");
        let port = listener.local_addr().expect("addr").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let store = Arc::clone(&received);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    let _ = serve(stream, store, rcpt).await;
                });
            }
        });
        Self {
            port,
            received,
            task,
        }
    }

    pub(crate) fn messages(&self) -> Vec<Received> {
        self.received.lock().expect("sink lock").clone()
    }
}

async fn serve(
    stream: tokio::net::TcpStream,
    store: Arc<Mutex<Vec<Received>>>,
    rcpt: Behaviour,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write
        .write_all(b"220 sink.test ESMTP test sink\r\n")
        .await?;
    let mut mail_from = String::new();
    let mut rcpt_to = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_owned();
        let upper = cmd.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            write
                .write_all(b"250-sink.test greets you\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
                .await?;
        } else if upper.starts_with("HELO") {
            write.write_all(b"250 sink.test\r\n").await?;
        } else if upper.starts_with("MAIL FROM:") {
            mail_from = cmd[10..].trim().to_owned();
            rcpt_to.clear();
            write.write_all(b"250 2.1.0 Ok\r\n").await?;
        } else if upper.starts_with("RCPT TO:") {
            match rcpt {
                Behaviour::Accept | Behaviour::HangUpAfterData | Behaviour::SilentAfterData => {
                    rcpt_to.push(cmd[8..].trim().to_owned());
                    write.write_all(b"250 2.1.5 Ok\r\n").await?;
                }
                Behaviour::RcptTransient => {
                    write.write_all(b"451 4.3.0 Try again later\r\n").await?;
                }
                Behaviour::RcptPermanent => {
                    write
                        .write_all(b"550 5.1.1 <someone@example.test>: no such user\r\n")
                        .await?;
                }
            }
        } else if upper == "DATA" {
            write
                .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                .await?;
            let mut data = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                let unstuffed = line.strip_prefix('.').filter(|_| line.starts_with(".."));
                data.push_str(unstuffed.unwrap_or(&line));
            }
            store.lock().expect("sink lock").push(Received {
                mail_from: mail_from.clone(),
                rcpt_to: rcpt_to.clone(),
                data,
            });
            if rcpt == Behaviour::HangUpAfterData {
                return Ok(());
            }
            if rcpt == Behaviour::SilentAfterData {
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                return Ok(());
            }
            write.write_all(b"250 2.0.0 Ok: queued\r\n").await?;
        } else if upper == "RSET" || upper == "NOOP" {
            write.write_all(b"250 2.0.0 Ok\r\n").await?;
        } else if upper == "QUIT" {
            write.write_all(b"221 2.0.0 Bye\r\n").await?;
            return Ok(());
        } else {
            write
                .write_all(b"502 5.5.2 Command not implemented\r\n")
                .await?;
        }
    }
}

impl Received {
    /// The value of a header, unfolded.
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or("");
        let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
        let prefix = format!("{}:", name.to_ascii_lowercase());
        unfolded
            .split("\r\n")
            .find(|l| l.to_ascii_lowercase().starts_with(&prefix))
            .map(|l| l[prefix.len()..].trim().to_owned())
    }
}

/// Decodes quoted-printable (soft breaks and `=XX`), enough to read lettre's bodies.
pub(crate) fn decode_qp(text: &str) -> String {
    let joined = text.replace("=\r\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
