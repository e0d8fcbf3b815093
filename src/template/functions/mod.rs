//! The function map: ESO's v2 engine's, which is text/template's builtins,
//! sprig's functions (less `env`, `expandenv` and `getHostByName`) and ESO's own.
//! Where gtmpl-ng's Helm set matches sprig it is used as it is; the rest is here.
//!
//! Every function is registered through [`functions!`], which wraps it so that a
//! failure reports the function's name and a reason written here, never the
//! function's own message: messages of library functions may quote their
//! arguments, which are secret values. Functions written here fail with [`Fail`],
//! which holds only static text and counts, so they cannot quote arguments either.

mod strings;

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
    "len" => lib gtmpl_ng::funcs::len,
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
    "default" => lib helm::logic::default,
    "empty" => lib helm::logic::empty,
    "fail" => lib helm::logic::fail,
    "coalesce" => lib helm::logic::coalesce,
    "ternary" => lib helm::logic::ternary,
    // Strings
    "trim" => lib helm::string::trim,
    "trimAll" => lib helm::string::trim_all,
    "trimPrefix" => lib helm::string::trim_prefix,
    "trimSuffix" => lib helm::string::trim_suffix,
    "lower" => lib helm::string::lower,
    "upper" => lib helm::string::upper,
    "title" => lib helm::string::title,
    "untitle" => lib helm::string::untitle,
    "repeat" => lib helm::string::repeat,
    "substr" => lib helm::string::substr,
    "nospace" => lib helm::string::nospace,
    "trunc" => lib helm::string::trunc,
    "abbrev" => lib helm::string::abbrev,
    "abbrevboth" => lib helm::string::abbrevboth,
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
    "replace" => lib helm::string::replace,
    "plural" => lib helm::string::plural,
    "snakecase" => lib helm::string::snakecase,
    "camelcase" => lib helm::string::camelcase,
    "kebabcase" => lib helm::string::kebabcase,
    "swapcase" => lib helm::string::swapcase,
    "shuffle" => lib helm::string::shuffle,
    // JSON and YAML
    "toJson" => lib helm::utils::to_json,
    "toPrettyJson" => lib helm::utils::to_pretty_json,
    "fromYaml" => lib helm::utils::from_yaml,
    "fromJson" => lib helm::utils::from_json,
    "toYaml" => lib helm::utils::to_yaml,
    // Hashes and crypto
    "sha1sum" => lib helm::crypto::sha1sum,
    "sha256sum" => lib helm::crypto::sha256sum,
    "sha512sum" => lib helm::crypto::sha512sum,
    "htpasswd" => lib helm::crypto::htpasswd,
    "genCA" => lib helm::certs::gen_ca,
    "genSelfSignedCert" => lib helm::certs::gen_self_signed_cert,
    "genSignedCert" => lib helm::certs::gen_signed_cert,
    // Data structures
    "dict" => lib helm::utils::dict,
    "list" => lib helm::utils::list,
    // Encoding
    "b64enc" => lib helm::encoding::b64enc,
    "b64dec" => lib helm::encoding::b64dec,
    "b32enc" => lib helm::encoding::b32enc,
    "b32dec" => lib helm::encoding::b32dec,
    // Integer and float math
    "add" => lib helm::math::math_add,
    "sub" => lib helm::math::math_subtract,
    "div" => lib helm::math::math_divide,
    "mod" => lib helm::math::math_modulo,
    "mul" => lib helm::math::math_multiply,
    "add1" => lib helm::math::add1,
    "max" => lib helm::math::max,
    "min" => lib helm::math::min,
    "addf" => lib helm::math::addf,
    "add1f" => lib helm::math::add1f,
    "subf" => lib helm::math::subf,
    "divf" => lib helm::math::divf,
    "mulf" => lib helm::math::mulf,
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
    "typeOf" => lib helm::types::type_of,
    "kindOf" => lib helm::types::kind_of,
    "typeIs" => lib helm::types::type_is,
    "kindIs" => lib helm::types::kind_is,
    "deepEqual" => lib helm::types::deep_equal,
    // Lists
    "first" => lib helm::lists::first,
    "mustFirst" => lib helm::lists::must_first,
    "rest" => lib helm::lists::rest,
    "mustRest" => lib helm::lists::must_rest,
    "last" => lib helm::lists::last,
    "mustLast" => lib helm::lists::must_last,
    "initial" => lib helm::lists::initial,
    "mustInitial" => lib helm::lists::must_initial,
    "append" => lib helm::lists::append,
    "mustAppend" => lib helm::lists::must_append,
    "prepend" => lib helm::lists::prepend,
    "mustPrepend" => lib helm::lists::must_prepend,
    "concat" => lib helm::lists::concat,
    "reverse" => lib helm::lists::reverse,
    "mustReverse" => lib helm::lists::must_reverse,
    "uniq" => lib helm::lists::uniq,
    "mustUniq" => lib helm::lists::must_uniq,
    "without" => lib helm::lists::without,
    "mustWithout" => lib helm::lists::must_without,
    "has" => lib helm::lists::has,
    "mustHas" => lib helm::lists::must_has,
    "compact" => lib helm::lists::compact,
    "mustCompact" => lib helm::lists::must_compact,
    "slice" => lib helm::lists::slice,
    "mustSlice" => lib helm::lists::must_slice,
    "until" => lib helm::lists::until,
    "untilStep" => lib helm::lists::until_step,
    "seq" => lib helm::lists::seq,
    // Dictionaries
    "get" => lib helm::dicts::get,
    "set" => lib helm::dicts::set,
    "unset" => lib helm::dicts::unset,
    "hasKey" => lib helm::dicts::has_key,
    "keys" => lib helm::dicts::keys,
    "values" => lib helm::dicts::values,
    "pick" => lib helm::dicts::pick,
    "omit" => lib helm::dicts::omit,
    "merge" => lib helm::dicts::merge,
    "mustMerge" => lib helm::dicts::must_merge,
    "mergeOverwrite" => lib helm::dicts::merge_overwrite,
    "mustMergeOverwrite" => lib helm::dicts::must_merge_overwrite,
    "deepCopy" => lib helm::dicts::deep_copy,
    "mustDeepCopy" => lib helm::dicts::must_deep_copy,
    "pluck" => lib helm::dicts::pluck,
    "dig" => lib helm::dicts::dig,
    // Paths
    "base" => lib helm::paths::base,
    "dir" => lib helm::paths::dir,
    "clean" => lib helm::paths::clean,
    "ext" => lib helm::paths::ext,
    "isAbs" => lib helm::paths::is_abs,
    // Regular expressions
    "regexMatch" => lib helm::regex::regex_match,
    "mustRegexMatch" => lib helm::regex::must_regex_match,
    "regexFindAll" => lib helm::regex::regex_find_all,
    "mustRegexFindAll" => lib helm::regex::must_regex_find_all,
    "regexFind" => lib helm::regex::regex_find,
    "mustRegexFind" => lib helm::regex::must_regex_find,
    "regexReplaceAll" => lib helm::regex::regex_replace_all,
    "mustRegexReplaceAll" => lib helm::regex::must_regex_replace_all,
    "regexReplaceAllLiteral" => lib helm::regex::regex_replace_all_literal,
    "mustRegexReplaceAllLiteral" => lib helm::regex::must_regex_replace_all_literal,
    "regexSplit" => lib helm::regex::regex_split,
    "mustRegexSplit" => lib helm::regex::must_regex_split,
    // UUIDs
    "uuidv4" => lib helm::misc::uuidv4,
};
