//! What a request asks for, read from its query string as the AWS Secrets
//! Manager Agent reads it (`secretId`, `versionId`, `versionStage`,
//! `refreshNow`; anything else is refused with its name), and from the
//! Lambda extension's parameter path (`name`, `withDecryption`, `version`,
//! `label`). A refusal is the 400 body the AWS agent writes, word for word.

/// A refused request: the text of the 400 answer.
#[derive(Debug, PartialEq, Eq)]
pub struct BadRequest(pub String);

/// A GetSecretValue request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretQuery {
    pub secret_id: String,
    pub version_id: Option<String>,
    pub version_stage: Option<String>,
    pub refresh_now: bool,
}

/// Which version of a parameter.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Selector {
    Version(u64),
    Label(String),
}

/// A GetParameter request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParameterQuery {
    pub name: String,
    pub with_decryption: bool,
    pub selector: Option<Selector>,
    pub refresh_now: bool,
}

impl ParameterQuery {
    /// The `Name` GetParameter takes: `name`, `name:VERSION` or `name:LABEL`.
    pub fn selected_name(&self) -> String {
        match &self.selector {
            None => self.name.clone(),
            Some(Selector::Version(version)) => format!("{}:{version}", self.name),
            Some(Selector::Label(label)) => format!("{}:{label}", self.name),
        }
    }
}

fn pairs(query: Option<&str>) -> url::form_urlencoded::Parse<'_> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
}

fn flag(value: &str, name: &str) -> Result<bool, BadRequest> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(BadRequest(format!("invalid {name} value"))),
    }
}

/// `/secretsmanager/get?secretId=...`.
pub fn secret_query(query: Option<&str>) -> Result<SecretQuery, BadRequest> {
    let mut asked = SecretQuery {
        secret_id: String::new(),
        version_id: None,
        version_stage: None,
        refresh_now: false,
    };
    for (key, value) in pairs(query) {
        match key.as_ref() {
            "secretId" => asked.secret_id = value.into_owned(),
            "versionId" => asked.version_id = Some(value.into_owned()),
            "versionStage" => asked.version_stage = Some(value.into_owned()),
            "refreshNow" => asked.refresh_now = flag(&value, "refreshNow")?,
            other => return Err(BadRequest(format!("unknown parameter: {other}"))),
        }
    }
    if asked.secret_id.is_empty() {
        return Err(BadRequest("missing parameter secretId".into()));
    }
    Ok(asked)
}

/// `/v1/SECRET_ID?versionStage=...`: the id is the rest of the path, taken
/// as it stands (not percent-decoded), as the AWS agent takes it.
pub fn secret_path(rest: &str, query: Option<&str>) -> Result<SecretQuery, BadRequest> {
    if rest.is_empty() {
        return Err(BadRequest("missing secret ID".into()));
    }
    let mut asked = SecretQuery {
        secret_id: rest.to_string(),
        version_id: None,
        version_stage: None,
        refresh_now: false,
    };
    for (key, value) in pairs(query) {
        match key.as_ref() {
            "versionId" => asked.version_id = Some(value.into_owned()),
            "versionStage" => asked.version_stage = Some(value.into_owned()),
            "refreshNow" => asked.refresh_now = flag(&value, "refreshNow")?,
            other => return Err(BadRequest(format!("unknown parameter: {other}"))),
        }
    }
    Ok(asked)
}

/// `/systemsmanager/parameters/get?name=...`.
pub fn parameter_query(query: Option<&str>) -> Result<ParameterQuery, BadRequest> {
    let mut asked = ParameterQuery {
        name: String::new(),
        with_decryption: false,
        selector: None,
        refresh_now: false,
    };
    let (mut version, mut label) = (None, None);
    for (key, value) in pairs(query) {
        match key.as_ref() {
            "name" => asked.name = value.into_owned(),
            "withDecryption" => asked.with_decryption = flag(&value, "withDecryption")?,
            "version" => {
                let number = value
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| BadRequest("invalid version value".into()))?;
                version = Some(number);
            }
            "label" if !value.is_empty() => label = Some(value.into_owned()),
            "label" => return Err(BadRequest("invalid label value".into())),
            "refreshNow" => asked.refresh_now = flag(&value, "refreshNow")?,
            other => return Err(BadRequest(format!("unknown parameter: {other}"))),
        }
    }
    if asked.name.is_empty() {
        return Err(BadRequest("missing parameter name".into()));
    }
    asked.selector = match (version, label) {
        (Some(_), Some(_)) => {
            return Err(BadRequest("version and label cannot both be given".into()));
        }
        (Some(version), None) => Some(Selector::Version(version)),
        (None, Some(label)) => Some(Selector::Label(label)),
        (None, None) => None,
    };
    Ok(asked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(text: &str) -> BadRequest {
        BadRequest(text.into())
    }

    #[test]
    fn secret_queries_read_as_the_agent_reads_them() {
        let asked = secret_query(Some(
            "secretId=arn%3Aaws%3Asecretsmanager%3Aeu-west-1%3A1%3Asecret%3Aa%2Fb&versionStage=AWSPREVIOUS&refreshNow=TRUE",
        ))
        .unwrap();
        assert_eq!(
            asked.secret_id,
            "arn:aws:secretsmanager:eu-west-1:1:secret:a/b"
        );
        assert_eq!(asked.version_stage.as_deref(), Some("AWSPREVIOUS"));
        assert_eq!(asked.version_id, None);
        assert!(asked.refresh_now);
        assert!(
            !secret_query(Some("secretId=a&refreshNow=0"))
                .unwrap()
                .refresh_now
        );
        assert_eq!(
            secret_query(Some("secretId=a&versionId=v1"))
                .unwrap()
                .version_id
                .as_deref(),
            Some("v1")
        );
    }

    #[test]
    fn secret_queries_are_refused_with_the_agents_words() {
        assert_eq!(secret_query(None), Err(bad("missing parameter secretId")));
        assert_eq!(
            secret_query(Some("versionStage=AWSCURRENT")),
            Err(bad("missing parameter secretId"))
        );
        assert_eq!(
            secret_query(Some("secretId=a&abc=123")),
            Err(bad("unknown parameter: abc"))
        );
        assert_eq!(
            secret_query(Some("secretId=a&refreshNow=123")),
            Err(bad("invalid refreshNow value"))
        );
    }

    #[test]
    fn the_path_form_takes_the_id_from_the_path() {
        let asked = secret_path("prod/db", Some("versionStage=AWSCURRENT")).unwrap();
        assert_eq!(asked.secret_id, "prod/db");
        assert_eq!(asked.version_stage.as_deref(), Some("AWSCURRENT"));
        assert_eq!(secret_path("", None), Err(bad("missing secret ID")));
        assert_eq!(
            secret_path("a", Some("secretId=b")),
            Err(bad("unknown parameter: secretId"))
        );
    }

    #[test]
    fn parameter_queries_read_as_the_lambda_extension_documents_them() {
        let asked =
            parameter_query(Some("name=%2Fapp%2Fkey&withDecryption=true&version=3")).unwrap();
        assert_eq!(asked.name, "/app/key");
        assert!(asked.with_decryption);
        assert_eq!(asked.selected_name(), "/app/key:3");
        let asked = parameter_query(Some("name=/app/key&label=blue")).unwrap();
        assert!(!asked.with_decryption);
        assert_eq!(asked.selected_name(), "/app/key:blue");
        assert_eq!(
            parameter_query(Some("name=/a")).unwrap().selected_name(),
            "/a"
        );
    }

    #[test]
    fn parameter_queries_are_refused_with_a_reason() {
        assert_eq!(parameter_query(None), Err(bad("missing parameter name")));
        assert_eq!(
            parameter_query(Some("name=a&version=x")),
            Err(bad("invalid version value"))
        );
        assert_eq!(
            parameter_query(Some("name=a&version=0")),
            Err(bad("invalid version value"))
        );
        assert_eq!(
            parameter_query(Some("name=a&withDecryption=yes")),
            Err(bad("invalid withDecryption value"))
        );
        assert_eq!(
            parameter_query(Some("name=a&version=1&label=x")),
            Err(bad("version and label cannot both be given"))
        );
        assert_eq!(
            parameter_query(Some("name=a&secretId=b")),
            Err(bad("unknown parameter: secretId"))
        );
    }
}
