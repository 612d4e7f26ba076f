//! `ftnfsctl certs`: a group's CA and one certificate per member for mutual TLS on the peer
//! channel (ftnfsd's `peer_tls.rs`). A member's certificate names it (DNS subject
//! alternative name = its `--name`) and serves as both TLS client and server.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

fn write(path: &Path, text: &str, secret: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

fn validity(p: &mut CertificateParams, days: u32) {
    let now = std::time::SystemTime::now();
    p.not_before = (now - std::time::Duration::from_secs(3600)).into();
    p.not_after = (now + std::time::Duration::from_secs(days as u64 * 86400)).into();
}

/// Makes (or reuses) the CA in `dir` and a certificate and key per member; the files written.
pub fn make(dir: &Path, members: &[String], days: u32) -> anyhow::Result<Vec<PathBuf>> {
    for m in members {
        if m.is_empty()
            || !m
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            bail!("member name {m:?}: a certificate name takes letters, digits, '-' and '.'");
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    let (ca_pem, ca_key_pem) = (dir.join("ca.pem"), dir.join("ca.key"));
    let mut written = Vec::new();
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "ftnfs group CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let (ca_key, ca_cert) = if ca_key_pem.exists() {
        // the CA made earlier: the same key and name, so members signed before still verify
        // (the issuer of a member certificate is the CA's name and key, both unchanged: the
        // stored ca.pem verifies it)
        let key = KeyPair::from_pem(&std::fs::read_to_string(&ca_key_pem)?)
            .with_context(|| format!("bad CA key {}", ca_key_pem.display()))?;
        if !ca_pem.exists() {
            bail!("{} without {}", ca_key_pem.display(), ca_pem.display());
        }
        let cert = ca_params.self_signed(&key)?;
        (key, cert)
    } else {
        validity(&mut ca_params, days.max(1));
        let key = KeyPair::generate()?;
        let cert = ca_params.self_signed(&key)?;
        write(&ca_key_pem, &key.serialize_pem(), true)?;
        write(&ca_pem, &cert.pem(), false)?;
        written.extend([ca_pem.clone(), ca_key_pem.clone()]);
        (key, cert)
    };
    for m in members {
        let mut p = CertificateParams::new(vec![m.clone()])?;
        p.distinguished_name.push(DnType::CommonName, m.as_str());
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        validity(&mut p, days.max(1));
        let key = KeyPair::generate()?;
        let cert = p.signed_by(&key, &ca_cert, &ca_key)?;
        let (cp, kp) = (dir.join(format!("{m}.pem")), dir.join(format!("{m}.key")));
        write(&cp, &cert.pem(), false)?;
        write(&kp, &key.serialize_pem(), true)?;
        written.extend([cp, kp]);
    }
    Ok(written)
}
