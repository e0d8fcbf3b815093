//! The function map: ESO's v2 engine's, which is text/template's builtins,
//! sprig's functions (less `env`, `expandenv` and `getHostByName`) and ESO's own.
//! Where gtmpl-ng's Helm set matches sprig it is used as it is; the rest is here.
//!
//! Every function is registered through [`functions!`], which wraps it so that a
//! failure reports the function's name and a reason written here, never the
//! function's own message: messages of library functions may quote their
//! arguments, which are secret values. Functions written here fail with [`Fail`],
//! which holds only static text and counts, so they cannot quote arguments either.

mod certs;
mod collections;
mod crypto;
mod dates;
mod encoding;
mod go;
mod logic;
mod numbers;
mod paths;
mod strings;
mod versions;

use gtmpl_ng::helm_functions as helm;
use gtmpl_ng::{Func, FuncError, Value};

/// Starts the message of a wrapped function's failure; see [`failure`].
pub(super) const FAILURE_MARKER: &str = "\u{0}secretsync-function\u{0}";
const FIELD_SEPARATOR: char = '\u{1}';

/// Why a function written here failed. Only static text and counts, so no
/// argument can end up in an error message.
#[derive(Debug)]
pub(crate) enum Fail {
    /// A sentence saying what was wrong, without any value.
    Reason(&'static str),
    /// Wrong number of arguments.
    Arity { want: &'static str, got: usize },
    /// Argument `index` (0-based) is not of the type the function takes.
    Type {
        index: usize,
        want: &'static str,
        got: &'static str,
    },
    /// The engine refused a value the function was about to produce.
    Engine(String),
}

impl Fail {
    fn reason(&self) -> String {
        match self {
            Fail::Reason(reason) => (*reason).to_string(),
            Fail::Arity { want, got } => {
                format!("wrong number of arguments: want {want}, got {got}")
            }
            Fail::Type { index, want, got } => format!(
                "argument {} has the wrong type: expected {want}, got {got}",
                index + 1
            ),
            Fail::Engine(reason) => reason.clone(),
        }
    }
}

impl From<FuncError> for Fail {
    fn from(error: FuncError) -> Self {
        Fail::Engine(reason_of(&error))
    }
}

/// A reason for a library function's failure, from the kind of error alone.
fn reason_of(error: &FuncError) -> String {
    match error {
        FuncError::UnableToConvertFromValue => "an argument has the wrong type".into(),
        FuncError::AtLeastXArgs(_, n) => format!("needs at least {n} argument(s)"),
        FuncError::ExactlyXArgs(_, n) => format!("needs exactly {n} argument(s)"),
        FuncError::TooMuchOutput { what, limit, .. } => {
            format!("would produce more {what} than the {limit} allowed")
        }
        FuncError::IndexOutOfRange { .. } => "index out of range".into(),
        FuncError::InvalidValidity { .. } => "the validity is out of range".into(),
        _ => String::new(),
    }
}

/// The error a wrapped function returns: its name and a reason, marked so that
/// [`super::error`] can tell it from the engine's own messages.
fn failure(name: &str, reason: String) -> FuncError {
    FuncError::Generic(format!("{FAILURE_MARKER}{name}{FIELD_SEPARATOR}{reason}"))
}

/// Reads a message made by [`failure`]: the function's name and the reason.
pub(super) fn parse_failure(message: &str) -> Option<(&str, &str)> {
    message
        .strip_prefix(FAILURE_MARKER)?
        .split_once(FIELD_SEPARATOR)
}

/// Registers functions: `"name" => ours path` for a function written here
/// (`fn(&[Value]) -> Result<Value, Fail>`), `"name" => lib path` for one of
/// gtmpl-ng's (a [`Func`]).
macro_rules! functions {
    ($( $name:literal => $kind:ident $f:path ),* $(,)?) => {
        &[ $( ($name, {
            fn wrapped(args: &[Value]) -> Result<Value, FuncError> {
                functions!(@call $kind $f, $name, args)
            }
            wrapped as Func
        }) ),* ]
    };
    (@call ours $f:path, $name:literal, $args:ident) => {
        $f($args).map_err(|e: Fail| failure($name, e.reason()))
    };
    (@call lib $f:path, $name:literal, $args:ident) => {
        $f($args).map_err(|e| failure($name, reason_of(&e)))
    };
}

/// Functions ESO leaves out of its map for safety, and why. A template that
/// calls one fails to parse with this reason.
pub(super) const REFUSED: &[(&str, &str)] = &[
    (
        "env",
        "it would read the controller's environment (ESO leaves it out too)",
    ),
    (
        "expandenv",
        "it would read the controller's environment (ESO leaves it out too)",
    ),
    (
        "getHostByName",
        "it would make DNS lookups from the controller (ESO leaves it out too)",
    ),
];

/// Every function a template may call, by name.
pub(super) fn all() -> impl Iterator<Item = (&'static str, Func)> {
    // `and` and `or` are the engine's own: it evaluates their arguments lazily
    // only when it recognises these exact functions, and they cannot fail with a
    // value in the message (they fail only when called with no arguments).
    let lazy: [(&'static str, Func); 2] = [
        ("and", gtmpl_ng::funcs::and as Func),
        ("or", gtmpl_ng::funcs::or as Func),
    ];
    lazy.into_iter()
        .chain(BUILTINS.iter().copied())
        .chain(SPRIG.iter().copied())
}

/// text/template's builtins (`and` and `or` aside).
static BUILTINS: &[(&str, Func)] = functions! {
    "eq" => lib gtmpl_ng::funcs::eq,
    "ne" => lib gtmpl_ng::funcs::ne,
    "lt" => lib gtmpl_ng::funcs::lt,
    "le" => lib gtmpl_ng::funcs::le,
    "gt" => lib gtmpl_ng::funcs::gt,
    "ge" => lib gtmpl_ng::funcs::ge,
    "len" => ours collections::len,
    "not" => lib gtmpl_ng::funcs::not,
    "urlquery" => lib gtmpl_ng::funcs::urlquery,
    "html" => lib gtmpl_ng::funcs::html,
    "js" => lib gtmpl_ng::funcs::js,
    "print" => lib gtmpl_ng::funcs::print,
    "println" => lib gtmpl_ng::funcs::println,
    "printf" => lib gtmpl_ng::funcs::printf,
    "index" => lib gtmpl_ng::funcs::index,
    "call" => lib gtmpl_ng::funcs::call,
};

/// sprig's functions, as ESO registers them, and ESO's own.
static SPRIG: &[(&str, Func)] = functions! {
    // Logic and defaults
    "default" => ours logic::default,
    "empty" => lib helm::logic::empty,
    "fail" => lib helm::logic::fail,
    "coalesce" => lib helm::logic::coalesce,
    "ternary" => lib helm::logic::ternary,
    "all" => ours logic::all,
    "any" => ours logic::any,
    // Strings
    "trim" => lib helm::string::trim,
    "trimAll" => ours strings::trim_all,
    "trimall" => ours strings::trim_all,
    "trimPrefix" => lib helm::string::trim_prefix,
    "trimSuffix" => lib helm::string::trim_suffix,
    "lower" => lib helm::string::lower,
    "upper" => lib helm::string::upper,
    "title" => ours strings::title,
    "untitle" => ours strings::untitle,
    "repeat" => lib helm::string::repeat,
    "substr" => ours strings::substr,
    "nospace" => lib helm::string::nospace,
    "trunc" => ours strings::trunc,
    "abbrev" => ours strings::abbrev,
    "abbrevboth" => ours strings::abbrevboth,
    "initials" => lib helm::string::initials,
    "randAlpha" => lib helm::string::rand_alpha,
    "randNumeric" => lib helm::string::rand_numeric,
    "randAlphaNum" => lib helm::string::rand_alpha_num,
    "randAscii" => lib helm::string::rand_ascii,
    "contains" => lib helm::string::contains,
    "hasPrefix" => lib helm::string::has_prefix,
    "hasSuffix" => lib helm::string::has_suffix,
    "quote" => ours strings::quote,
    "squote" => lib helm::string::squote,
    "cat" => lib helm::string::cat,
    "indent" => lib helm::string::indent,
    "nindent" => ours strings::nindent,
    "join" => ours strings::join,
    "split" => ours strings::split,
    "splitList" => ours strings::split_list,
    "splitn" => ours strings::splitn,
    "sortAlpha" => ours strings::sort_alpha,
    "wrap" => ours strings::wrap,
    "wrapWith" => ours strings::wrap_with,
    "hello" => ours strings::hello,
    "replace" => lib helm::string::replace,
    "plural" => lib helm::string::plural,
    "snakecase" => lib helm::string::snakecase,
    "camelcase" => ours strings::camelcase,
    "kebabcase" => lib helm::string::kebabcase,
    "swapcase" => lib helm::string::swapcase,
    "shuffle" => lib helm::string::shuffle,
    // JSON and YAML
    "toJson" => ours encoding::to_json,
    "mustToJson" => ours encoding::to_json,
    "toRawJson" => ours encoding::to_raw_json,
    "mustToRawJson" => ours encoding::to_raw_json,
    "toPrettyJson" => ours encoding::to_pretty_json,
    "mustToPrettyJson" => ours encoding::to_pretty_json,
    "fromYaml" => ours encoding::from_yaml,
    "fromJson" => ours encoding::from_json,
    "mustFromJson" => ours encoding::must_from_json,
    "toYaml" => ours encoding::to_yaml,
    // Hashes and crypto
    "sha1sum" => ours encoding::sha1sum,
    "sha256sum" => ours encoding::sha256sum,
    "adler32sum" => ours encoding::adler32sum,
    "sha512sum" => ours encoding::sha512sum,
    "htpasswd" => ours crypto::htpasswd,
    "bcrypt" => ours crypto::bcrypt_fn,
    "derivePassword" => ours crypto::derive_password,
    "encryptAES" => ours crypto::encrypt_aes,
    "decryptAES" => ours crypto::decrypt_aes,
    "genPrivateKey" => ours crypto::gen_private_key,
    "buildCustomCert" => ours crypto::build_custom_cert,
    "randBytes" => ours logic::rand_bytes,
    "genCA" => ours crypto::gen_ca,
    "genCAWithKey" => ours crypto::gen_ca_with_key,
    "genSelfSignedCert" => ours crypto::gen_self_signed_cert,
    "genSelfSignedCertWithKey" => ours crypto::gen_self_signed_cert_with_key,
    "genSignedCert" => ours crypto::gen_signed_cert,
    "genSignedCertWithKey" => ours crypto::gen_signed_cert_with_key,
    // Data structures
    "dict" => lib helm::utils::dict,
    "list" => lib helm::utils::list,
    "tuple" => ours collections::tuple,
    "chunk" => ours collections::chunk,
    "mustChunk" => ours collections::chunk,
    // Encoding
    "b64enc" => ours encoding::b64enc,
    "b64dec" => ours encoding::b64dec,
    "b32enc" => ours encoding::b32enc,
    "b32dec" => ours encoding::b32dec,
    "hexdec" => ours encoding::hexdec,
    // Integer and float math
    "add" => ours numbers::add,
    "sub" => ours numbers::sub,
    "div" => ours numbers::div,
    "mod" => ours numbers::modulo,
    "mul" => ours numbers::mul,
    "add1" => ours numbers::add1,
    "max" => ours numbers::max,
    "biggest" => ours numbers::max,
    "randInt" => ours numbers::rand_int,
    "toDecimal" => ours numbers::to_decimal,
    "min" => ours numbers::min,
    "addf" => ours numbers::addf,
    "add1f" => ours numbers::add1f,
    "subf" => ours numbers::subf,
    "divf" => ours numbers::divf,
    "mulf" => ours numbers::mulf,
    "maxf" => lib helm::math::maxf,
    "minf" => lib helm::math::minf,
    "floor" => lib helm::math::floor,
    "ceil" => lib helm::math::ceil,
    "round" => lib helm::math::round,
    // Types
    "atoi" => lib helm::types::atoi,
    "float64" => lib helm::types::float64,
    "int" => lib helm::types::int,
    "int64" => lib helm::types::int64,
    "toString" => lib helm::types::to_string,
    "toStrings" => lib helm::types::to_strings,
    "typeOf" => ours logic::type_of,
    "kindOf" => ours logic::kind_of,
    "typeIs" => lib helm::types::type_is,
    "kindIs" => lib helm::types::kind_is,
    "typeIsLike" => ours logic::type_is_like,
    "deepEqual" => lib helm::types::deep_equal,
    // Lists
    "first" => ours collections::first,
    "mustFirst" => ours collections::first,
    "rest" => lib helm::lists::rest,
    "mustRest" => lib helm::lists::must_rest,
    "last" => ours collections::last,
    "mustLast" => ours collections::last,
    "initial" => lib helm::lists::initial,
    "mustInitial" => lib helm::lists::must_initial,
    "append" => lib helm::lists::append,
    "push" => lib helm::lists::append,
    "mustAppend" => lib helm::lists::must_append,
    "mustPush" => lib helm::lists::must_append,
    "prepend" => lib helm::lists::prepend,
    "mustPrepend" => lib helm::lists::must_prepend,
    "concat" => lib helm::lists::concat,
    "reverse" => lib helm::lists::reverse,
    "mustReverse" => lib helm::lists::must_reverse,
    "uniq" => lib helm::lists::uniq,
    "mustUniq" => lib helm::lists::must_uniq,
    "without" => lib helm::lists::without,
    "mustWithout" => lib helm::lists::must_without,
    "has" => ours collections::has,
    "mustHas" => ours collections::has,
    "compact" => ours collections::compact,
    "mustCompact" => ours collections::compact,
    "slice" => lib helm::lists::slice,
    "mustSlice" => lib helm::lists::must_slice,
    "until" => ours numbers::until,
    "untilStep" => ours numbers::until_step,
    "seq" => ours numbers::seq,
    // Dictionaries
    "get" => lib helm::dicts::get,
    "set" => lib helm::dicts::set,
    "unset" => lib helm::dicts::unset,
    "hasKey" => lib helm::dicts::has_key,
    "keys" => lib helm::dicts::keys,
    "values" => lib helm::dicts::values,
    "pick" => lib helm::dicts::pick,
    "omit" => lib helm::dicts::omit,
    "merge" => ours collections::merge,
    "mustMerge" => ours collections::merge,
    "mergeOverwrite" => ours collections::merge_overwrite,
    "mustMergeOverwrite" => ours collections::merge_overwrite,
    "deepCopy" => lib helm::dicts::deep_copy,
    "mustDeepCopy" => lib helm::dicts::must_deep_copy,
    "pluck" => ours collections::pluck,
    "dig" => ours collections::dig,
    // Paths
    "base" => lib helm::paths::base,
    "dir" => lib helm::paths::dir,
    "clean" => ours paths::clean,
    "ext" => lib helm::paths::ext,
    "isAbs" => lib helm::paths::is_abs,
    "osBase" => ours paths::os_base,
    "osClean" => ours paths::os_clean,
    "osDir" => ours paths::os_dir,
    "osExt" => ours paths::os_ext,
    "osIsAbs" => ours paths::os_is_abs,
    // Regular expressions
    "regexMatch" => lib helm::regex::regex_match,
    "mustRegexMatch" => lib helm::regex::must_regex_match,
    "regexFindAll" => lib helm::regex::regex_find_all,
    "mustRegexFindAll" => lib helm::regex::must_regex_find_all,
    "regexFind" => lib helm::regex::regex_find,
    "mustRegexFind" => lib helm::regex::must_regex_find,
    "regexReplaceAll" => ours logic::regex_replace_all,
    "mustRegexReplaceAll" => ours logic::regex_replace_all,
    "regexReplaceAllLiteral" => ours logic::regex_replace_all_literal,
    "mustRegexReplaceAllLiteral" => ours logic::regex_replace_all_literal,
    "regexSplit" => lib helm::regex::regex_split,
    "mustRegexSplit" => lib helm::regex::must_regex_split,
    "regexQuoteMeta" => ours strings::regex_quote_meta,
    // UUIDs
    "uuidv4" => lib helm::misc::uuidv4,
    // URLs and SemVer
    "urlParse" => ours paths::url_parse,
    "urlJoin" => ours paths::url_join,
    "semver" => ours versions::semver_parse,
    "semverCompare" => ours versions::semver_compare,
    // Dates
    "now" => ours dates::now_fn,
    "date" => ours dates::date,
    "dateInZone" => ours dates::date_in_zone,
    "date_in_zone" => ours dates::date_in_zone,
    "dateModify" => ours dates::date_modify,
    "date_modify" => ours dates::date_modify,
    "mustDateModify" => ours dates::must_date_modify,
    "must_date_modify" => ours dates::must_date_modify,
    "ago" => ours dates::ago,
    "duration" => ours dates::duration,
    "durationRound" => ours dates::duration_round,
    "htmlDate" => ours dates::html_date,
    "htmlDateInZone" => ours dates::html_date_in_zone,
    "toDate" => ours dates::to_date,
    "mustToDate" => ours dates::must_to_date,
    "unixEpoch" => ours dates::unix_epoch,
    // ESO's own: certificates, keys, keystores
    "filterPEM" => ours certs::filter_pem,
    "filterCertChain" => ours certs::filter_cert_chain,
    "certSANs" => ours certs::cert_sans,
    "pkcs12key" => ours certs::pkcs12key,
    "pkcs12keyPass" => ours certs::pkcs12key_pass,
    "pkcs12cert" => ours certs::pkcs12cert,
    "pkcs12certPass" => ours certs::pkcs12cert_pass,
    "pemToPkcs12" => ours certs::pem_to_pkcs12,
    "pemToPkcs12Pass" => ours certs::pem_to_pkcs12_pass,
    "fullPemToPkcs12" => ours certs::full_pem_to_pkcs12,
    "fullPemToPkcs12Pass" => ours certs::full_pem_to_pkcs12_pass,
    "pemTruststoreToPKCS12" => ours certs::pem_truststore_to_pkcs12,
    "pemTruststoreToPKCS12Pass" => ours certs::pem_truststore_to_pkcs12_pass,
    "jwkPublicKeyPem" => ours certs::jwk_public_key_pem,
    "jwkPrivateKeyPem" => ours certs::jwk_private_key_pem,
    "rsaDecrypt" => ours certs::rsa_decrypt,
};
