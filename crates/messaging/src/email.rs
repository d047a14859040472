//! Email over SMTP (lettre): multipart plain text + HTML, from the practice's name and address,
//! through the practice's own SMTP server.

use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::{AsyncSmtpTransportBuilder, Error as LettreSmtpError};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};

use crate::error::{Error, Result, SmtpFailure};
use crate::ids::{EmailAddress, EmailMessageId};
use crate::templates::RenderedEmail;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

/// How the SMTP connection is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS, which is required (usually port 587).
    StartTls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
    /// No encryption. Refused unless the host is loopback: for local test sinks and the sandbox
    /// only (HIPAA requires encryption in transit).
    None,
}

/// One practice's SMTP server.
#[derive(Clone)]
pub struct SmtpConfig {
    /// Host name (also the name TLS verifies).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Connection security.
    pub security: SmtpSecurity,
    /// User name and password, when the server wants AUTH.
    pub credentials: Option<(String, SecretString)>,
    /// Timeout for each network operation.
    pub timeout: Duration,
}

impl SmtpConfig {
    /// A configuration without credentials and a 20 s timeout.
    pub fn new(host: impl Into<String>, port: u16, security: SmtpSecurity) -> Self {
        Self {
            host: host.into(),
            port,
            security,
            credentials: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Adds AUTH credentials.
    pub fn with_credentials(mut self, user: impl Into<String>, password: SecretString) -> Self {
        self.credentials = Some((user.into(), password));
        self
    }

    fn is_loopback(&self) -> bool {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

impl fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "<redacted>"),
            )
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The practice's name and address, the `From` of every email.
#[derive(Clone, PartialEq, Eq)]
pub struct EmailFrom {
    /// Display name (`Bright Smiles Dental`).
    pub name: String,
    /// Address.
    pub address: EmailAddress,
}

impl fmt::Debug for EmailFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailFrom")
            .field("name", &self.name)
            .field("domain", &self.address.domain())
            .finish()
    }
}

/// Sends one practice's email. Connections are pooled; cheap to share behind an `Arc`.
pub struct EmailSender {
    builder: AsyncSmtpTransportBuilder,
    from: Mailbox,
    domain: String,
    /// The whole conversation's deadline (twice the configured timeout): lettre's timeout covers
    /// the connection, not the wait for the server's answer to DATA.
    deadline: std::time::Duration,
    // Built on first use: lettre's pool spawns a task, which needs a running Tokio runtime.
    transport: OnceLock<AsyncSmtpTransport<Tokio1Executor>>,
}

impl fmt::Debug for EmailSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailSender")
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

/// lettre's error, reduced to what can be classified without keeping the server's reply text
/// (which quotes addresses).
fn smtp_failure(e: &LettreSmtpError) -> SmtpFailure {
    if let Some(code) = e.status() {
        let code = u16::from(code);
        return if e.is_transient() {
            SmtpFailure::TransientReply { code }
        } else {
            SmtpFailure::PermanentReply { code }
        };
    }
    if e.is_tls() {
        return SmtpFailure::Tls;
    }
    if e.is_client() || e.is_transport_shutdown() {
        return SmtpFailure::Client;
    }
    // lettre does not expose "could not connect" other than through its Debug (`kind:
    // Connection`); that case is safe to retry, while a network error mid-conversation may come
    // after the server accepted the message. Tested in tests/it/email.rs.
    if format!("{e:?}").contains("kind: Connection") {
        SmtpFailure::Connect
    } else {
        SmtpFailure::Conversation
    }
}

impl EmailSender {
    /// A sender for one practice.
    ///
    /// # Errors
    /// [`Error::Config`] (permanent) for [`SmtpSecurity::None`] on a host that is not loopback,
    /// or a host name TLS cannot use.
    pub fn new(config: &SmtpConfig, from: EmailFrom) -> Result<Self> {
        let builder = match config.security {
            SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&config.host),
            SmtpSecurity::StartTls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&config.host)
            }
            SmtpSecurity::None if config.is_loopback() => Ok(
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host),
            ),
            SmtpSecurity::None => {
                return Err(Error::Config {
                    reason: "unencrypted SMTP is only allowed to a loopback host".into(),
                });
            }
        }
        .map_err(|_| Error::Config {
            reason: "SMTP host name unusable for TLS".into(),
        })?;
        let mut builder = builder.port(config.port).timeout(Some(config.timeout));
        if let Some((user, password)) = &config.credentials {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.expose_secret().to_owned(),
            ));
        }
        let address = from
            .address
            .as_str()
            .parse::<lettre::Address>()
            .map_err(|_| Error::Config {
                reason: "sender address is not an email address".into(),
            })?;
        Ok(Self {
            builder,
            from: Mailbox::new(Some(from.name), address),
            domain: from.address.domain().to_owned(),
            deadline: config.timeout.saturating_mul(2),
            transport: OnceLock::new(),
        })
    }

    /// Sends a rendered email to one recipient and returns its `Message-ID`.
    ///
    /// Must be called from within a Tokio runtime.
    ///
    /// # Errors
    /// [`Error::Smtp`]:
    /// - Transient: a 4xx reply, or no connection could be opened.
    /// - Indeterminate: the connection broke or timed out mid-conversation, or the whole
    ///   conversation took over twice the configured timeout; the server may have accepted the
    ///   message. There is no lookup for SMTP: the caller decides whether a
    ///   possible duplicate email is acceptable.
    /// - Permanent: a 5xx reply (the recipient refused), TLS failure, or a message lettre
    ///   refuses to build.
    pub async fn send(&self, to: &EmailAddress, email: &RenderedEmail) -> Result<EmailMessageId> {
        let id = EmailMessageId::new(format!("<{}@{}>", uuid::Uuid::new_v4(), self.domain));
        self.send_as(to, email, id).await
    }

    /// The stable `Message-ID` of the message with idempotency key `key` (the same for every
    /// attempt): a receiving system that deduplicates by `Message-ID` sees one message, and the
    /// id names no patient.
    pub fn message_id_for(&self, key: &str) -> EmailMessageId {
        let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, key.as_bytes());
        EmailMessageId::new(format!("<{}@{}>", id.simple(), self.domain))
    }

    /// As [`Self::send`], with the stable `Message-ID` of `key` ([`Self::message_id_for`]).
    ///
    /// # Errors
    /// As [`Self::send`].
    pub async fn send_keyed(
        &self,
        to: &EmailAddress,
        email: &RenderedEmail,
        key: &str,
    ) -> Result<EmailMessageId> {
        self.send_as(to, email, self.message_id_for(key)).await
    }

    async fn send_as(
        &self,
        to: &EmailAddress,
        email: &RenderedEmail,
        id: EmailMessageId,
    ) -> Result<EmailMessageId> {
        let to = to
            .as_str()
            .parse::<lettre::Address>()
            .map_err(|_| Error::Smtp {
                failure: SmtpFailure::Client,
            })?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, to))
            .subject(email.subject.clone())
            .message_id(Some(id.as_str().to_owned()))
            .multipart(MultiPart::alternative_plain_html(
                email.text.clone(),
                email.html.clone(),
            ))
            .map_err(|_| Error::Smtp {
                failure: SmtpFailure::Client,
            })?;
        let transport = self
            .transport
            .get_or_init(|| self.builder.clone().build::<Tokio1Executor>());
        let sent = tokio::time::timeout(self.deadline, transport.send(message)).await;
        let Ok(sent) = sent else {
            // Cut mid-conversation: the server may have accepted the message.
            let err = Error::Smtp {
                failure: SmtpFailure::Conversation,
            };
            tracing::warn!(message_id = %id, kind = %err.kind(), "email send timed out");
            return Err(err);
        };
        match sent {
            Ok(_) => {
                tracing::info!(message_id = %id, "email sent");
                Ok(id)
            }
            Err(e) => {
                let failure = smtp_failure(&e);
                let err = Error::Smtp { failure };
                tracing::warn!(message_id = %id, kind = %err.kind(), error = %err, "email failed");
                Err(err)
            }
        }
    }
}
