//! HTTPS for the simulator, as every real OCP endpoint is: a throwaway certificate authority
//! made at start (rcgen), a server certificate it signs for `localhost` and `127.0.0.1`, and an
//! axum listener that does the TLS handshakes off the accept loop. Clients trust the CA's PEM
//! (callrec: `ocp.ca_file`); without it the handshake fails as it would against an unknown
//! issuer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;

/// A certificate authority and the server configuration of a certificate it signed.
#[derive(Clone)]
pub struct TestCa {
    ca_pem: String,
    server: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestCa")
    }
}

/// Why the CA could not be made.
#[derive(Debug, thiserror::Error)]
#[error("making the simulator's TLS certificates: {0}")]
pub struct TlsError(String);

impl TestCa {
    /// A new CA and a server certificate for `localhost`, `127.0.0.1` and `::1` (ECDSA P-256).
    pub fn generate() -> Result<Self, TlsError> {
        let e = |e: rcgen::Error| TlsError(e.to_string());
        let ca_key = rcgen::KeyPair::generate().map_err(e)?;
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(e)?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "ocp-sim test CA");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).map_err(e)?;
        let issuer = rcgen::Issuer::new(ca_params, ca_key);

        let server_key = rcgen::KeyPair::generate().map_err(e)?;
        let mut params = rcgen::CertificateParams::new(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ])
        .map_err(e)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "ocp-sim");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = params.signed_by(&server_key, &issuer).map_err(e)?;

        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(vec![server_cert.der().clone(), ca_cert.der().clone()], key)
            .map_err(|e| TlsError(e.to_string()))?;
        Ok(TestCa {
            ca_pem: ca_cert.pem(),
            server: Arc::new(server),
        })
    }

    /// The CA certificate, PEM: what a client must trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Serves `app` over HTTPS on `listener` until `shutdown` resolves.
    pub async fn serve(
        &self,
        listener: TcpListener,
        app: axum::Router,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let listener = TlsListener::new(listener, Arc::clone(&self.server));
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// Accepts TCP connections and hands over the ones whose TLS handshake finished: handshakes run
/// in their own tasks (with a timeout), so a slow or silent client never holds up the others.
struct TlsListener {
    ready: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accept_task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> Self {
        let local = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let (tx, ready) = tokio::sync::mpsc::channel(64);
        let accept_task = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(_) => {
                        // Out of file descriptors and the like: wait, as axum's listener does.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let handshake =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await;
                    // A failed handshake (an untrusting client hangs up) is the client's business.
                    if let Ok(Ok(tls)) = handshake {
                        let _ = tx.send((tls, peer)).await;
                    }
                });
            }
        });
        TlsListener {
            ready,
            local,
            accept_task,
        }
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(ready) => ready,
            // The accept task is gone: nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
