//! AWS Signature Version 4, for the one request the site sends AWS (CloudFront's
//! `CreateInvalidation`): the canonical request, the string to sign and the derived
//! key, as AWS documents them ("Create a signed AWS API request"). Checked against
//! botocore's signer (the test below) and against a stand-in that verifies signatures
//! (`tests/api/path_edges.rs`).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Who signs, and for which region and service.
pub(super) struct Credentials<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    pub session_token: Option<&'a str>,
    pub region: &'a str,
    pub service: &'a str,
}

/// The headers to send with the request (besides those given): `x-amz-date`,
/// `x-amz-content-sha256`, `x-amz-security-token` with temporary credentials, and
/// `authorization`. `headers` are the ones to sign besides those: `host` (as sent,
/// with a port that is not the scheme's default) at least, names in lower case.
pub(super) fn sign(
    credentials: &Credentials,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    at: chrono::DateTime<chrono::Utc>,
) -> Vec<(&'static str, String)> {
    let amz_date = at.format("%Y%m%dT%H%M%SZ").to_string();
    let day = &amz_date[..8];
    let payload = hex::encode(Sha256::digest(body));
    let mut signed: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    signed.push(("x-amz-date".into(), amz_date.clone()));
    signed.push(("x-amz-content-sha256".into(), payload.clone()));
    if let Some(token) = credentials.session_token {
        signed.push(("x-amz-security-token".into(), token.to_string()));
    }
    signed.sort();
    let names: Vec<&str> = signed.iter().map(|(n, _)| n.as_str()).collect();
    let names = names.join(";");
    let canonical_headers: String = signed.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
    // The path is AWS's URI encoding of each segment; the site's paths are plain ASCII
    // (an id and literal segments), so encoding leaves them as they are.
    let canonical = format!("{method}\n{path}\n\n{canonical_headers}\n{names}\n{payload}");
    let scope = format!(
        "{day}/{}/{}/aws4_request",
        credentials.region, credentials.service
    );
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let mut key = hmac(
        format!("AWS4{}", credentials.secret_access_key).as_bytes(),
        day.as_bytes(),
    );
    for part in [credentials.region, credentials.service, "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let signature = hex::encode(hmac(&key, to_sign.as_bytes()));
    let mut out = vec![
        ("x-amz-date", amz_date),
        ("x-amz-content-sha256", payload),
        (
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={names}, Signature={signature}",
                credentials.access_key_id
            ),
        ),
    ];
    if let Some(token) = credentials.session_token {
        out.push(("x-amz-security-token", token.to_string()));
    }
    out
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    /// What botocore's `SigV4Auth` computes for the same request (the same headers, with
    /// `x-amz-content-sha256` set, at the same time).
    #[test]
    fn signs_as_aws_does() {
        let credentials = Credentials {
            access_key_id: "AKIDEXAMPLE",
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            session_token: None,
            region: "us-east-1",
            service: "cloudfront",
        };
        let at = chrono::Utc
            .with_ymd_and_hms(2015, 8, 30, 12, 36, 0)
            .unwrap();
        let body = b"<InvalidationBatch/>";
        let out = sign(
            &credentials,
            "POST",
            "/2020-05-31/distribution/E2QWRUHAPOMQZL/invalidation",
            &[
                ("host", "cloudfront.amazonaws.com"),
                ("content-type", "text/xml"),
            ],
            body,
            at,
        );
        let auth = &out.iter().find(|(n, _)| *n == "authorization").unwrap().1;
        assert_eq!(auth, EXPECTED);
    }

    const EXPECTED: &str = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/cloudfront/aws4_request, SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date, Signature=c92e0ac2b327320df94379a12aea5a1cd178f751831dff5c0fd05a9443fa0ad9";
}
