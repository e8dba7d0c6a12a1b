//! The plain settings of the AWS pieces, read from the environment and
//! resolved at start-up (nothing is fetched here): which secret holds the
//! collector headers and where its API is ([`SecretSpec`]), and where the
//! process's credentials come from ([`CredentialSource`]).

use std::fmt;

use crate::options::Env;

fn get(env: &dyn Env, k: &str) -> Option<String> {
    env.get(k)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// `AWS_REGION`, else `AWS_DEFAULT_REGION`.
pub fn default_region(env: &dyn Env) -> Option<String> {
    get(env, "AWS_REGION").or_else(|| get(env, "AWS_DEFAULT_REGION"))
}

/// A static set of credentials. `Debug` shows nothing secret.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticKeys {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl fmt::Debug for StaticKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticKeys")
            .field("session_token", &self.session_token.is_some())
            .finish_non_exhaustive()
    }
}

/// Where the process's AWS credentials come from: the environment
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`),
/// else the container credentials endpoint
/// (`AWS_CONTAINER_CREDENTIALS_FULL_URI` or `..._RELATIVE_URI`, with
/// `AWS_CONTAINER_AUTHORIZATION_TOKEN` or `..._TOKEN_FILE`), as Lambda
/// gives them (the latter on SnapStart restores).
#[derive(Clone, PartialEq, Eq)]
pub enum CredentialSource {
    Static(StaticKeys),
    Container {
        uri: String,
        token: Option<String>,
        token_file: Option<String>,
    },
    None,
}

impl fmt::Debug for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CredentialSource::Static(_) => "CredentialSource::Static",
            CredentialSource::Container { .. } => "CredentialSource::Container",
            CredentialSource::None => "CredentialSource::None",
        })
    }
}

/// The ECS-style host of a relative container credentials URI.
const CONTAINER_HOST: &str = "http://169.254.170.2";

impl CredentialSource {
    pub fn from_env(env: &dyn Env) -> CredentialSource {
        let get = |k: &str| get(env, k);
        if let (Some(id), Some(secret)) = (get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY")) {
            return CredentialSource::Static(StaticKeys {
                access_key_id: id,
                secret_access_key: secret,
                session_token: get("AWS_SESSION_TOKEN"),
            });
        }
        let uri = get("AWS_CONTAINER_CREDENTIALS_FULL_URI").or_else(|| {
            get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
                .map(|rel| format!("{CONTAINER_HOST}{rel}"))
        });
        match uri {
            Some(uri) => CredentialSource::Container {
                uri,
                token: get("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
                token_file: get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"),
            },
            None => CredentialSource::None,
        }
    }
}

/// Which AWS store holds the headers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Store {
    SecretsManager,
    Ssm,
}

/// A resolved `HEADERS_SECRET` setting: where to ask, for what.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SecretSpec {
    pub store: Store,
    /// The secret's name or ARN, or the parameter's name or ARN.
    pub id: String,
    pub region: String,
    /// The API endpoint (scheme, host, optional port and path).
    pub endpoint: String,
}

impl fmt::Display for SecretSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.store {
            Store::SecretsManager => write!(f, "Secrets Manager secret {}", self.id),
            Store::Ssm => write!(f, "SSM parameter {}", self.id),
        }
    }
}

impl SecretSpec {
    /// Resolves a setting's value: `ssm:<name>`, an SSM parameter ARN, a
    /// Secrets Manager ARN, or else a secret name. The region comes from
    /// the ARN, else `AWS_REGION` / `AWS_DEFAULT_REGION`.
    pub fn parse(value: &str, env: &dyn Env) -> Result<SecretSpec, String> {
        let v = value.trim();
        let (store, id) = if let Some(name) = v.strip_prefix("ssm:") {
            (Store::Ssm, name.trim())
        } else if v.starts_with("arn:") && v.split(':').nth(2) == Some("ssm") {
            (Store::Ssm, v)
        } else if v.starts_with("arn:") && v.split(':').nth(2) == Some("secretsmanager") {
            (Store::SecretsManager, v)
        } else if v.starts_with("arn:") {
            return Err("an ARN of Secrets Manager or SSM was expected".into());
        } else {
            (Store::SecretsManager, v)
        };
        if id.is_empty() {
            return Err("no secret or parameter name".into());
        }
        let arn_region = id
            .starts_with("arn:")
            .then(|| id.split(':').nth(3).filter(|r| !r.is_empty()))
            .flatten()
            .map(str::to_owned);
        let get = |k: &str| get(env, k);
        let region = arn_region
            .or_else(|| default_region(env))
            .ok_or("no region: use an ARN or set AWS_REGION")?;
        let (service_var, host_label) = match store {
            Store::SecretsManager => ("AWS_ENDPOINT_URL_SECRETS_MANAGER", "secretsmanager"),
            Store::Ssm => ("AWS_ENDPOINT_URL_SSM", "ssm"),
        };
        let endpoint = get(service_var)
            .or_else(|| get("AWS_ENDPOINT_URL"))
            .unwrap_or_else(|| {
                let suffix = if region.starts_with("cn-") {
                    "amazonaws.com.cn"
                } else {
                    "amazonaws.com"
                };
                format!("https://{host_label}.{region}.{suffix}")
            });
        match endpoint.parse::<hyper::Uri>() {
            Ok(u) if u.host().is_some() && matches!(u.scheme_str(), Some("http" | "https")) => {}
            _ => {
                return Err(format!(
                    "{service_var} / AWS_ENDPOINT_URL is not an http(s) URL"
                ))
            }
        }
        Ok(SecretSpec {
            store,
            id: id.to_owned(),
            region,
            endpoint,
        })
    }

    pub(super) fn signing_name(&self) -> &'static str {
        match self.store {
            Store::SecretsManager => "secretsmanager",
            Store::Ssm => "ssm",
        }
    }

    /// `X-Amz-Target` and the JSON body of the call.
    pub(super) fn call(&self) -> (&'static str, String) {
        match self.store {
            Store::SecretsManager => (
                "secretsmanager.GetSecretValue",
                serde_json::json!({ "SecretId": self.id }).to_string(),
            ),
            Store::Ssm => (
                "AmazonSSM.GetParameter",
                serde_json::json!({ "Name": self.id, "WithDecryption": true }).to_string(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::env_of;

    #[test]
    fn names_arns_and_endpoints() {
        let env = env_of(&[("AWS_REGION", "eu-west-1")]);
        let s = SecretSpec::parse("collector/key", &env).unwrap();
        assert_eq!(
            (
                s.store.clone(),
                s.id.as_str(),
                s.region.as_str(),
                s.endpoint.as_str()
            ),
            (
                Store::SecretsManager,
                "collector/key",
                "eu-west-1",
                "https://secretsmanager.eu-west-1.amazonaws.com"
            )
        );
        let s = SecretSpec::parse("ssm:/otel/headers", &env).unwrap();
        assert_eq!(
            (s.store.clone(), s.id.as_str()),
            (Store::Ssm, "/otel/headers")
        );
        assert_eq!(s.endpoint, "https://ssm.eu-west-1.amazonaws.com");
        let arn = "arn:aws-cn:ssm:cn-north-1:123456789012:parameter/otel/headers";
        let s = SecretSpec::parse(arn, &env).unwrap();
        assert_eq!(
            (s.store.clone(), s.region.as_str()),
            (Store::Ssm, "cn-north-1")
        );
        assert_eq!(s.endpoint, "https://ssm.cn-north-1.amazonaws.com.cn");
        let arn = "arn:aws:secretsmanager:us-east-2:123456789012:secret:k-AbCdEf";
        assert_eq!(
            SecretSpec::parse(arn, &env_of(&[])).unwrap().region,
            "us-east-2"
        );
        let env = env_of(&[
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
            ("AWS_ENDPOINT_URL_SSM", "http://127.0.0.1:5001"),
        ]);
        assert_eq!(
            SecretSpec::parse("k", &env).unwrap().endpoint,
            "http://127.0.0.1:5000"
        );
        assert_eq!(
            SecretSpec::parse("ssm:k", &env).unwrap().endpoint,
            "http://127.0.0.1:5001"
        );
        assert!(SecretSpec::parse("k", &env_of(&[])).is_err());
        assert!(SecretSpec::parse("arn:aws:s3:::bucket", &env).is_err());
    }

    #[test]
    fn credentials_from_the_environment_first() {
        let env = env_of(&[
            ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "s3cr3t"),
            ("AWS_SESSION_TOKEN", "t0k3n"),
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "http://127.0.0.1:1/creds",
            ),
        ]);
        let s = CredentialSource::from_env(&env);
        assert!(
            matches!(&s, CredentialSource::Static(k) if k.session_token.as_deref() == Some("t0k3n"))
        );
        let shown = format!("{s:?}");
        assert!(!shown.contains("s3cr3t") && !shown.contains("t0k3n") && !shown.contains("AKIA"));
        let env = env_of(&[
            ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"),
            ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/creds"),
        ]);
        assert!(matches!(
            CredentialSource::from_env(&env),
            CredentialSource::Container { uri, .. } if uri == "http://169.254.170.2/v2/creds"
        ));
        assert_eq!(
            CredentialSource::from_env(&env_of(&[])),
            CredentialSource::None
        );
    }
}
