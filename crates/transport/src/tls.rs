//! Encrypted, mutually authenticated connections: TLS 1.3 (rustls, `ring` provider)
//! under the cohort handshake.
//!
//! A cluster has one set of credentials, [`ClusterTls`]: a CA certificate every
//! process trusts, and a node certificate with its key that every process presents.
//! Both ends of every connection verify that the other's certificate chains to the
//! cluster CA (mutual TLS), and the certificates name the fixed server name
//! [`SERVER_NAME`] rather than an address, so hosts, ports and tunnels do not matter.
//! A peer without a certificate signed by the cluster CA fails the TLS handshake
//! before it can send a byte of the cohort protocol.
//!
//! [`ClusterTls::generate`] makes fresh credentials (a CA whose key is discarded as
//! soon as it has signed the node certificate); [`ClusterTls::from_pem`] and
//! [`ClusterTls::from_files`] load the user's. The master hands them to each worker
//! it launches over the worker's stdin, after the cookie line, as a
//! [bundle](ClusterTls::bundle) — never on a command line.
//!
//! ```
//! # async fn demo() -> std::io::Result<()> {
//! use cohort_transport::{tls::ClusterTls, Connection};
//! let tls = ClusterTls::generate().unwrap();
//! let (a, b) = tokio::io::duplex(4096);
//! let (ar, aw) = tokio::io::split(a);
//! let (br, bw) = tokio::io::split(b);
//! let client = Connection::new(Box::new(ar), Box::new(aw), "server");
//! let server = Connection::new(Box::new(br), Box::new(bw), "client");
//! let (c, s) = tokio::join!(tls.wrap_client(client), tls.wrap_server(server));
//! let (_c, _s) = (c?, s?);
//! # Ok(()) }
//! ```

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::stream::{BoxedReader, BoxedWriter, Connection};

/// The name every cluster certificate carries (as a DNS subject alternative name),
/// and the name each connecting side expects the other to present.
///
/// ```
/// assert_eq!(cohort_transport::tls::SERVER_NAME, "cohort-cluster");
/// ```
pub const SERVER_NAME: &str = "cohort-cluster";

/// The worker flag that tells a launched worker a TLS [bundle](ClusterTls::bundle)
/// follows the cookie line on its stdin.
///
/// ```
/// assert_eq!(cohort_transport::tls::TLS_STDIN_FLAG, "--tls-stdin");
/// ```
pub const TLS_STDIN_FLAG: &str = "--tls-stdin";

/// How long a TLS handshake may take before the connection is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

const CA_MARK: &str = "cohort-tls-ca";
const CERT_MARK: &str = "cohort-tls-cert";
const KEY_MARK: &str = "cohort-tls-key";
/// The line that ends a bundle.
const END_MARK: &str = "cohort-tls-end";

/// Why cluster credentials could not be made or loaded.
///
/// ```
/// use cohort_transport::tls::{ClusterTls, PemProblem, TlsError};
/// let e = ClusterTls::from_bundle("nonsense").unwrap_err();
/// assert!(matches!(e, TlsError::Pem { problem: PemProblem::NotABundle, .. }));
/// ```
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TlsError {
    /// Generating the CA or the node certificate failed.
    #[error("cannot generate the cluster certificates: {0}")]
    Generate(#[source] rcgen::Error),
    /// A PEM input held no usable certificate or key.
    #[error("bad {what}: {problem}")]
    Pem {
        /// Which input (CA certificate, node certificate, node key, TLS bundle).
        what: &'static str,
        /// What was wrong with it.
        #[source]
        problem: PemProblem,
    },
    /// A credentials file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// rustls refused a CA certificate as a trust anchor.
    #[error("the CA certificate was refused: {0}")]
    Ca(#[source] rustls::Error),
    /// The client-certificate verifier could not be built from the CA certificates.
    #[error("cannot verify client certificates with the cluster CA: {0}")]
    Verifier(#[source] rustls::server::VerifierBuilderError),
    /// rustls refused the credentials (a key that does not match the certificate…).
    #[error("the TLS credentials were refused: {0}")]
    Config(#[source] rustls::Error),
}

/// What was wrong with a PEM input ([`TlsError::Pem`]).
///
/// ```
/// use cohort_transport::tls::{ClusterTls, PemProblem, TlsError};
/// let ok = ClusterTls::generate().unwrap();
/// let e = ClusterTls::from_pem("", ok.cert_pem(), ok.key_pem()).unwrap_err();
/// assert!(matches!(e, TlsError::Pem { what: "CA certificate", problem: PemProblem::NoCertificate }));
/// ```
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PemProblem {
    /// The text is not valid PEM (or holds no private key, for a key input).
    #[error("{0}")]
    Parse(#[source] rustls::pki_types::pem::Error),
    /// The text holds no certificate.
    #[error("no certificate found")]
    NoCertificate,
    /// The text is not a [bundle](ClusterTls::bundle): a CA, certificate or key
    /// section is missing.
    #[error("expected CA, certificate and key sections")]
    NotABundle,
}

/// A cluster's TLS credentials: the CA certificate every process trusts, and the node
/// certificate chain and key every process presents. Cheap to clone.
///
/// ```
/// let tls = cohort_transport::tls::ClusterTls::generate().unwrap();
/// let again = cohort_transport::tls::ClusterTls::from_bundle(tls.bundle()).unwrap();
/// assert_eq!(again.ca_pem(), tls.ca_pem());
/// ```
#[derive(Clone)]
pub struct ClusterTls {
    inner: Arc<Inner>,
}

struct Inner {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
    bundle: String,
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("ClusterTls").finish_non_exhaustive()
    }
}

fn pem_err(what: &'static str) -> impl Fn(PemProblem) -> TlsError {
    move |problem| TlsError::Pem { what, problem }
}

fn pem_parse(what: &'static str) -> impl Fn(rustls::pki_types::pem::Error) -> TlsError {
    move |e| pem_err(what)(PemProblem::Parse(e))
}

impl ClusterTls {
    /// Fresh credentials: a new CA (ECDSA P-256) signs one node certificate for
    /// [`SERVER_NAME`], valid for both TLS server and client authentication. The CA's
    /// key is dropped once it has signed, so no process holds it.
    ///
    /// # Errors
    /// [`TlsError::Generate`] if key generation or signing fails.
    ///
    /// ```
    /// let tls = cohort_transport::tls::ClusterTls::generate().unwrap();
    /// assert!(tls.ca_pem().contains("BEGIN CERTIFICATE"));
    /// ```
    pub fn generate() -> Result<Self, TlsError> {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
            KeyUsagePurpose,
        };
        let g = TlsError::Generate;
        let ca_key = KeyPair::generate().map_err(g)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(g)?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "cohort cluster CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = ca_params.self_signed(&ca_key).map_err(g)?;

        let node_key = KeyPair::generate().map_err(g)?;
        let mut params = CertificateParams::new(vec![SERVER_NAME.to_string()]).map_err(g)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "cohort cluster node");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let node = params.signed_by(&node_key, &ca, &ca_key).map_err(g)?;
        Self::from_pem(&ca.pem(), &node.pem(), &node_key.serialize_pem())
    }

    /// Credentials from PEM text: the CA certificate(s) to trust, the node
    /// certificate (chain, leaf first) and its private key (PKCS#8, PKCS#1 or SEC1).
    /// The node certificate must name [`SERVER_NAME`] as a DNS subject alternative
    /// name and allow both server and client authentication, since every process
    /// both accepts and opens connections with it.
    ///
    /// # Errors
    /// [`TlsError::Pem`] if an input holds no certificate or key;
    /// [`TlsError::Ca`] or [`TlsError::Verifier`] if the CA certificate cannot serve
    /// as the trust anchor; [`TlsError::Config`] if rustls refuses the node
    /// credentials (say, the key does not match).
    ///
    /// ```
    /// use cohort_transport::tls::ClusterTls;
    /// let a = ClusterTls::generate().unwrap();
    /// let b = ClusterTls::from_pem(a.ca_pem(), a.cert_pem(), a.key_pem()).unwrap();
    /// assert_eq!(a.cert_pem(), b.cert_pem());
    /// assert!(ClusterTls::from_pem("", a.cert_pem(), a.key_pem()).is_err());
    /// ```
    pub fn from_pem(ca: &str, cert: &str, key: &str) -> Result<Self, TlsError> {
        let cas = CertificateDer::pem_slice_iter(ca.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(pem_parse("CA certificate"))?;
        if cas.is_empty() {
            return Err(pem_err("CA certificate")(PemProblem::NoCertificate));
        }
        let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(pem_parse("node certificate"))?;
        if chain.is_empty() {
            return Err(pem_err("node certificate")(PemProblem::NoCertificate));
        }
        let key_der =
            PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(pem_parse("node key"))?;

        let mut roots = RootCertStore::empty();
        for c in cas {
            roots.add(c).map_err(TlsError::Ca)?;
        }
        let roots = Arc::new(roots);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = TlsError::Config;

        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(TlsError::Verifier)?;
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(cfg)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key_der.clone_key())
            .map_err(cfg)?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(cfg)?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key_der)
            .map_err(cfg)?;

        let bundle = format!(
            "{CA_MARK}\n{}\n{CERT_MARK}\n{}\n{KEY_MARK}\n{}\n{END_MARK}\n",
            ca.trim_end(),
            cert.trim_end(),
            key.trim_end()
        );
        Ok(ClusterTls {
            inner: Arc::new(Inner {
                ca_pem: ca.to_string(),
                cert_pem: cert.to_string(),
                key_pem: key.to_string(),
                bundle,
                client: Arc::new(client),
                server: Arc::new(server),
            }),
        })
    }

    /// Credentials from three PEM files, as [`from_pem`](Self::from_pem).
    ///
    /// # Errors
    /// [`TlsError::Read`] if a file cannot be read; otherwise as
    /// [`from_pem`](Self::from_pem).
    ///
    /// ```
    /// let e = cohort_transport::tls::ClusterTls::from_files("/nonexistent/ca.pem", "c", "k");
    /// assert!(e.is_err());
    /// ```
    pub fn from_files(
        ca: impl AsRef<Path>,
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, TlsError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| TlsError::Read {
                path: p.to_path_buf(),
                source,
            })
        };
        Self::from_pem(
            &read(ca.as_ref())?,
            &read(cert.as_ref())?,
            &read(key.as_ref())?,
        )
    }

    /// Credentials from a [bundle](Self::bundle) (as a worker receives them).
    ///
    /// # Errors
    /// [`TlsError::Pem`] if the text is not a bundle; otherwise as
    /// [`from_pem`](Self::from_pem).
    ///
    /// ```
    /// assert!(cohort_transport::tls::ClusterTls::from_bundle("nonsense").is_err());
    /// ```
    pub fn from_bundle(bundle: &str) -> Result<Self, TlsError> {
        let mut parts: [String; 3] = Default::default();
        let mut section: Option<usize> = None;
        let mut seen = [false; 3];
        for line in bundle.lines() {
            match line.trim() {
                CA_MARK => section = Some(0),
                CERT_MARK => section = Some(1),
                KEY_MARK => section = Some(2),
                END_MARK => break,
                _ => {
                    if let Some(i) = section {
                        parts[i].push_str(line);
                        parts[i].push('\n');
                    }
                    continue;
                }
            }
            if let Some(i) = section {
                seen[i] = true;
            }
        }
        if seen != [true; 3] {
            return Err(pem_err("TLS bundle")(PemProblem::NotABundle));
        }
        Self::from_pem(&parts[0], &parts[1], &parts[2])
    }

    /// The credentials as one text: marked sections for the CA certificate, the node
    /// certificate and the node key, ending with a `cohort-tls-end` line. This is what
    /// a launched worker reads from stdin after the cookie, and what
    /// `cohort-worker --tls-bundle FILE` reads. It holds the node's private key: keep
    /// it as secret as the cookie.
    ///
    /// ```
    /// let tls = cohort_transport::tls::ClusterTls::generate().unwrap();
    /// assert!(tls.bundle().ends_with("cohort-tls-end\n"));
    /// ```
    pub fn bundle(&self) -> &str {
        &self.inner.bundle
    }

    /// The trusted CA certificate(s), PEM.
    ///
    /// ```
    /// let tls = cohort_transport::tls::ClusterTls::generate().unwrap();
    /// assert!(tls.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    /// ```
    pub fn ca_pem(&self) -> &str {
        &self.inner.ca_pem
    }

    /// The node certificate chain, PEM.
    ///
    /// ```
    /// let tls = cohort_transport::tls::ClusterTls::generate().unwrap();
    /// assert!(tls.cert_pem().contains("BEGIN CERTIFICATE"));
    /// ```
    pub fn cert_pem(&self) -> &str {
        &self.inner.cert_pem
    }

    /// The node private key, PEM.
    ///
    /// ```
    /// let tls = cohort_transport::tls::ClusterTls::generate().unwrap();
    /// assert!(tls.key_pem().contains("PRIVATE KEY"));
    /// ```
    pub fn key_pem(&self) -> &str {
        &self.inner.key_pem
    }

    /// Runs the TLS handshake as the connecting side over `conn` and returns the
    /// encrypted connection. The other side must present a certificate for
    /// [`SERVER_NAME`] signed by the cluster CA.
    ///
    /// # Errors
    /// The handshake's error (`InvalidData` for a certificate that does not verify),
    /// or `TimedOut` after 30 s.
    ///
    /// # Cancel safety
    /// Not cancel-safe: `conn` is moved in, and a handshake dropped before it
    /// completes drops it, closing the connection (the peer's handshake fails).
    ///
    /// ```
    /// # async fn demo(conn: cohort_transport::Connection) -> std::io::Result<()> {
    /// let tls = cohort_transport::tls::ClusterTls::generate().unwrap();
    /// let _encrypted = tls.wrap_client(conn).await?;
    /// # Ok(()) }
    /// ```
    pub async fn wrap_client(&self, conn: Connection) -> io::Result<Connection> {
        let Connection {
            reader,
            writer,
            peer,
        } = conn;
        let name = ServerName::try_from(SERVER_NAME).expect("a valid DNS name");
        let connector = TlsConnector::from(self.inner.client.clone());
        let stream = timed(connector.connect(name, Joined { reader, writer })).await?;
        let (r, w) = tokio::io::split(stream);
        Ok(Connection::new(Box::new(r), Box::new(w), peer))
    }

    /// Runs the TLS handshake as the accepting side over `conn` and returns the
    /// encrypted connection. The other side must present a client certificate
    /// signed by the cluster CA.
    ///
    /// # Errors
    /// The handshake's error (a peer with no or a foreign certificate, or one that
    /// does not speak TLS), or `TimedOut` after 30 s.
    ///
    /// # Cancel safety
    /// Not cancel-safe, as [`wrap_client`](Self::wrap_client): a dropped handshake
    /// closes `conn`.
    ///
    /// ```
    /// # async fn demo(conn: cohort_transport::Connection) -> std::io::Result<()> {
    /// let tls = cohort_transport::tls::ClusterTls::generate().unwrap();
    /// let _encrypted = tls.wrap_server(conn).await?;
    /// # Ok(()) }
    /// ```
    pub async fn wrap_server(&self, conn: Connection) -> io::Result<Connection> {
        let Connection {
            reader,
            writer,
            peer,
        } = conn;
        let acceptor = TlsAcceptor::from(self.inner.server.clone());
        let stream = timed(acceptor.accept(Joined { reader, writer })).await?;
        let (r, w) = tokio::io::split(stream);
        Ok(Connection::new(Box::new(r), Box::new(w), peer))
    }
}

async fn timed<T>(f: impl std::future::Future<Output = io::Result<T>>) -> io::Result<T> {
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, f).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "TLS handshake timed out",
        )),
    }
}

/// A connection's two halves as one stream, for rustls.
struct Joined {
    reader: BoxedReader,
    writer: BoxedWriter,
}

impl AsyncRead for Joined {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.reader).poll_read(cx, buf)
    }
}

impl AsyncWrite for Joined {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.writer).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.writer).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.writer).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.writer).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.writer.is_write_vectored()
    }
}

/// What a launched worker is sent on stdin: the cookie line, then the TLS bundle
/// when the cluster uses TLS.
///
/// ```
/// let s = cohort_transport::tls::stdin_payload("secret", None);
/// assert_eq!(s, "secret\n");
/// ```
pub fn stdin_payload(cookie: &str, tls: Option<&ClusterTls>) -> String {
    let mut s = format!("{cookie}\n");
    if let Some(t) = tls {
        s.push_str(t.bundle());
    }
    s
}

/// Reads a [bundle](ClusterTls::bundle) from stdin (after the cookie line), up to its
/// `cohort-tls-end` line or the end of input.
///
/// # Errors
/// The I/O error of the read; [`TlsError`]s as `InvalidData`.
///
/// ```no_run
/// let tls = cohort_transport::tls::read_bundle_from_stdin().unwrap();
/// ```
pub fn read_bundle_from_stdin() -> io::Result<ClusterTls> {
    use std::io::BufRead;
    let mut text = String::new();
    let mut stdin = io::stdin().lock();
    loop {
        let mut line = String::new();
        if stdin.read_line(&mut line)? == 0 {
            break;
        }
        let end = line.trim() == END_MARK;
        text.push_str(&line);
        if end {
            break;
        }
    }
    ClusterTls::from_bundle(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}
