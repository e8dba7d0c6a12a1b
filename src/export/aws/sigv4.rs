//! Signs one HTTP request with AWS Signature Version 4, using the signer
//! the AWS SDK for Rust publishes (`aws-sigv4`): over the method, URL, the
//! headers given (always `host`) and the SHA-256 of the exact body bytes
//! sent (after gzip). The caller signs every attempt afresh, so a retry
//! carries a new date.

use std::time::SystemTime;

use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;

use super::credentials::Credentials;
use super::target::SigningTarget;

/// The `Host` header value of a URL, as HTTP/1.1 clients send it (the port
/// only when it is in the URL).
pub fn host_header(uri: &hyper::Uri) -> Option<String> {
    let host = uri.host()?;
    Some(match uri.port_u16() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    })
}

/// The headers to add to the request: `authorization`, `x-amz-date` and,
/// with temporary credentials, `x-amz-security-token`. `headers` are those
/// the request will carry (names lower-case, `host` among them); all are
/// signed except those the signer leaves out by design (`user-agent`,
/// `authorization`, `transfer-encoding`, `x-amzn-trace-id`).
pub fn sign_request(
    credentials: &Credentials,
    target: &SigningTarget,
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
    now: SystemTime,
) -> Result<Vec<(String, String)>, String> {
    let identity = aws_credential_types::Credentials::new(
        credentials.access_key_id.clone(),
        credentials.secret_access_key.clone(),
        credentials.session_token.clone(),
        credentials.expires,
        "lambda-otel-bridge",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&target.region)
        .name(&target.service)
        .time(now)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| format!("SigV4 signing parameters: {e}"))?
        .into();
    let signable = SignableRequest::new(
        method,
        url,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(body),
    )
    .map_err(|e| format!("SigV4: the request cannot be signed: {e}"))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| format!("SigV4 signing failed: {e}"))?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The "get-vanilla" example of AWS's SigV4 test suite (the published
    /// key, date and expected signature), so the wiring to the signer is
    /// checked against a value this project did not compute.
    #[test]
    fn signs_the_published_example() {
        let creds = Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
            expires: None,
        };
        let target = SigningTarget {
            service: "service".into(),
            region: "us-east-1".into(),
        };
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_440_938_160); // 2015-08-30T12:36:00Z
        let out = sign_request(
            &creds,
            &target,
            "GET",
            "https://example.amazonaws.com/",
            &[("host".into(), "example.amazonaws.com".into())],
            b"",
            now,
        )
        .unwrap();
        let auth = &out.iter().find(|(k, _)| k == "authorization").unwrap().1;
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
        assert!(out
            .iter()
            .any(|(k, v)| k == "x-amz-date" && v == "20150830T123600Z"));
        assert!(!out.iter().any(|(k, _)| k == "x-amz-security-token"));
    }

    #[test]
    fn a_session_token_is_sent_and_signed() {
        let creds = Credentials {
            access_key_id: "AK".into(),
            secret_access_key: "SK".into(),
            session_token: Some("TOKEN".into()),
            expires: None,
        };
        let target = SigningTarget {
            service: "xray".into(),
            region: "eu-west-1".into(),
        };
        let out = sign_request(
            &creds,
            &target,
            "POST",
            "http://127.0.0.1:4318/v1/traces",
            &[
                ("host".into(), "127.0.0.1:4318".into()),
                ("content-type".into(), "application/x-protobuf".into()),
            ],
            b"body",
            SystemTime::now(),
        )
        .unwrap();
        assert!(out
            .iter()
            .any(|(k, v)| k == "x-amz-security-token" && v == "TOKEN"));
        let auth = &out.iter().find(|(k, _)| k == "authorization").unwrap().1;
        assert!(auth.contains("/eu-west-1/xray/aws4_request"), "{auth}");
        assert!(
            auth.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token"),
            "{auth}"
        );
    }
}
