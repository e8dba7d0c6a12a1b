//! Facts about the function, from the variables Lambda sets for every
//! process of the execution environment (not settings: no defaults, and
//! nothing to declare in the options table).

use crate::options::{ConfigError, Env};

/// The Runtime API address, `host:port`.
pub const RUNTIME_API: &str = "AWS_LAMBDA_RUNTIME_API";

/// What Lambda's variables say about the function.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LambdaEnv {
    /// `AWS_LAMBDA_RUNTIME_API` (`host:port`).
    pub runtime_api: String,
    pub function_name: Option<String>,
    pub function_version: Option<String>,
    pub memory_mb: Option<u64>,
    pub region: Option<String>,
    pub initialization_type: Option<String>,
}

impl LambdaEnv {
    /// Reads Lambda's variables; only a missing Runtime API is an error.
    pub fn from_env(env: &dyn Env) -> Result<LambdaEnv, ConfigError> {
        Ok(LambdaEnv {
            runtime_api: env.get(RUNTIME_API).ok_or_else(|| {
                ConfigError::new(RUNTIME_API, "", "is not set; not running in Lambda?")
            })?,
            function_name: env.get("AWS_LAMBDA_FUNCTION_NAME"),
            function_version: env.get("AWS_LAMBDA_FUNCTION_VERSION"),
            memory_mb: env
                .get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
                .and_then(|v| v.trim().parse().ok()),
            region: env
                .get("AWS_REGION")
                .or_else(|| env.get("AWS_DEFAULT_REGION")),
            initialization_type: env.get("AWS_LAMBDA_INITIALIZATION_TYPE"),
        })
    }
}
