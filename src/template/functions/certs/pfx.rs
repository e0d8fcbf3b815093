//! PKCS#12 files read the way ESO reads them, with go-pkcs12's `DecodeChain`
//! (v0.7, the version ESO builds with):
//!
//! - the file is a version 3 PFX whose authenticated safe is `data`, holding
//!   one or two content infos, each `data` or `encryptedData`;
//! - the MAC (SHA-1, SHA-256 or SHA-512) is checked with the password as a
//!   zero-terminated BMPString; an empty password that fails is tried again
//!   as no bytes at all, and that form is then used to decrypt; a file with no
//!   MAC opens only with the empty password;
//! - encrypted contents and shrouded keys are PBES2 (PBKDF2 with HMAC-SHA-1,
//!   -256 or -512, AES-CBC) with the password as UTF-8, or the legacy PKCS#12
//!   PBEs (SHA-1 with 3DES, RC2-128 or RC2-40) with the BMPString;
//! - the bags are read in file order: the first certificate bag is "the
//!   certificate", every later one a CA certificate, in order, whether or not
//!   it belongs to the certificate's chain; there is at most one key bag
//!   (plain or shrouded); other bags are passed over;
//! - a file without a certificate or without a key does not decode: a
//!   keystore of certificates only (a truststore) is an error.
//!
//! Errors say what is wrong with the file, never what is in it.

use cbc::cipher::{BlockCipher, BlockDecryptMut, KeyInit, KeyIvInit, block_padding::Pkcs7};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::encrypted_data::EncryptedData;
use hmac::Mac;
use pkcs5::pbes2;
use pkcs8::ObjectIdentifier;
use pkcs8::der::asn1::{ContextSpecific, OctetString};
use pkcs8::der::{Any, Decode, Encode};
use pkcs8::spki::AlgorithmIdentifierOwned;
use pkcs12::cert_type::CertBag;
use pkcs12::kdf::{Pkcs12KeyType, derive_key};
use pkcs12::mac_data::MacData;
use pkcs12::pbe_params::{EncryptedPrivateKeyInfo, Pkcs12PbeParams};
use pkcs12::pfx::Pfx;
use pkcs12::safe_bag::SafeContents;
use x509_parser::prelude::{FromDer, X509Certificate};
use zeroize::Zeroizing;

use super::Fail;

/// Wrong password, or not a PKCS#12 file: the MAC does not match, a
/// structure does not parse, or decrypted data is not padded right.
const NOT_DECODED: &str = "the keystore does not decode with this password (or is not PKCS#12)";
const UNSUPPORTED: &str = "the keystore uses an encryption or MAC algorithm that is not supported";

const OID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
const OID_ENCRYPTED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.6");
const OID_KEY_BAG: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.12.10.1.1");
const OID_SHROUDED_KEY_BAG: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.12.10.1.2");
const OID_CERT_BAG: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.12.10.1.3");
const OID_X509_CERTIFICATE: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.22.1");
const OID_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
const OID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const OID_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
const OID_PBE_SHA1_3DES: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.12.1.3");
const OID_PBE_SHA1_RC2_128: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.12.1.5");
const OID_PBE_SHA1_RC2_40: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.12.1.6");
const OID_PBES2: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.5.13");

/// More key-derivation rounds than any keystore tool writes (OpenSSL 2,048,
/// Java 10,000, the newest defaults a few hundred thousand): a file asking
/// for more would hold a template's thread for minutes, so it is refused.
const MAX_ITERATIONS: i64 = 1_000_000;

fn check_iterations(iterations: i64) -> Result<(), Fail> {
    if iterations > MAX_ITERATIONS {
        return Err(Fail::Reason(
            "the keystore asks for more than 1,000,000 key-derivation iterations",
        ));
    }
    Ok(())
}

/// A keystore's key and certificates, as `DecodeChain` gives them.
pub(super) struct Chain {
    /// The private key, PKCS#8 DER.
    pub key: Zeroizing<Vec<u8>>,
    /// The first certificate bag's certificate, DER.
    pub certificate: Vec<u8>,
    /// Every later certificate bag's certificate, DER, in file order.
    pub ca_certs: Vec<Vec<u8>>,
}

/// The password in the two forms PKCS#12 uses.
struct Password<'a> {
    /// UTF-16BE, zero-terminated (or no bytes at all, the empty password's
    /// other form): the legacy PBEs and the MAC.
    bmp: Zeroizing<Vec<u8>>,
    /// UTF-8: PBES2.
    utf8: &'a str,
}

fn not_decoded<E>(_: E) -> Fail {
    Fail::Reason(NOT_DECODED)
}

/// go-pkcs12's `bmpStringZeroTerminated`: UCS-2 only.
fn bmp_zero_terminated(password: &str) -> Result<Zeroizing<Vec<u8>>, Fail> {
    let mut out = Zeroizing::new(Vec::with_capacity(password.len() * 2 + 2));
    for c in password.chars() {
        let unit = u16::try_from(u32::from(c)).map_err(|_| {
            Fail::Reason(
                "the keystore password has characters outside UCS-2, which PKCS#12 cannot hold",
            )
        })?;
        out.extend_from_slice(&unit.to_be_bytes());
    }
    out.extend_from_slice(&[0, 0]);
    Ok(out)
}

/// The content of a `data` content info (an OCTET STRING).
fn data_content(content: &Any) -> Result<Vec<u8>, Fail> {
    let der = content.to_der().map_err(not_decoded)?;
    Ok(OctetString::from_der(&der)
        .map_err(not_decoded)?
        .into_bytes())
}

/// Whether the MAC over `content` matches with this form of the password.
fn mac_matches(mac: &MacData, content: &[u8], bmp: &[u8]) -> Result<bool, Fail> {
    check_iterations(mac.iterations.into())?;
    macro_rules! check {
        ($hash:ty, $len:expr) => {{
            let key = Zeroizing::new(derive_key::<$hash>(
                bmp,
                mac.mac_salt.as_bytes(),
                Pkcs12KeyType::Mac,
                mac.iterations,
                $len,
            ));
            let mut hmac = <hmac::Hmac<$hash> as Mac>::new_from_slice(&key).map_err(not_decoded)?;
            hmac.update(content);
            Ok(hmac.verify_slice(mac.mac.digest.as_bytes()).is_ok())
        }};
    }
    match mac.mac.algorithm.oid {
        OID_SHA1 => check!(sha1::Sha1, 20),
        OID_SHA256 => check!(sha2::Sha256, 32),
        OID_SHA512 => check!(sha2::Sha512, 64),
        _ => Err(Fail::Reason(UNSUPPORTED)),
    }
}

/// The parameters of an algorithm, DER.
fn parameters(alg: &AlgorithmIdentifierOwned) -> Result<Vec<u8>, Fail> {
    alg.parameters
        .as_ref()
        .ok_or(Fail::Reason(NOT_DECODED))?
        .to_der()
        .map_err(not_decoded)
}

/// A legacy PKCS#12 PBE (RFC 7292 appendix B): key and IV from SHA-1 over
/// the BMPString password, then CBC with PKCS#7 padding.
fn pbe_sha1<C>(
    alg: &AlgorithmIdentifierOwned,
    data: &[u8],
    bmp: &[u8],
    key_len: usize,
) -> Result<Zeroizing<Vec<u8>>, Fail>
where
    C: BlockCipher + BlockDecryptMut + KeyInit,
{
    let params = <Pkcs12PbeParams as Decode>::from_der(&parameters(alg)?).map_err(not_decoded)?;
    check_iterations(params.iterations.into())?;
    let salt = params.salt.as_bytes();
    let key = Zeroizing::new(derive_key::<sha1::Sha1>(
        bmp,
        salt,
        Pkcs12KeyType::EncryptionKey,
        params.iterations,
        key_len,
    ));
    let iv = derive_key::<sha1::Sha1>(bmp, salt, Pkcs12KeyType::Iv, params.iterations, 8);
    let decryptor = cbc::Decryptor::<C>::new_from_slices(&key, &iv).map_err(not_decoded)?;
    decryptor
        .decrypt_padded_vec_mut::<Pkcs7>(data)
        .map(Zeroizing::new)
        .map_err(not_decoded)
}

/// PBES2 with what go-pkcs12 takes: PBKDF2 with HMAC-SHA-1, -256 or -512,
/// and AES-128, -192 or -256 in CBC mode.
fn pbes2_decrypt(
    alg: &AlgorithmIdentifierOwned,
    data: &[u8],
    utf8: &str,
) -> Result<Zeroizing<Vec<u8>>, Fail> {
    let der = parameters(alg)?;
    let params = pbes2::Parameters::from_der(&der).map_err(|_| Fail::Reason(UNSUPPORTED))?;
    let prf_supported = match &params.kdf {
        pbes2::Kdf::Pbkdf2(kdf) => matches!(
            kdf.prf,
            pbes2::Pbkdf2Prf::HmacWithSha1
                | pbes2::Pbkdf2Prf::HmacWithSha256
                | pbes2::Pbkdf2Prf::HmacWithSha512
        ),
        _ => false,
    };
    let cipher_supported = matches!(
        params.encryption,
        pbes2::EncryptionScheme::Aes128Cbc { .. }
            | pbes2::EncryptionScheme::Aes192Cbc { .. }
            | pbes2::EncryptionScheme::Aes256Cbc { .. }
    );
    if !prf_supported || !cipher_supported {
        return Err(Fail::Reason(UNSUPPORTED));
    }
    if let pbes2::Kdf::Pbkdf2(kdf) = &params.kdf {
        check_iterations(kdf.iteration_count.into())?;
    }
    params
        .decrypt(utf8.as_bytes(), data)
        .map(Zeroizing::new)
        .map_err(not_decoded)
}

fn decrypt(
    alg: &AlgorithmIdentifierOwned,
    data: &[u8],
    password: &Password<'_>,
) -> Result<Zeroizing<Vec<u8>>, Fail> {
    if data.is_empty() {
        return Err(Fail::Reason(NOT_DECODED));
    }
    match alg.oid {
        OID_PBES2 => pbes2_decrypt(alg, data, password.utf8),
        OID_PBE_SHA1_3DES => pbe_sha1::<des::TdesEde3>(alg, data, &password.bmp, 24),
        OID_PBE_SHA1_RC2_128 => pbe_sha1::<rc2::Rc2>(alg, data, &password.bmp, 16),
        OID_PBE_SHA1_RC2_40 => pbe_sha1::<rc2::Rc2>(alg, data, &password.bmp, 5),
        _ => Err(Fail::Reason(UNSUPPORTED)),
    }
}

/// The bags of one content info of the authenticated safe.
fn safe_contents(info: &ContentInfo, password: &Password<'_>) -> Result<SafeContents, Fail> {
    let data = match info.content_type {
        OID_DATA => Zeroizing::new(data_content(&info.content)?),
        OID_ENCRYPTED_DATA => {
            let der = info.content.to_der().map_err(not_decoded)?;
            let encrypted = EncryptedData::from_der(&der).map_err(not_decoded)?;
            if encrypted.version != CmsVersion::V0 {
                return Err(Fail::Reason(
                    "the keystore's encrypted data has a version other than 0",
                ));
            }
            let content = encrypted.enc_content_info.encrypted_content.as_ref();
            decrypt(
                &encrypted.enc_content_info.content_enc_alg,
                content.map(|c| c.as_bytes()).unwrap_or_default(),
                password,
            )?
        }
        _ => {
            return Err(Fail::Reason(
                "the keystore holds content other than data and encrypted data",
            ));
        }
    };
    SafeContents::from_der(&data).map_err(not_decoded)
}

/// A private key must be one PKCS#8 structure (go's `ParsePKCS8PrivateKey`).
fn pkcs8_key(der: Zeroizing<Vec<u8>>) -> Result<Zeroizing<Vec<u8>>, Fail> {
    pkcs8::PrivateKeyInfo::try_from(der.as_slice())
        .map_err(|_| Fail::Reason("the private key in the keystore is not PKCS#8"))?;
    Ok(der)
}

/// go-pkcs12's `DecodeChain` (see the module's comment).
pub(super) fn decode_chain(data: &[u8], password: &str) -> Result<Chain, Fail> {
    let pfx = Pfx::from_der(data).map_err(not_decoded)?;
    if pfx.auth_safe.content_type != OID_DATA {
        return Err(Fail::Reason(
            "the keystore is signed with a public key; only password-protected keystores are supported",
        ));
    }
    let content = data_content(&pfx.auth_safe.content)?;
    let mut password = Password {
        bmp: bmp_zero_terminated(password)?,
        utf8: password,
    };
    let empty_password = password.utf8.is_empty();
    match &pfx.mac_data {
        None if !empty_password => {
            return Err(Fail::Reason(
                "the keystore has no MAC; only the empty password opens it",
            ));
        }
        None => {}
        Some(mac) if mac_matches(mac, &content, &password.bmp)? => {}
        // The empty password is also tried as no bytes at all.
        Some(mac) if empty_password && mac_matches(mac, &content, &[])? => {
            password.bmp = Zeroizing::new(Vec::new());
        }
        Some(_) => return Err(Fail::Reason(NOT_DECODED)),
    }
    let infos = <Vec<ContentInfo> as Decode>::from_der(&content).map_err(not_decoded)?;
    if infos.is_empty() || infos.len() > 2 {
        return Err(Fail::Reason(
            "the keystore's authenticated safe holds other than one or two parts",
        ));
    }

    let mut key: Option<Zeroizing<Vec<u8>>> = None;
    let mut certificate: Option<Vec<u8>> = None;
    let mut ca_certs = Vec::new();
    for info in &infos {
        for bag in safe_contents(info, &password)? {
            match bag.bag_id {
                OID_CERT_BAG => {
                    let bag = ContextSpecific::<CertBag>::from_der(&bag.bag_value)
                        .map_err(not_decoded)?;
                    if bag.value.cert_id != OID_X509_CERTIFICATE {
                        return Err(Fail::Reason(
                            "a certificate bag in the keystore holds no X.509 certificate",
                        ));
                    }
                    let der = bag.value.cert_value.into_bytes();
                    // Exactly one certificate, as go's ParseCertificates.
                    match X509Certificate::from_der(&der) {
                        Ok(([], _)) => {}
                        _ => {
                            return Err(Fail::Reason(
                                "a certificate in the keystore does not parse",
                            ));
                        }
                    }
                    if certificate.is_none() {
                        certificate = Some(der);
                    } else {
                        ca_certs.push(der);
                    }
                }
                OID_KEY_BAG | OID_SHROUDED_KEY_BAG => {
                    if key.is_some() {
                        return Err(Fail::Reason("the keystore holds more than one private key"));
                    }
                    let der = if bag.bag_id == OID_KEY_BAG {
                        let value = ContextSpecific::<Any>::from_der(&bag.bag_value)
                            .map_err(not_decoded)?;
                        Zeroizing::new(value.value.to_der().map_err(not_decoded)?)
                    } else {
                        let value =
                            ContextSpecific::<EncryptedPrivateKeyInfo>::from_der(&bag.bag_value)
                                .map_err(not_decoded)?;
                        decrypt(
                            &value.value.encryption_algorithm,
                            value.value.encrypted_data.as_bytes(),
                            &password,
                        )?
                    };
                    key = Some(pkcs8_key(der)?);
                }
                _ => {}
            }
        }
    }
    let certificate = certificate.ok_or(Fail::Reason("the keystore holds no certificate"))?;
    let key = key.ok_or(Fail::Reason(
        "the keystore holds no private key (a keystore of certificates only does not decode, as in ESO)",
    ))?;
    Ok(Chain {
        key,
        certificate,
        ca_certs,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{go, pem_encode, pkcs12cert};
    use super::*;
    use pkcs12::safe_bag::SafeBag;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/templates");

    fn pem_der(name: &str) -> Vec<u8> {
        let text = std::fs::read(format!("{FIXTURES}/{name}")).expect("fixture");
        pem::parse(text).expect("PEM fixture").into_contents()
    }

    fn cert_bag(name: &str) -> SafeBag {
        let bag = CertBag {
            cert_id: OID_X509_CERTIFICATE,
            cert_value: OctetString::new(pem_der(name)).expect("octets"),
        };
        SafeBag {
            bag_id: OID_CERT_BAG,
            // SafeBag writes the [0] around bag_value itself.
            bag_value: bag.to_der().expect("encodes"),
            bag_attributes: None,
        }
    }

    fn key_bag() -> SafeBag {
        SafeBag {
            bag_id: OID_KEY_BAG,
            bag_value: pem_der("leaf.key"),
            bag_attributes: None,
        }
    }

    fn data(der: Vec<u8>) -> ContentInfo {
        let octets = OctetString::new(der)
            .expect("octets")
            .to_der()
            .expect("encodes");
        ContentInfo {
            content_type: OID_DATA,
            content: Any::from_der(&octets).expect("DER"),
        }
    }

    /// A PFX with no MAC and nothing encrypted: each inner list is one part
    /// of the authenticated safe, its bags in that order.
    fn pfx(parts: Vec<Vec<SafeBag>>) -> Vec<u8> {
        let infos: Vec<ContentInfo> = parts
            .into_iter()
            .map(|bags| data(bags.to_der().expect("encodes")))
            .collect();
        Pfx {
            version: pkcs12::pfx::Version::V3,
            auth_safe: data(infos.to_der().expect("encodes")),
            mac_data: None,
        }
        .to_der()
        .expect("encodes")
    }

    fn reason(result: Result<Chain, Fail>) -> &'static str {
        match result {
            Err(Fail::Reason(r)) => r,
            Err(_) => "another failure",
            Ok(_) => "decoded",
        }
    }

    /// A MAC asking for two million key-derivation rounds is refused before
    /// any is run (the MAC itself is junk: it is never computed).
    #[test]
    fn a_keystore_asking_for_too_many_iterations_is_refused() {
        let plain = pfx(vec![vec![cert_bag("leaf.crt"), key_bag()]]);
        let mut file = Pfx::from_der(&plain).expect("decodes");
        file.mac_data = Some(MacData {
            mac: pkcs12::digest_info::DigestInfo {
                algorithm: AlgorithmIdentifierOwned {
                    oid: OID_SHA256,
                    parameters: None,
                },
                digest: OctetString::new(vec![0; 32]).expect("octets"),
            },
            mac_salt: OctetString::new(vec![1; 8]).expect("octets"),
            iterations: 2_000_000,
        });
        let file = file.to_der().expect("encodes");
        assert_eq!(
            reason(decode_chain(&file, "pw")),
            "the keystore asks for more than 1,000,000 key-derivation iterations"
        );
    }

    /// go-pkcs12's DecodeChain takes the first certificate bag as the
    /// certificate, whether or not the key is its key, and every later one as
    /// a CA certificate, in file order, across the parts of the safe.
    #[test]
    fn the_first_certificate_bag_is_the_certificate() {
        let file = pfx(vec![
            vec![cert_bag("unrelated.crt"), cert_bag("leaf.crt")],
            vec![key_bag(), cert_bag("root.crt")],
        ]);
        let chain = decode_chain(&file, "").expect("decodes");
        assert_eq!(chain.certificate, pem_der("unrelated.crt"));
        assert_eq!(
            chain.ca_certs,
            vec![pem_der("leaf.crt"), pem_der("root.crt")]
        );
        assert_eq!(chain.key.as_slice(), pem_der("leaf.key").as_slice());
    }

    /// pkcs12cert on it: no single chain (the unrelated CA and the leaf are
    /// both ends), so ESO's pkcs12.go leaves the certificates as they are.
    #[test]
    fn pkcs12cert_leaves_disjunct_certificates_in_file_order() {
        let file = pfx(vec![vec![
            cert_bag("unrelated.crt"),
            cert_bag("leaf.crt"),
            key_bag(),
        ]]);
        let out = pkcs12cert(&[go::from_bytes(&file)])
            .map_err(|_| "fails")
            .expect("renders");
        let expected: String = ["unrelated.crt", "leaf.crt"]
            .iter()
            .map(|n| pem_encode("CERTIFICATE", &pem_der(n)))
            .collect();
        assert_eq!(go::strval(&out), expected);
    }

    #[test]
    fn what_decode_chain_refuses() {
        // a truststore: certificates, no key ("private key missing")
        let trust = pfx(vec![vec![cert_bag("leaf.crt"), cert_bag("root.crt")]]);
        assert!(reason(decode_chain(&trust, "")).starts_with("the keystore holds no private key"));
        // a key and no certificate ("certificate missing")
        let lone_key = pfx(vec![vec![key_bag()]]);
        assert_eq!(
            reason(decode_chain(&lone_key, "")),
            "the keystore holds no certificate"
        );
        // two keys ("expected exactly one key bag")
        let two_keys = pfx(vec![vec![cert_bag("leaf.crt"), key_bag(), key_bag()]]);
        assert_eq!(
            reason(decode_chain(&two_keys, "")),
            "the keystore holds more than one private key"
        );
        // three parts in the authenticated safe (one or two are read)
        let three = pfx(vec![vec![cert_bag("leaf.crt")], vec![key_bag()], vec![]]);
        assert_eq!(
            reason(decode_chain(&three, "")),
            "the keystore's authenticated safe holds other than one or two parts"
        );
        // no MAC: only the empty password opens it
        let fine = pfx(vec![vec![cert_bag("leaf.crt"), key_bag()]]);
        assert!(decode_chain(&fine, "").is_ok());
        assert_eq!(
            reason(decode_chain(&fine, "a password")),
            "the keystore has no MAC; only the empty password opens it"
        );
        // not PKCS#12 at all
        assert_eq!(reason(decode_chain(b"not a keystore", "")), NOT_DECODED);
    }
}
