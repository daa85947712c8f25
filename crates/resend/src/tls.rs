//! TLS replay: connect mode over TLS ([`TlsSender`]). Each send opens a
//! fresh TCP connection to the target, makes a TLS handshake with rustls
//! (the `ring` provider), writes the payload as application data and reads
//! the decrypted reply until the server closes, the wait passes, or
//! [`MAX_REPLY_BYTES`]. Nothing is written before the handshake has
//! succeeded, so a refused certificate sends nothing in clear.
//!
//! Trust: the certificates of a PEM file ([`TlsOptions::ca`]), else the
//! system's roots (`rustls-native-certs`: the same store as OpenSSL and curl
//! on the machine, `SSL_CERT_FILE`/`SSL_CERT_DIR` honoured), or none at all
//! with [`TlsOptions::insecure`] (handshake signatures are still checked).
//! The name checked and sent as SNI: [`TlsOptions::sni`], else the target's
//! IP address (checked against the certificate's IP addresses; no SNI sent).

use crate::send::{os_error, tcp_connect, SendError, Sender, Sent};
use crate::{ErrorKind, ReplyInfo, Target, TlsOptions, TlsSession};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The most reply bytes one TLS send reads (1 MiB); the rest is left unread.
pub use crate::wire::MAX_REPLY_BYTES;

/// The server name to verify and send, from `--sni` (a DNS name, or an IP address).
pub fn server_name(name: &str) -> Result<ServerName<'static>, SendError> {
    ServerName::try_from(name.trim().to_string()).map_err(|e| {
        SendError::new(ErrorKind::Tls, format!("{name:?} is not a server name (a DNS name or an IP address): {e}"))
    })
}

/// Where the trusted certificates come from, for error messages.
fn trust_label(o: &TlsOptions) -> String {
    match (&o.ca, &o.ca_pem) {
        (Some(ca), _) => format!("the CA file {}", ca.display()),
        (None, Some(_)) => "the CA certificates given (ca_pem)".into(),
        (None, None) => "the system's root certificates".into(),
    }
}

fn cert_error(message: String, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> SendError {
    SendError::new(ErrorKind::Certificate, message).with_source(io::Error::new(io::ErrorKind::InvalidData, e))
}

/// The roots to trust: the PEM file's certificates, or the system's.
fn roots(o: &TlsOptions) -> Result<RootCertStore, SendError> {
    let mut store = RootCertStore::empty();
    let given = match (&o.ca, &o.ca_pem) {
        (Some(path), _) => Some(
            CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| cert_error(format!("cannot read the CA file {}: {e}", path.display()), e))?,
        ),
        (None, Some(pem)) => Some(
            CertificateDer::pem_slice_iter(pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| cert_error(format!("cannot read ca_pem: {e}"), e))?,
        ),
        (None, None) => None,
    };
    match given {
        Some(certs) => {
            let what = trust_label(o).replacen("the ", "", 1);
            if certs.is_empty() {
                return Err(SendError::new(
                    ErrorKind::Certificate,
                    format!("{what} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"),
                ));
            }
            for c in certs {
                store
                    .add(c)
                    .map_err(|e| cert_error(format!("{what} holds a certificate rustls cannot use: {e}"), e))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found.errors.first().map_or("none found".to_string(), |e| e.to_string());
                return Err(SendError::new(
                    ErrorKind::Certificate,
                    format!("no system root certificates to trust ({why}); give --ca FILE, or --insecure"),
                ));
            }
        }
    }
    Ok(store)
}

/// Accepts any certificate (`insecure`); still checks that the server holds
/// the key of the certificate it sent (handshake signatures).
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The client configuration for `o` (roots read now: a bad CA file fails here).
pub fn client_config(o: &TlsOptions) -> Result<Arc<ClientConfig>, SendError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| SendError::new(ErrorKind::Tls, format!("TLS configuration: {e}")))?;
    let config = if o.insecure {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerification(provider))).with_no_client_auth()
    } else {
        builder.with_root_certificates(roots(o)?).with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// A TLS client connection per send (see the module doc).
pub struct TlsSender {
    t: Target,
    timeout: Duration,
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    sni: Option<String>,
    opts: TlsOptions,
}

impl TlsSender {
    /// Check the options and read the trusted certificates; connects at each send.
    pub fn open(t: &Target, timeout: Duration, opts: &TlsOptions) -> Result<TlsSender, SendError> {
        let (name, sni) = match &opts.sni {
            Some(n) => {
                let name = server_name(n)?;
                let sni = matches!(name, ServerName::DnsName(_)).then(|| n.trim().to_string());
                (name, sni)
            }
            None => (ServerName::IpAddress(t.remote.ip().into()), None),
        };
        Ok(TlsSender { t: t.clone(), timeout, config: client_config(opts)?, name, sni, opts: opts.clone() })
    }

    fn name_label(&self) -> String {
        match &self.name {
            ServerName::DnsName(n) => n.as_ref().to_string(),
            ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
            other => format!("{other:?}"),
        }
    }

    /// Why the handshake (or the session) failed, from the error rustls or the socket gave.
    fn failure(&self, stage: &str, e: io::Error) -> SendError {
        let to = self.t.remote;
        let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()).cloned();
        let (kind, message) = match inner {
            Some(rustls::Error::InvalidCertificate(c)) => {
                let why = match c {
                    CertificateError::UnknownIssuer => format!(
                        "unknown issuer: it is not signed by {} (give --ca FILE with the CA that signed it, or \
                         --insecure)",
                        trust_label(&self.opts)
                    ),
                    CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                        match self.name {
                            ServerName::IpAddress(_) if self.opts.sni.is_none() => format!(
                                "name mismatch: it is not valid for the IP address {} (a record keeps no server \
                                 name: give --sni with the server's name)",
                                self.name_label()
                            ),
                            _ => format!(
                                "name mismatch: it is not valid for {} (give --sni with a name it names)",
                                self.name_label()
                            ),
                        }
                    }
                    CertificateError::Expired | CertificateError::ExpiredContext { .. } => "it has expired".into(),
                    CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                        "it is not valid yet".into()
                    }
                    CertificateError::Revoked => "it is revoked".into(),
                    other => format!("{other:?}"),
                };
                (ErrorKind::Certificate, format!("TLS handshake with {to}: the server's certificate is refused: {why}"))
            }
            Some(rustls::Error::AlertReceived(a)) => {
                (ErrorKind::Tls, format!("TLS {stage} with {to}: refused by the server (TLS alert {a:?})"))
            }
            Some(other) => (ErrorKind::Tls, format!("TLS {stage} with {to} failed: {other}")),
            None if e.kind() == io::ErrorKind::UnexpectedEof
                || (stage == "handshake" && e.kind() == io::ErrorKind::ConnectionReset) =>
            {
                (
                    ErrorKind::Tls,
                    format!(
                        "TLS {stage} with {to}: the server closed the connection (does it speak TLS on this port?)"
                    ),
                )
            }
            None if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                (ErrorKind::Timeout, format!("TLS {stage} with {to}: no answer within {:?}", self.timeout))
            }
            None => return os_error(&format!("TLS {stage} with {to}"), e),
        };
        SendError::new(kind, message).with_source(e)
    }

    fn session(&self, c: &ClientConnection) -> TlsSession {
        TlsSession {
            version: c.protocol_version().map_or("?".into(), |v| format!("{v:?}")),
            cipher: c.negotiated_cipher_suite().map_or("?".into(), |s| format!("{:?}", s.suite())),
            sni: self.sni.clone(),
            verified: !self.opts.insecure,
        }
    }
}

/// Read the decrypted reply until the server closes, `wait` has passed, or the cap.
fn read_reply(s: &mut rustls::StreamOwned<ClientConnection, TcpStream>, wait: Duration) -> io::Result<Vec<u8>> {
    let deadline = Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    while got.len() <= MAX_REPLY_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        s.sock.set_read_timeout(Some(left))?;
        match s.read(&mut buf) {
            Ok(0) => break, // close_notify
            // One byte past the cap says the reply was cut.
            Ok(n) => got.extend_from_slice(&buf[..n.min(MAX_REPLY_BYTES + 1 - got.len())]),
            // Closed without close_notify (many servers): the reply is what came.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            // The wait is over, or a stop (SIGINT/SIGTERM) cut it short.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                ) =>
            {
                break
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset && !got.is_empty() => break,
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

impl Sender for TlsSender {
    fn send(&mut self, payload: &[u8], wait: Duration) -> Result<Sent, SendError> {
        let mut tcp = tcp_connect(&self.t, self.timeout)?;
        let mut conn = ClientConnection::new(self.config.clone(), self.name.clone())
            .map_err(|e| SendError::new(ErrorKind::Tls, format!("TLS client: {e}")))?;
        tcp.set_read_timeout(Some(self.timeout)).map_err(|e| os_error("socket", e))?;
        tcp.set_write_timeout(Some(self.timeout)).map_err(|e| os_error("socket", e))?;
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp).map_err(|e| self.failure("handshake", e))?;
        }
        let session = self.session(&conn);
        let mut s = rustls::StreamOwned::new(conn, tcp);
        s.write_all(payload).and_then(|_| s.flush()).map_err(|e| self.failure("send", e))?;
        let mut reply = read_reply(&mut s, wait).map_err(|e| self.failure("receive", e))?;
        s.conn.send_close_notify();
        let _ = s.conn.complete_io(&mut s.sock);
        let truncated = reply.len() > MAX_REPLY_BYTES;
        reply.truncate(MAX_REPLY_BYTES);
        let mut info = ReplyInfo::new(&reply);
        info.truncated = truncated;
        info.text = Some(pidcap_packet::ascii::escape(&reply));
        info.tls = Some(session);
        Ok(Sent { bytes: payload.len(), reply: Some(info) })
    }

    fn describe(&self) -> String {
        let sni = self.sni.as_deref().map_or("no SNI".to_string(), |s| format!("SNI {s}"));
        let trust = if self.opts.insecure { "certificate NOT verified".into() } else { trust_label(&self.opts) };
        format!("TLS to {} ({sni}; {trust})", self.t.remote)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked_before_connecting() {
        assert!(server_name("example.org").is_ok());
        assert!(matches!(server_name("127.0.0.1").unwrap(), ServerName::IpAddress(_)));
        assert!(server_name("not a name!").unwrap_err().message.contains("not a server name"));
        let missing = TlsOptions { ca: Some("/nonexistent/ca.pem".into()), ..Default::default() };
        let e = client_config(&missing).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Certificate);
        assert!(e.message.contains("/nonexistent/ca.pem"), "{}", e.message);
        assert!(std::error::Error::source(&e).is_some(), "the cause is kept");
        let dir = std::env::temp_dir().join(format!("pidcap-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = client_config(&TlsOptions { ca: Some(empty), ..Default::default() }).unwrap_err();
        assert!(e.message.contains("holds no PEM certificate"), "{}", e.message);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(client_config(&TlsOptions { insecure: true, ..Default::default() }).is_ok());
    }
}
