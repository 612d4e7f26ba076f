//! The peer channel over mutual TLS 1.3 (rustls): with `--tls-cert`, `--tls-key` and
//! `--tls-ca`, every peer connection is a TLS session in which both ends show a certificate
//! signed by the group's CA whose name (a DNS subject alternative name) is the member's
//! `--name`: every frame is encrypted and authenticated, not only the handshake. The dialer
//! checks the answering member's name through rustls; the acceptor checks that the name a
//! peer gives in its Hello is the one its certificate carries ([`PeerTls::certifies`]).
//! `ftnfsctl certs` makes a CA and one certificate per member. The shared secret may be
//! used beside it, or alone (labs).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::Context;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::{self, client::danger::ServerCertVerifier};

/// TLS for the peer channel: the keys in force, and the files they came from, read again
/// by a reload (SIGHUP, `ftnfsctl reload`) so that certificates rotate without a restart.
/// A connection takes the keys in force when it starts ([`PeerTls::keys`]) and keeps them:
/// sessions already up are not touched by a rotation, new ones use the new keys.
pub struct PeerTls {
    files: Option<(PathBuf, PathBuf, PathBuf)>,
    keys: RwLock<Arc<TlsKeys>>,
}

/// One set of keys: this member's certificate and key, the group's CA.
pub struct TlsKeys {
    /// Dials peers.
    pub connector: tokio_rustls::TlsConnector,
    /// Accepts peers.
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// Checks a certificate against the CA and a member name.
    names: Arc<rustls::client::WebPkiServerVerifier>,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerTls(mutual TLS 1.3)")
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl PeerTls {
    /// From PEM files: this member's certificate (chain), its key, the group's CA.
    pub fn load(cert: &Path, key: &Path, ca: &Path) -> anyhow::Result<PeerTls> {
        let keys = TlsKeys::load(cert, key, ca)?;
        Ok(PeerTls {
            files: Some((cert.into(), key.into(), ca.into())),
            keys: RwLock::new(Arc::new(keys)),
        })
    }

    /// The keys in force now.
    pub fn keys(&self) -> Arc<TlsKeys> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Reads the files again into keys ready to [`install`](Self::install); an error leaves
    /// the keys in force as they are.
    pub fn prepare(&self) -> anyhow::Result<Option<TlsKeys>> {
        match &self.files {
            Some((cert, key, ca)) => TlsKeys::load(cert, key, ca).map(Some),
            None => Ok(None),
        }
    }

    /// Puts `keys` in force for every connection from now on.
    pub fn install(&self, keys: TlsKeys) {
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
    }

    /// The TLS name a member is dialed by.
    pub fn name_of(member: &str) -> anyhow::Result<ServerName<'static>> {
        ServerName::try_from(member.to_string())
            .map_err(|_| anyhow::anyhow!("member name {member:?} cannot be a certificate name"))
    }
}

impl TlsKeys {
    /// From PEM files: this member's certificate (chain), its key, the group's CA.
    pub fn load(cert: &Path, key: &Path, ca: &Path) -> anyhow::Result<TlsKeys> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .with_context(|| format!("cannot read {}", cert.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("bad certificate in {}", cert.display()))?;
        if chain.is_empty() {
            anyhow::bail!("no certificate in {}", cert.display());
        }
        let key = PrivateKeyDer::from_pem_file(key)
            .with_context(|| format!("no private key in {}", key.display()))?;
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(ca)
            .with_context(|| format!("cannot read {}", ca.display()))?
        {
            roots
                .add(c.with_context(|| format!("bad certificate in {}", ca.display()))?)
                .with_context(|| format!("CA certificate in {}", ca.display()))?;
        }
        if roots.is_empty() {
            anyhow::bail!("no CA certificate in {}", ca.display());
        }
        TlsKeys::new(chain, key, roots)
    }

    /// From parsed parts.
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        roots: rustls::RootCertStore,
    ) -> anyhow::Result<TlsKeys> {
        let roots = Arc::new(roots);
        let tls13 = &[&rustls::version::TLS13];
        let clients =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
                .build()
                .context("the group's CA")?;
        let server = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(tls13)?
            .with_client_cert_verifier(clients)
            .with_single_cert(chain.clone(), key.clone_key())
            .context("this member's certificate and key")?;
        let client = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(tls13)?
            .with_root_certificates(roots.clone())
            .with_client_auth_cert(chain, key)
            .context("this member's certificate and key")?;
        let names = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider())
            .build()
            .context("the group's CA")?;
        Ok(TlsKeys {
            connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
            names,
        })
    }

    /// Does `chain` (a peer's, as the TLS session verified it against the CA) name the
    /// member `name`?
    pub fn certifies(&self, chain: &[CertificateDer<'_>], name: &str) -> bool {
        let (Some(end), Ok(server_name)) = (chain.first(), ServerName::try_from(name)) else {
            return false;
        };
        self.names
            .verify_server_cert(end, &chain[1..], &server_name, &[], UnixTime::now())
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct Ca {
        cert: rcgen::Certificate,
        key: rcgen::KeyPair,
    }

    fn ca(name: &str) -> Ca {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        Ca {
            cert: p.self_signed(&key).unwrap(),
            key,
        }
    }

    fn member(ca: &Ca, name: &str) -> TlsKeys {
        let mut p = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
        p.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.cert.der().clone()).unwrap();
        TlsKeys::new(
            vec![cert.der().clone()],
            PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
            roots,
        )
        .unwrap()
    }

    /// Dials `server` as `client`, naming it `name`: the client's certificate chain as the
    /// server saw it, and whether a byte crossed.
    async fn session(
        client: &TlsKeys,
        server: &TlsKeys,
        name: &str,
    ) -> Option<Vec<CertificateDer<'static>>> {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let acceptor = server.acceptor.clone();
        let srv = tokio::spawn(async move {
            let mut s = acceptor.accept(b).await.ok()?;
            let mut byte = [0u8; 1];
            s.read_exact(&mut byte).await.ok()?;
            s.get_ref().1.peer_certificates().map(|c| c.to_vec())
        });
        let dialed = async {
            let mut c = client
                .connector
                .connect(PeerTls::name_of(name).ok()?, a)
                .await
                .ok()?;
            c.write_all(b"x").await.ok()?;
            c.flush().await.ok()?;
            Some(c)
        }
        .await;
        let seen = srv.await.unwrap();
        drop(dialed);
        seen
    }

    #[tokio::test]
    async fn members_of_one_ca_talk_and_strangers_do_not() {
        let group = ca("group");
        let other = ca("other group");
        let (a, b) = (member(&group, "a"), member(&group, "b"));
        // a dials b by its name; b sees a's certificate, and it names a, not b
        let chain = session(&a, &b, "b").await.expect("a and b talk");
        assert!(b.certifies(&chain, "a"));
        assert!(!b.certifies(&chain, "b"), "a cannot pass for b");
        // a dialing b under another name: refused by a (b's certificate does not name c)
        assert!(session(&a, &b, "c").await.is_none());
        // a member of another CA is refused either way
        let stranger = member(&other, "b");
        assert!(
            session(&stranger, &b, "b").await.is_none(),
            "acceptor refuses a stranger"
        );
        assert!(
            session(&a, &stranger, "b").await.is_none(),
            "dialer refuses a stranger"
        );
    }
}
