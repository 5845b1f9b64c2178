//! A throwaway PKI for the TLS tests: a cluster CA, a certificate for 127.0.0.1 from it, and a
//! rogue one from another CA.
#![allow(dead_code)]

pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
    pub node_cert: String,
    pub node_key: String,
    pub rogue_cert: String,
    pub rogue_key: String,
}

impl Pki {
    /// A cluster CA with a node certificate for 127.0.0.1 (server and client use), and a rogue
    /// certificate for the same address from another CA.
    pub fn new() -> Pki {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        };
        // Distinct subjects: OpenSSL (redis-server, redis-cli) takes a leaf whose subject equals its
        // issuer's for self-signed, and refuses it.
        let ca_params = || {
            let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.distinguished_name.push(DnType::CommonName, "rota test CA");
            p
        };
        let leaf = |issuer: &CertifiedIssuer<'_, KeyPair>| {
            let mut p = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).expect("params");
            p.distinguished_name.push(DnType::CommonName, "127.0.0.1");
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
            let key = KeyPair::generate().expect("key");
            let cert = p.signed_by(&key, issuer).expect("sign");
            (cert.pem(), key.serialize_pem())
        };
        let ca = CertifiedIssuer::self_signed(ca_params(), KeyPair::generate().expect("key")).expect("ca");
        let rogue_ca = CertifiedIssuer::self_signed(ca_params(), KeyPair::generate().expect("key")).expect("ca");
        let (node_cert, node_key) = leaf(&ca);
        let (rogue_cert, rogue_key) = leaf(&rogue_ca);
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki { dir, ca_pem: ca.pem(), node_cert, node_key, rogue_cert, rogue_key };
        for (name, body) in [("ca.pem", &pki.ca_pem), ("node.pem", &pki.node_cert), ("node.key", &pki.node_key)] {
            std::fs::write(pki.dir.path().join(name), body).expect("write pem");
        }
        pki
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }

    /// A client that trusts the cluster CA and presents no certificate.
    pub fn client(&self) -> tonic::transport::ClientTlsConfig {
        tonic::transport::ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(&self.ca_pem))
    }

    pub fn client_with(&self, cert: &str, key: &str) -> tonic::transport::ClientTlsConfig {
        self.client().identity(tonic::transport::Identity::from_pem(cert, key))
    }
}
