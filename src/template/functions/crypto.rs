//! sprig's password, encryption, key and certificate functions, on the
//! RustCrypto crates, ring (through rcgen) and bcrypt.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gtmpl_ng::Value;
use hmac::Mac;
use pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rand::RngCore;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};

use super::Fail;
use super::go::{self, Args, strval};

/// Go's `bcrypt.DefaultCost`.
const BCRYPT_COST: u32 = 10;

fn bcrypt_hash(password: &[u8]) -> String {
    // Go's x/crypto refuses what bcrypt would silently cut, and writes `$2a$`.
    if password.len() > 72 {
        return "failed to encrypt string with bcrypt: bcrypt: password length exceeds 72 bytes"
            .into();
    }
    bcrypt::hash_with_result(password, BCRYPT_COST)
        .map(|parts| parts.format_for_version(bcrypt::Version::TwoA))
        .unwrap_or_default()
}

/// `bcrypt TEXT`: a bcrypt hash (`$2a$10$...`).
pub(super) fn bcrypt_fn(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 1, "1")?;
    Ok(go::string(bcrypt_hash(&a.bytes(0)?)))
}

/// `htpasswd USER PASSWORD [HASH]`: an htpasswd line, bcrypt unless HASH is `sha`.
pub(super) fn htpasswd(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::at_least(args, 2, "3")?;
    if a.len() > 3 {
        return Err(Fail::Arity {
            want: "3",
            got: a.len(),
        });
    }
    let user = a.string(0)?;
    let password = a.bytes(1)?;
    let hash = if a.len() == 3 {
        a.string(2)?
    } else {
        "bcrypt".into()
    };
    if user.contains(':') {
        return Ok(go::string(format!("invalid username: {user}")));
    }
    Ok(go::string(match hash.as_str() {
        "sha" => {
            use sha1::Digest;
            format!(
                "{user}:{{SHA}}{}",
                STANDARD.encode(sha1::Sha1::digest(&password))
            )
        }
        _ => format!("{user}:{}", bcrypt_hash(&password)),
    }))
}

type Aes256CbcEnc = cbc::Encryptor<aes::Aes256>;
type Aes256CbcDec = cbc::Decryptor<aes::Aes256>;

/// sprig's AES key: the password's bytes, zero-padded or cut to 32.
fn aes_key(password: &[u8]) -> [u8; 32] {
    let mut key = [0u8; 32];
    let n = password.len().min(32);
    key[..n].copy_from_slice(&password[..n]);
    key
}

/// `encryptAES PASSWORD TEXT`: AES-256-CBC, random IV first, base64.
pub(super) fn encrypt_aes(args: &[Value]) -> Result<Value, Fail> {
    use cbc::cipher::{BlockEncryptMut, KeyIvInit, block_padding::Pkcs7};
    let a = Args::exactly(args, 2, "2")?;
    let plaintext = a.bytes(1)?;
    if plaintext.is_empty() {
        return Ok(go::string(""));
    }
    let mut iv = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut iv);
    let sealed = Aes256CbcEnc::new(&aes_key(&a.bytes(0)?).into(), &iv.into())
        .encrypt_padded_vec_mut::<Pkcs7>(&plaintext);
    Ok(go::string(
        STANDARD.encode([iv.as_slice(), &sealed].concat()),
    ))
}

/// `decryptAES PASSWORD TEXT`: the reverse of `encryptAES`.
pub(super) fn decrypt_aes(args: &[Value]) -> Result<Value, Fail> {
    use cbc::cipher::{BlockDecryptMut, KeyIvInit, block_padding::Pkcs7};
    let a = Args::exactly(args, 2, "2")?;
    let data = STANDARD
        .decode(a.bytes(1)?)
        .map_err(|_| Fail::Reason("the ciphertext is not base64"))?;
    if data.len() < 16 || data.len() % 16 != 0 {
        return Err(Fail::Reason(
            "the ciphertext is not a whole number of AES blocks",
        ));
    }
    let (iv, body) = data.split_at(16);
    let iv: [u8; 16] = iv.try_into().map_err(|_| Fail::Reason("bad IV"))?;
    let plain = Aes256CbcDec::new(&aes_key(&a.bytes(0)?).into(), &iv.into())
        .decrypt_padded_vec_mut::<Pkcs7>(body)
        .map_err(|_| Fail::Reason("the ciphertext does not decrypt with this password"))?;
    Ok(go::from_bytes(&plain))
}

const MASTER_PASSWORD_SEED: &[u8] = b"com.lyndir.masterpassword";

fn password_templates(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "maximum" => &["anoxxxxxxxxxxxxxxxxx", "axxxxxxxxxxxxxxxxxno"],
        "long" => &[
            "CvcvnoCvcvCvcv",
            "CvcvCvcvnoCvcv",
            "CvcvCvcvCvcvno",
            "CvccnoCvcvCvcv",
            "CvccCvcvnoCvcv",
            "CvccCvcvCvcvno",
            "CvcvnoCvccCvcv",
            "CvcvCvccnoCvcv",
            "CvcvCvccCvcvno",
            "CvcvnoCvcvCvcc",
            "CvcvCvcvnoCvcc",
            "CvcvCvcvCvccno",
            "CvccnoCvccCvcv",
            "CvccCvccnoCvcv",
            "CvccCvccCvcvno",
            "CvcvnoCvccCvcc",
            "CvcvCvccnoCvcc",
            "CvcvCvccCvccno",
            "CvccnoCvcvCvcc",
            "CvccCvcvnoCvcc",
            "CvccCvcvCvccno",
        ],
        "medium" => &["CvcnoCvc", "CvcCvcno"],
        "short" => &["Cvcn"],
        "basic" => &["aaanaaan", "aannaaan", "aaannaaa"],
        "pin" => &["nnnn"],
        _ => return None,
    })
}

fn template_characters(class: u8) -> &'static [u8] {
    match class {
        b'V' => b"AEIOU",
        b'C' => b"BCDFGHJKLMNPQRSTVWXYZ",
        b'v' => b"aeiou",
        b'c' => b"bcdfghjklmnpqrstvwxyz",
        b'A' => b"AEIOUBCDFGHJKLMNPQRSTVWXYZ",
        b'a' => b"AEIOUaeiouBCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz",
        b'n' => b"0123456789",
        b'o' => b"@&%?,=[]_:-+*$#!'^~;()/.",
        _ => b"AEIOUaeiouBCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz0123456789!@#$%^&*()",
    }
}

/// `derivePassword COUNTER TYPE PASSWORD USER SITE`: the Master Password
/// algorithm (scrypt, then HMAC-SHA256 over the site), as sprig computes it.
pub(super) fn derive_password(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 5, "5")?;
    let counter = u32::try_from(a.int(0)?).map_err(|_| Fail::Reason("COUNTER must fit 32 bits"))?;
    let kind = a.string(1)?;
    let (password, user, site) = (a.bytes(2)?, a.bytes(3)?, a.bytes(4)?);
    let Some(templates) = password_templates(&kind) else {
        return Ok(go::string(format!("cannot find password template {kind}")));
    };
    let length = |b: &[u8]| u32::try_from(b.len()).unwrap_or(u32::MAX).to_be_bytes();
    let salt = [MASTER_PASSWORD_SEED, &length(&user), &user].concat();
    let params =
        scrypt::Params::new(15, 8, 2, 64).map_err(|_| Fail::Reason("scrypt parameters"))?;
    let mut key = [0u8; 64];
    scrypt::scrypt(&password, &salt, &params, &mut key)
        .map_err(|_| Fail::Reason("scrypt failed"))?;
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).map_err(|_| Fail::Reason("HMAC key"))?;
    mac.update(
        &[
            MASTER_PASSWORD_SEED,
            &length(&site),
            &site,
            &counter.to_be_bytes(),
        ]
        .concat(),
    );
    let seed = mac.finalize().into_bytes();
    let pick = |i: usize| usize::from(seed.get(i).copied().unwrap_or(0));
    let template = templates[pick(0) % templates.len()];
    let password: String = template
        .bytes()
        .enumerate()
        .map(|(i, class)| {
            let chars = template_characters(class);
            char::from(chars[pick(i + 1) % chars.len()])
        })
        .collect();
    Ok(go::string(password))
}

/// A private key as sprig handles them: RSA, ECDSA (P-256, P-384) or Ed25519.
pub(super) enum PrivateKey {
    Rsa(Box<rsa::RsaPrivateKey>),
    P256(p256::SecretKey),
    P384(p384::SecretKey),
    Ed25519(Vec<u8>),
}

impl PrivateKey {
    /// sprig's `parsePrivateKeyPEM`: PKCS#8, PKCS#1 (`RSA PRIVATE KEY`) or SEC1
    /// (`EC PRIVATE KEY`).
    pub(super) fn from_pem(text: &str) -> Result<Self, Fail> {
        let block = pem::parse(text.trim_start_matches(|c| c != '-'))
            .map_err(|_| Fail::Reason("no PEM data in the key"))?;
        let der = block.contents();
        match block.tag() {
            "PRIVATE KEY" => Self::from_pkcs8(der),
            "RSA PRIVATE KEY" => rsa::RsaPrivateKey::from_pkcs1_der(der)
                .map(|k| Self::Rsa(Box::new(k)))
                .map_err(|_| Fail::Reason("the RSA private key does not parse")),
            "EC PRIVATE KEY" => p256::SecretKey::from_sec1_der(der)
                .map(Self::P256)
                .or_else(|_| p384::SecretKey::from_sec1_der(der).map(Self::P384))
                .map_err(|_| Fail::Reason("the EC private key does not parse")),
            _ => Err(Fail::Reason("the PEM block is not a private key")),
        }
    }

    pub(super) fn from_pkcs8(der: &[u8]) -> Result<Self, Fail> {
        if let Ok(k) = rsa::RsaPrivateKey::from_pkcs8_der(der) {
            return Ok(Self::Rsa(Box::new(k)));
        }
        if let Ok(k) = p256::SecretKey::from_pkcs8_der(der) {
            return Ok(Self::P256(k));
        }
        if let Ok(k) = p384::SecretKey::from_pkcs8_der(der) {
            return Ok(Self::P384(k));
        }
        if ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).is_ok() {
            return Ok(Self::Ed25519(der.to_vec()));
        }
        Err(Fail::Reason(
            "the PKCS#8 private key is of no supported type",
        ))
    }

    fn generate_rsa(bits: usize) -> Result<Self, Fail> {
        rsa::RsaPrivateKey::new(&mut rand::thread_rng(), bits)
            .map(|k| Self::Rsa(Box::new(k)))
            .map_err(|_| Fail::Reason("RSA key generation failed"))
    }

    pub(super) fn pkcs8_der(&self) -> Result<Vec<u8>, Fail> {
        Ok(match self {
            Self::Rsa(k) => k.to_pkcs8_der().map_err(fail)?.as_bytes().to_vec(),
            Self::P256(k) => k.to_pkcs8_der().map_err(fail)?.as_bytes().to_vec(),
            Self::P384(k) => k.to_pkcs8_der().map_err(fail)?.as_bytes().to_vec(),
            Self::Ed25519(der) => der.clone(),
        })
    }

    /// sprig's `pemBlockForKey`.
    fn sprig_pem(&self) -> Result<String, Fail> {
        Ok(match self {
            Self::Rsa(k) => k.to_pkcs1_pem(LineEnding::LF).map_err(fail)?.to_string(),
            Self::P256(k) => k.to_sec1_pem(LineEnding::LF).map_err(fail)?.to_string(),
            Self::P384(k) => k.to_sec1_pem(LineEnding::LF).map_err(fail)?.to_string(),
            Self::Ed25519(der) => super::certs::pem_encode("PRIVATE KEY", der),
        })
    }

    fn rcgen(&self) -> Result<rcgen::KeyPair, Fail> {
        let der = self.pkcs8_der()?;
        let alg = match self {
            Self::Rsa(_) => &rcgen::PKCS_RSA_SHA256,
            Self::P256(_) => &rcgen::PKCS_ECDSA_P256_SHA256,
            Self::P384(_) => &rcgen::PKCS_ECDSA_P384_SHA384,
            Self::Ed25519(_) => &rcgen::PKCS_ED25519,
        };
        rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der.into(), alg)
            .map_err(|_| Fail::Reason("the key cannot sign certificates"))
    }
}

fn fail<E>(_: E) -> Fail {
    Fail::Reason("the key cannot be encoded")
}

/// `genPrivateKey TYPE`: a new key, `rsa` (4096 bits, the default), `ecdsa`
/// (P-256) or `ed25519`, PEM-encoded as sprig encodes each.
pub(super) fn gen_private_key(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 1, "1")?;
    let kind = a.string(0)?;
    let key = match kind.as_str() {
        "" | "rsa" => PrivateKey::generate_rsa(4096)?,
        "ecdsa" => PrivateKey::P256(p256::SecretKey::random(&mut rand::thread_rng())),
        "ed25519" => {
            let rng = ring::rand::SystemRandom::new();
            let der = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|_| Fail::Reason("Ed25519 key generation failed"))?;
            PrivateKey::Ed25519(der.as_ref().to_vec())
        }
        "dsa" => return Err(Fail::Reason("DSA keys are not supported")),
        _ => return Ok(go::string(format!("Unknown type {kind}"))),
    };
    Ok(go::string(key.sprig_pem()?))
}

/// A certificate and its key, as sprig's templates use it: `.Cert`, `.Key`.
fn certificate_value(cert: String, key: String) -> Value {
    Value::Map(HashMap::from([
        ("Cert".to_string(), go::string(cert)),
        ("Key".to_string(), go::string(key)),
    ]))
}

/// sprig's `getBaseCertTemplate`.
fn base_params(
    cn: &str,
    ips: &Value,
    dns: &Value,
    days: i64,
) -> Result<rcgen::CertificateParams, Fail> {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn.to_string());
    for ip in list_of_strings(ips, "IP addresses")? {
        let ip: std::net::IpAddr = ip
            .parse()
            .map_err(|_| Fail::Reason("an IP address does not parse"))?;
        params.subject_alt_names.push(rcgen::SanType::IpAddress(ip));
    }
    for name in list_of_strings(dns, "DNS names")? {
        let name = name
            .try_into()
            .map_err(|_| Fail::Reason("a DNS name is not valid"))?;
        params.subject_alt_names.push(rcgen::SanType::DnsName(name));
    }
    let now = time::OffsetDateTime::now_utc();
    let seconds = days
        .checked_mul(86_400)
        .ok_or(Fail::Reason("the validity in days is out of range"))?;
    params.not_before = now;
    params.not_after = now
        .checked_add(time::Duration::seconds(seconds))
        .filter(|t| t.year() <= 9999)
        .ok_or(Fail::Reason("the validity in days is out of range"))?;
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyEncipherment,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let mut serial = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut serial);
    serial[0] &= 0x7f;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn list_of_strings(value: &Value, _what: &'static str) -> Result<Vec<String>, Fail> {
    match value {
        Value::Array(items) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(Fail::Reason("every list item must be a string")),
            })
            .collect(),
        Value::Nil | Value::NoValue => Ok(Vec::new()),
        _ => Err(Fail::Reason("IP addresses and DNS names must be lists")),
    }
}

fn ca(cn: &str, days: i64, key: PrivateKey) -> Result<Value, Fail> {
    let mut params = base_params(cn, &Value::Nil, &Value::Nil, days)?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages.push(rcgen::KeyUsagePurpose::KeyCertSign);
    params.extended_key_usages.clear();
    params.use_authority_key_identifier_extension = false;
    let pair = key.rcgen()?;
    let cert = params
        .self_signed(&pair)
        .map_err(|_| Fail::Reason("the certificate cannot be made"))?;
    Ok(certificate_value(cert.pem(), key.sprig_pem()?))
}

/// `genCA CN DAYS`.
pub(super) fn gen_ca(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 2, "2")?;
    ca(&a.string(0)?, a.int(1)?, PrivateKey::generate_rsa(2048)?)
}

/// `genCAWithKey CN DAYS KEY`.
pub(super) fn gen_ca_with_key(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 3, "3")?;
    ca(
        &a.string(0)?,
        a.int(1)?,
        PrivateKey::from_pem(&a.string(2)?)?,
    )
}

fn self_signed(a: &Args<'_>, key: PrivateKey) -> Result<Value, Fail> {
    let params = base_params(&a.string(0)?, a.value(1), a.value(2), a.int(3)?)?;
    let pair = key.rcgen()?;
    let cert = params
        .self_signed(&pair)
        .map_err(|_| Fail::Reason("the certificate cannot be made"))?;
    Ok(certificate_value(cert.pem(), key.sprig_pem()?))
}

/// `genSelfSignedCert CN IPS DNS DAYS`.
pub(super) fn gen_self_signed_cert(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 4, "4")?;
    self_signed(&a, PrivateKey::generate_rsa(2048)?)
}

/// `genSelfSignedCertWithKey CN IPS DNS DAYS KEY`.
pub(super) fn gen_self_signed_cert_with_key(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 5, "5")?;
    let key = PrivateKey::from_pem(&a.string(4)?)?;
    self_signed(&a, key)
}

fn signed(a: &Args<'_>, key: PrivateKey) -> Result<Value, Fail> {
    let (Value::Map(ca) | Value::Object(ca)) = a.value(4) else {
        return Err(Fail::Reason(
            "the CA must be what genCA returns (.Cert and .Key)",
        ));
    };
    let part = |name: &str| ca.get(name).map(strval).unwrap_or_default();
    let ca_key = PrivateKey::from_pem(&part("Key"))?.rcgen()?;
    let ca_params = rcgen::CertificateParams::from_ca_cert_pem(&part("Cert"))
        .map_err(|_| Fail::Reason("the CA certificate does not parse"))?;
    // rcgen signs with an issuer certificate; made again from the CA's own
    // fields, it names the same subject and key.
    let issuer = ca_params
        .self_signed(&ca_key)
        .map_err(|_| Fail::Reason("the CA key does not match the CA certificate"))?;
    let params = base_params(&a.string(0)?, a.value(1), a.value(2), a.int(3)?)?;
    let pair = key.rcgen()?;
    let cert = params
        .signed_by(&pair, &issuer, &ca_key)
        .map_err(|_| Fail::Reason("the certificate cannot be made"))?;
    Ok(certificate_value(cert.pem(), key.sprig_pem()?))
}

/// `genSignedCert CN IPS DNS DAYS CA`.
pub(super) fn gen_signed_cert(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 5, "5")?;
    signed(&a, PrivateKey::generate_rsa(2048)?)
}

/// `genSignedCertWithKey CN IPS DNS DAYS CA KEY`.
pub(super) fn gen_signed_cert_with_key(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 6, "6")?;
    let key = PrivateKey::from_pem(&a.string(5)?)?;
    signed(&a, key)
}

/// `buildCustomCert CERT KEY` (both base64): the pair, once both parse.
pub(super) fn build_custom_cert(args: &[Value]) -> Result<Value, Fail> {
    let a = Args::exactly(args, 2, "2")?;
    let cert = STANDARD
        .decode(a.bytes(0)?)
        .map_err(|_| Fail::Reason("unable to decode base64 certificate"))?;
    let key = STANDARD
        .decode(a.bytes(1)?)
        .map_err(|_| Fail::Reason("unable to decode base64 private key"))?;
    let cert = String::from_utf8(cert).map_err(|_| Fail::Reason("unable to decode certificate"))?;
    let key = String::from_utf8(key).map_err(|_| Fail::Reason("unable to decode private key"))?;
    let block = pem::parse(cert.trim_start_matches(|c| c != '-'))
        .map_err(|_| Fail::Reason("unable to decode certificate"))?;
    x509_parser::parse_x509_certificate(block.contents())
        .map_err(|_| Fail::Reason("error parsing certificate"))?;
    PrivateKey::from_pem(&key)?;
    Ok(certificate_value(cert, key))
}
