//! The per-call CA: an ECDSA P-256 key made in memory when a call has bound secrets (never
//! written anywhere; gone with the proxy), its certificate name-constrained to the bound hosts'
//! domains, and one leaf certificate per bound host, made on first use and cached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, GeneralSubtree, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, NameConstraints, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;
use zeroize::Zeroizing;

use crate::model::bind::HostPattern;

pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate the sandbox trusts (the chain's second element).
    cert: CertificateDer<'static>,
    pem: String,
    /// Its private key (PKCS#8), for the gate process, which makes the leaves.
    key: Zeroizing<Vec<u8>>,
    leaves: Mutex<HashMap<String, Arc<ServerConfig>>>,
}

impl Ca {
    /// A fresh CA whose certificates are valid only for names under `hosts`' domains.
    pub fn new(hosts: &[&HostPattern]) -> Result<Ca, rcgen::Error> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let params = params(hosts);
        let made = params.self_signed(&key)?;
        let (cert, pem) = (made.der().clone(), made.pem());
        Ok(Ca {
            pem,
            key: Zeroizing::new(key.serialize_der()),
            issuer: Issuer::new(params, key),
            cert,
            leaves: Mutex::new(HashMap::new()),
        })
    }

    /// The CA a launch made, in the gate process: its key and certificate as [`Ca::parts`] gave
    /// them; leaves are signed as the launch's CA would sign them.
    pub fn from_parts(
        hosts: &[&HostPattern],
        key: &[u8],
        cert: Vec<u8>,
    ) -> Result<Ca, rcgen::Error> {
        let pair = KeyPair::try_from(key)?;
        Ok(Ca {
            pem: String::new(),
            key: Zeroizing::new(key.to_vec()),
            issuer: Issuer::new(params(hosts), pair),
            cert: CertificateDer::from(cert),
            leaves: Mutex::new(HashMap::new()),
        })
    }

    /// The private key (PKCS#8 DER) and the certificate (DER), for [`Ca::from_parts`].
    pub fn parts(&self) -> (&[u8], &[u8]) {
        (&self.key, self.cert.as_ref())
    }
}

/// The CA certificate's parameters: the same on every build from the same hosts (a CA rebuilt in
/// the gate signs leaves whose issuer and key identifier match the certificate the sandbox has).
fn params(hosts: &[&HostPattern]) -> CertificateParams {
    {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "sbx-exec per-call CA (bound secrets)");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let mut permitted: Vec<GeneralSubtree> = hosts
            .iter()
            .map(|h| match h {
                HostPattern::Exact(n) | HostPattern::Subdomains(n) => {
                    GeneralSubtree::DnsName(n.clone())
                }
            })
            .collect();
        permitted.dedup();
        params.name_constraints = Some(NameConstraints {
            permitted_subtrees: permitted,
            excluded_subtrees: Vec::new(),
        });
        validity(&mut params);
        params
    }
}

impl Ca {
    /// The CA certificate, PEM (empty in the gate, which does not need it).
    pub fn pem(&self) -> String {
        self.pem.clone()
    }

    /// The TLS server configuration presenting a leaf for `host` (made once per host).
    pub fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, String> {
        let mut leaves = self.leaves.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = leaves.get(host) {
            return Ok(c.clone());
        }
        let made = self
            .leaf(host)
            .map_err(|e| format!("cannot make a certificate for {host}: {e}"))?;
        leaves.insert(host.to_string(), made.clone());
        Ok(made)
    }

    fn leaf(&self, host: &str) -> Result<Arc<ServerConfig>, Box<dyn std::error::Error>> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(vec![host.to_string()])?;
        params.distinguished_name.push(DnType::CommonName, host);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        validity(&mut params);
        let cert = params.signed_by(&key, &self.issuer)?;
        let chain = vec![cert.der().clone(), self.cert.clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let config = ServerConfig::builder_with_provider(super::provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        Ok(Arc::new(config))
    }
}

/// From yesterday to 30 days ahead: the CA lives only as long as the proxy of one call.
fn validity(params: &mut CertificateParams) {
    let days = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    let (y, m, d) = civil(days - 1);
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = civil(days + 30);
    params.not_after = rcgen::date_time_ymd(y, m, d);
}

/// Days since 1970-01-01 → (year, month, day) (H. Hinnant's civil_from_days).
fn civil(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let y = (yoe + era * 400 + i64::from(m <= 2)) as i32;
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(19_782), (2024, 2, 29));
        assert_eq!(civil(20_788), (2026, 12, 1));
    }
}
