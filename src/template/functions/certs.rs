//! ESO's own functions: PEM filtering, certificate chains and SANs, PKCS#12
//! keystores, JWKs and RSA decryption.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gtmpl_ng::Value;
use p12_keystore::{Certificate as P12Certificate, KeyStore, KeyStoreEntry, PrivateKeyChain};
use pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};

use super::Fail;
use super::crypto::PrivateKey;
use super::go::{self, Args};

mod pfx;

/// A PEM block as Go's `pem.Encode` writes it: LF line endings.
pub(super) fn pem_encode(tag: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(tag, der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// The PEM blocks in `text`, from the first `-----BEGIN` on (ESO's `trimJunk`).
fn pem_blocks(text: &[u8]) -> Vec<pem::Pem> {
    let start = text
        .windows(10)
        .position(|w| w == b"-----BEGIN")
        .unwrap_or(text.len());
    pem::parse_many(&text[start..]).unwrap_or_default()
}

/// One PEM block at the start of `text` (a `-----BEGIN` line through its
/// `-----END` line and that line's end), and what follows it.
fn next_pem_block(text: &[u8]) -> Option<(pem::Pem, &[u8])> {
    if !text.starts_with(b"-----BEGIN") {
        return None;
    }
    let end = text.windows(8).position(|w| w == b"-----END")?;
    let line_end = text[end..]
        .iter()
        .position(|b| *b == b'\n')
        .map_or(text.len(), |i| end + i + 1);
    let block = pem::parse(&text[..line_end]).ok()?;
    Some((block, &text[line_end..]))
}

/// `filterPEM TYPE TEXT`: only the blocks of TYPE (any case), in order. As
/// ESO reads them (`pem.go`): text before the first `-----BEGIN` is dropped;
/// then blocks are decoded one after the other, and Go's `pem.Decode` skips
/// text between blocks only up to a line that starts with `-----BEGIN`. The
/// first block that cannot be reached that way ends the reading; if no block
/// of TYPE came before it, that is an error (`found junk`), else the blocks
/// read are the answer.
pub(super) fn filter_pem(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 2, "2")?;
    let (kind, input) = (a.string(0)?, a.bytes(1)?);
    // ESO's trimJunk: text with no `-----BEGIN` at all stays, and is junk.
    let start = input
        .windows(10)
        .position(|w| w == b"-----BEGIN")
        .unwrap_or(0);
    let mut rest = &input[start..];
    let mut out = String::new();
    loop {
        let at = if rest.starts_with(b"-----BEGIN") {
            Some(0)
        } else {
            rest.windows(11)
                .position(|w| w == b"\n-----BEGIN")
                .map(|i| i + 1)
        };
        let Some((block, after)) = at.and_then(|at| next_pem_block(&rest[at..])) else {
            break;
        };
        rest = after;
        if block.tag().eq_ignore_ascii_case(&kind) {
            out.push_str(&pem_encode(block.tag(), block.contents()));
        }
    }
    if out.is_empty() && !rest.is_empty() {
        return Err(Fail::Reason("error filtering pem: found junk"));
    }
    Ok(go::string(out))
}

/// A certificate with the key identifiers chains are built from (Go's nil is
/// an empty identifier, and two nils are equal, as `bytes.Equal` has it).
struct ChainCert {
    der: Vec<u8>,
    authority_key_id: Vec<u8>,
    subject_key_id: Vec<u8>,
}

impl ChainCert {
    fn parse(der: &[u8]) -> Result<Self, Fail> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|_| Fail::Reason("a certificate does not parse"))?;
        let mut out = ChainCert {
            der: der.to_vec(),
            authority_key_id: Vec::new(),
            subject_key_id: Vec::new(),
        };
        for extension in cert.extensions() {
            match extension.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(aki) => {
                    out.authority_key_id = aki
                        .key_identifier
                        .as_ref()
                        .map(|k| k.0.to_vec())
                        .unwrap_or_default();
                }
                ParsedExtension::SubjectKeyIdentifier(ski) => out.subject_key_id = ski.0.to_vec(),
                _ => {}
            }
        }
        Ok(out)
    }

    fn is_root(&self) -> bool {
        self.authority_key_id.is_empty() || self.authority_key_id == self.subject_key_id
    }
}

/// ESO's chain order: leaf, intermediates, root, by key identifiers.
fn order_chain(certs: Vec<ChainCert>) -> Result<Vec<ChainCert>, Fail> {
    let n = certs.len();
    let mut parent: Vec<Option<usize>> = vec![None; n];
    let mut is_parent = vec![false; n];
    for i in 0..n {
        for j in 0..n {
            if i != j && certs[i].authority_key_id == certs[j].subject_key_id {
                is_parent[j] = true;
                parent[i] = Some(j);
                break;
            }
        }
    }
    let mut leaves = (0..n).filter(|i| !is_parent[*i]);
    let leaf = leaves
        .next()
        .ok_or(Fail::Reason("no leaf certificate found"))?;
    if leaves.next().is_some() {
        return Err(Fail::Reason("found multiple leaf or disjunct certificates"));
    }
    let mut order = Vec::new();
    let mut at = Some(leaf);
    while let Some(i) = at {
        if order.len() >= n {
            return Err(Fail::Reason("constructing chain resulted in cycle"));
        }
        order.push(i);
        at = parent[i];
    }
    let mut slots: Vec<Option<ChainCert>> = certs.into_iter().map(Some).collect();
    Ok(order.into_iter().filter_map(|i| slots[i].take()).collect())
}

fn certificates_in(text: &[u8]) -> Result<Vec<ChainCert>, Fail> {
    pem::parse_many(text)
        .map_err(|_| Fail::Reason("the PEM data does not parse"))?
        .iter()
        .map(|b| ChainCert::parse(b.contents()))
        .collect()
}

fn pem_certificates<'a>(certs: impl IntoIterator<Item = &'a ChainCert>) -> String {
    certs
        .into_iter()
        .map(|c| pem_encode("CERTIFICATE", &c.der))
        .collect()
}

/// `filterCertChain TYPE TEXT`: the `leaf`, the `intermediate`s or the `root`
/// of the chain in TEXT.
pub(super) fn filter_cert_chain(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 2, "2")?;
    let kind = a.string(0)?;
    let ordered = order_chain(certificates_in(&a.bytes(1)?)?)?;
    let out = match kind.as_str() {
        "leaf" => ordered
            .first()
            .filter(|c| !c.authority_key_id.is_empty() && c.authority_key_id != c.subject_key_id)
            .map(|c| pem_certificates([c]))
            .unwrap_or_default(),
        "intermediate" => pem_certificates(ordered.iter().skip(1).take_while(|c| !c.is_root())),
        "root" => ordered
            .last()
            .filter(|c| c.is_root())
            .map(|c| pem_certificates([c]))
            .unwrap_or_default(),
        _ => String::new(),
    };
    Ok(go::string(out))
}

/// `certSANs TEXT`: the certificate's DNS names, IPs, emails and URIs, in
/// that order.
pub(super) fn cert_sans(args: &[Value]) -> Result<Value, Fail> {
    use x509_parser::extensions::GeneralName;
    let a = Args::exactly(args, 1, "1")?;
    let block = pem_blocks(&a.bytes(0)?)
        .into_iter()
        .next()
        .ok_or(Fail::Reason("failed to decode PEM block"))?;
    let (_, cert) = X509Certificate::from_der(block.contents())
        .map_err(|_| Fail::Reason("failed to parse certificate"))?;
    let (mut dns, mut ips, mut emails, mut uris) = (vec![], vec![], vec![], vec![]);
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) => dns.push(n.to_string()),
                GeneralName::RFC822Name(n) => emails.push(n.to_string()),
                GeneralName::URI(n) => uris.push(n.to_string()),
                GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes)
                            .ok()
                            .map(|b| std::net::IpAddr::from(b).to_string()),
                        16 => <[u8; 16]>::try_from(*bytes)
                            .ok()
                            .map(|b| std::net::IpAddr::from(b).to_string()),
                        _ => None,
                    };
                    ips.extend(ip);
                }
                _ => {}
            }
        }
    }
    Ok(go::strings(
        dns.into_iter().chain(ips).chain(emails).chain(uris),
    ))
}

// PKCS#12

fn keystore_args(args: &[Value], with_password: bool) -> Result<(String, Vec<u8>), Fail> {
    if with_password {
        let a = Args::exactly(args, 2, "2")?;
        Ok((a.string(0)?, a.bytes(1)?))
    } else {
        let a = Args::exactly(args, 1, "1")?;
        Ok((String::new(), a.bytes(0)?))
    }
}

fn pkcs12_key(args: &[Value], with_password: bool) -> Result<Value, Fail> {
    let (password, data) = keystore_args(args, with_password)?;
    let key = pfx::decode_chain(&data, &password)?.key;
    // Re-encoded as Go's MarshalPKCS8PrivateKey writes it.
    let der = PrivateKey::from_pkcs8(&key)?.pkcs8_der()?;
    Ok(go::string(pem_encode("PRIVATE KEY", &der)))
}

/// `pkcs12key KEYSTORE`: its private key, PKCS#8 PEM.
pub(super) fn pkcs12key(args: &[Value]) -> Result<Value, Fail> {
    pkcs12_key(args, false)
}

/// `pkcs12keyPass PASSWORD KEYSTORE`.
pub(super) fn pkcs12key_pass(args: &[Value]) -> Result<Value, Fail> {
    pkcs12_key(args, true)
}

fn pkcs12_cert(args: &[Value], with_password: bool) -> Result<Value, Fail> {
    let (password, data) = keystore_args(args, with_password)?;
    // ESO (pkcs12.go, pkcs12certPass): DecodeChain's certificate (the first
    // certificate bag), then its CA certificates in file order, every one of
    // them, chain or not; ordered leaf to root by key identifiers when they
    // make exactly one chain (pem_chain.go), else left as they are.
    let chain = pfx::decode_chain(&data, &password)?;
    let mut ders = vec![chain.certificate];
    ders.extend(chain.ca_certs);
    let unordered: String = ders.iter().map(|d| pem_encode("CERTIFICATE", d)).collect();
    let ordered = ders
        .iter()
        .map(|d| ChainCert::parse(d))
        .collect::<Result<Vec<_>, _>>()
        .and_then(order_chain)
        .map(|chain| pem_certificates(&chain));
    Ok(go::string(ordered.unwrap_or(unordered)))
}

/// `pkcs12cert KEYSTORE`: its certificates in ESO's order, PEM.
pub(super) fn pkcs12cert(args: &[Value]) -> Result<Value, Fail> {
    pkcs12_cert(args, false)
}

/// `pkcs12certPass PASSWORD KEYSTORE`.
pub(super) fn pkcs12cert_pass(args: &[Value]) -> Result<Value, Fail> {
    pkcs12_cert(args, true)
}

fn first_certificate(text: &[u8]) -> Result<(Vec<u8>, Vec<Vec<u8>>), Fail> {
    let blocks = pem_blocks(text);
    let mut ders = blocks.iter().map(|b| b.contents().to_vec());
    let first = ders
        .next()
        .ok_or(Fail::Reason("the certificate is not PEM"))?;
    let rest: Vec<Vec<u8>> = ders.collect();
    for der in std::iter::once(&first).chain(&rest) {
        X509Certificate::from_der(der).map_err(|_| Fail::Reason("a certificate does not parse"))?;
    }
    Ok((first, rest))
}

/// go-pkcs12's `Modern` encoding: AES-256-CBC with PBKDF2-HMAC-SHA256 and a
/// SHA-256 MAC; base64 of the file.
fn write_keystore(store: &KeyStore, password: &str) -> Result<Value, Fail> {
    let der = store
        .writer(password)
        .encryption_iterations(2048)
        .mac_iterations(2048)
        .write()
        .map_err(|_| Fail::Reason("the keystore cannot be written"))?;
    Ok(go::string(STANDARD.encode(der)))
}

fn p12_certificate(der: &[u8]) -> Result<P12Certificate, Fail> {
    P12Certificate::from_der(der).map_err(|_| Fail::Reason("a certificate does not parse"))
}

fn to_pkcs12(args: &[Value], arity: usize, full: bool) -> Result<Value, Fail> {
    let a = Args::exactly(args, arity, if arity == 2 { "2" } else { "3" })?;
    let (cert, key) = (a.bytes(0)?, a.string(1)?);
    let password = if arity == 3 {
        a.string(2)?
    } else {
        String::new()
    };
    let (leaf, rest) = first_certificate(&cert)?;
    let key = PrivateKey::from_pem(&key)?.pkcs8_der()?;
    let mut chain = vec![p12_certificate(&leaf)?];
    if full {
        for der in &rest {
            chain.push(p12_certificate(der)?);
        }
    }
    let local_key_id = {
        use sha1::Digest;
        sha1::Sha1::digest(&leaf).to_vec()
    };
    let mut store = KeyStore::new();
    store.add_entry(
        "1",
        KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(key, local_key_id, chain)),
    );
    write_keystore(&store, &password)
}

/// `pemToPkcs12 CERT KEY`: a keystore of the first certificate and the key.
pub(super) fn pem_to_pkcs12(args: &[Value]) -> Result<Value, Fail> {
    to_pkcs12(args, 2, false)
}

/// `pemToPkcs12Pass CERT KEY PASSWORD`.
pub(super) fn pem_to_pkcs12_pass(args: &[Value]) -> Result<Value, Fail> {
    to_pkcs12(args, 3, false)
}

/// `fullPemToPkcs12 CERT KEY`: the whole chain in CERT and the key.
pub(super) fn full_pem_to_pkcs12(args: &[Value]) -> Result<Value, Fail> {
    to_pkcs12(args, 2, true)
}

/// `fullPemToPkcs12Pass CERT KEY PASSWORD`.
pub(super) fn full_pem_to_pkcs12_pass(args: &[Value]) -> Result<Value, Fail> {
    to_pkcs12(args, 3, true)
}

fn truststore(args: &[Value], with_password: bool) -> Result<Value, Fail> {
    let a = Args::exactly(
        args,
        if with_password { 2 } else { 1 },
        if with_password { "2" } else { "1" },
    )?;
    let password = if with_password {
        a.string(1)?
    } else {
        String::new()
    };
    let (first, rest) = first_certificate(&a.bytes(0)?)?;
    let mut store = KeyStore::new();
    for (i, der) in std::iter::once(&first).chain(&rest).enumerate() {
        store.add_entry(
            &i.to_string(),
            KeyStoreEntry::Certificate(p12_certificate(der)?),
        );
    }
    write_keystore(&store, &password)
}

/// `pemTruststoreToPKCS12 CERTS`: a truststore of every certificate.
pub(super) fn pem_truststore_to_pkcs12(args: &[Value]) -> Result<Value, Fail> {
    truststore(args, false)
}

/// `pemTruststoreToPKCS12Pass CERTS PASSWORD`.
pub(super) fn pem_truststore_to_pkcs12_pass(args: &[Value]) -> Result<Value, Fail> {
    truststore(args, true)
}

// JWK (RFC 7517, RFC 7518)

#[derive(serde::Deserialize)]
struct Jwk {
    kty: String,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    d: Option<String>,
    p: Option<String>,
    q: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

fn b64url(field: &Option<String>) -> Result<Vec<u8>, Fail> {
    let text = field
        .as_deref()
        .ok_or(Fail::Reason("a required JWK member is missing"))?;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| Fail::Reason("a JWK member is not base64url"))
}

fn big(field: &Option<String>) -> Result<rsa::BigUint, Fail> {
    Ok(rsa::BigUint::from_bytes_be(&b64url(field)?))
}

fn parse_jwk(args: &[Value]) -> Result<Jwk, Fail> {
    let text = Args::exactly(args, 1, "1")?.string(0)?;
    serde_json::from_str(&text).map_err(|_| Fail::Reason("the text is not a JWK"))
}

/// RFC 8037's OID for Ed25519 keys.
const ED25519_OID: pkcs8::ObjectIdentifier = pkcs8::ObjectIdentifier::new_unwrap("1.3.101.112");

fn ed25519_algorithm() -> pkcs8::AlgorithmIdentifierRef<'static> {
    pkcs8::AlgorithmIdentifierRef {
        oid: ED25519_OID,
        parameters: None,
    }
}

/// An Ed25519 public key (`x`) as PKIX PEM.
fn ed25519_public_pem(x: &[u8]) -> Result<String, Fail> {
    use pkcs8::der::Encode;
    let info = pkcs8::spki::SubjectPublicKeyInfoRef {
        algorithm: ed25519_algorithm(),
        subject_public_key: pkcs8::der::asn1::BitStringRef::from_bytes(x).map_err(key_fail)?,
    };
    Ok(pem_encode("PUBLIC KEY", &info.to_der().map_err(key_fail)?))
}

/// An Ed25519 private key (the seed `d`) as PKCS#8 PEM, as Go writes it.
fn ed25519_private_pem(d: &[u8]) -> Result<String, Fail> {
    use pkcs8::der::Encode;
    if d.len() != 32 {
        return Err(Fail::Reason("the JWK is not a valid key"));
    }
    let inner = pkcs8::der::asn1::OctetStringRef::new(d)
        .and_then(|o| o.to_der())
        .map_err(key_fail)?;
    let info = pkcs8::PrivateKeyInfo::new(ed25519_algorithm(), &inner);
    Ok(pem_encode("PRIVATE KEY", &info.to_der().map_err(key_fail)?))
}

fn ec_point(jwk: &Jwk) -> Result<Vec<u8>, Fail> {
    Ok([vec![4u8], b64url(&jwk.x)?, b64url(&jwk.y)?].concat())
}

fn key_fail<E>(_: E) -> Fail {
    Fail::Reason("the JWK is not a valid key")
}

/// `jwkPublicKeyPem JWK`: the public key, PKIX PEM.
pub(super) fn jwk_public_key_pem(args: &[Value]) -> Result<Value, Fail> {
    let jwk = parse_jwk(args)?;
    let pem = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
        ("RSA", _) => rsa::RsaPublicKey::new(big(&jwk.n)?, big(&jwk.e)?)
            .map_err(key_fail)?
            .to_public_key_pem(LineEnding::LF)
            .map_err(key_fail)?,
        ("EC", Some("P-256")) => p256::PublicKey::from_sec1_bytes(&ec_point(&jwk)?)
            .map_err(key_fail)?
            .to_public_key_pem(LineEnding::LF)
            .map_err(key_fail)?,
        ("EC", Some("P-384")) => p384::PublicKey::from_sec1_bytes(&ec_point(&jwk)?)
            .map_err(key_fail)?
            .to_public_key_pem(LineEnding::LF)
            .map_err(key_fail)?,
        ("EC", Some("P-521")) => p521::PublicKey::from_sec1_bytes(&ec_point(&jwk)?)
            .map_err(key_fail)?
            .to_public_key_pem(LineEnding::LF)
            .map_err(key_fail)?,
        ("OKP", Some("Ed25519")) => ed25519_public_pem(&b64url(&jwk.x)?)?,
        _ => return Err(Fail::Reason(UNSUPPORTED_JWK)),
    };
    Ok(go::string(pem))
}

const UNSUPPORTED_JWK: &str =
    "only RSA, EC (P-256, P-384, P-521) and OKP (Ed25519) JWKs are supported";

/// `jwkPrivateKeyPem JWK`: the private key, PKCS#8 PEM.
pub(super) fn jwk_private_key_pem(args: &[Value]) -> Result<Value, Fail> {
    let jwk = parse_jwk(args)?;
    let pem = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
        ("RSA", _) => {
            let mut primes = Vec::new();
            if jwk.p.is_some() && jwk.q.is_some() {
                primes = vec![big(&jwk.p)?, big(&jwk.q)?];
            }
            let key = rsa::RsaPrivateKey::from_components(
                big(&jwk.n)?,
                big(&jwk.e)?,
                big(&jwk.d)?,
                primes,
            )
            .map_err(key_fail)?;
            key.to_pkcs8_pem(LineEnding::LF)
                .map_err(key_fail)?
                .to_string()
        }
        ("EC", Some("P-256")) => p256::SecretKey::from_slice(&b64url(&jwk.d)?)
            .map_err(key_fail)?
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(key_fail)?
            .to_string(),
        ("EC", Some("P-384")) => p384::SecretKey::from_slice(&b64url(&jwk.d)?)
            .map_err(key_fail)?
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(key_fail)?
            .to_string(),
        ("EC", Some("P-521")) => p521::SecretKey::from_slice(&b64url(&jwk.d)?)
            .map_err(key_fail)?
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(key_fail)?
            .to_string(),
        ("OKP", Some("Ed25519")) => ed25519_private_pem(&b64url(&jwk.d)?)?,
        _ => return Err(Fail::Reason(UNSUPPORTED_JWK)),
    };
    Ok(go::string(pem))
}

/// `rsaDecrypt SCHEME HASH CIPHERTEXT KEY`: `RSA-OAEP` with SHA1, SHA256 or
/// SHA512 (`None` is SHA256); scheme `None` gives CIPHERTEXT back.
pub(super) fn rsa_decrypt(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 4, "4")?;
    let (scheme, hash) = (a.string(0)?, a.string(1)?);
    let input = a.bytes(2)?;
    match scheme.as_str() {
        "None" => return Ok(go::from_bytes(&input)),
        "RSA-OAEP" => {}
        _ => {
            return Err(Fail::Reason(
                "the decryption scheme is not supported (RSA-OAEP or None)",
            ));
        }
    }
    let key = pem_blocks(&a.bytes(3)?)
        .into_iter()
        .next()
        .ok_or(Fail::Reason("failed to decode PEM block"))?;
    let key = match PrivateKey::from_pem(&pem_encode(key.tag(), key.contents()))? {
        PrivateKey::Rsa(key) => key,
        _ => return Err(Fail::Reason("could not parse RSA private key")),
    };
    let padding = match hash.as_str() {
        "SHA1" => rsa::Oaep::new::<sha1::Sha1>(),
        "SHA512" => rsa::Oaep::new::<sha2::Sha512>(),
        _ => rsa::Oaep::new::<sha2::Sha256>(),
    };
    let plain = key
        .decrypt(padding, &input)
        .map_err(|_| Fail::Reason("error decrypting data with RSA"))?;
    Ok(go::from_bytes(&plain))
}
