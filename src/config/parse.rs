//! The value parsers `Settings` names: each turns one variable's text into its typed
//! value, or into the one-line reason start-up stops with.

use std::time::Duration;

use super::{invalid, ConfigError, FamilyTtls, SecretKey};

/// `10.0.0.1` or `10.0.0.0/8` (and IPv6 alike).
pub(super) fn parse_ip_net(v: &str) -> Result<ipnet::IpNet, String> {
    let v = v.trim();
    v.parse::<ipnet::IpNet>()
        .or_else(|_| v.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("'{v}' is not an IP address or CIDR (10.0.0.1, 10.0.0.0/8)"))
}

pub(super) fn parse_prefix(v: &str) -> Result<String, String> {
    if v.is_empty()
        || !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err("use only letters, digits, '_', '-' and '.'".into());
    }
    Ok(v.to_string())
}

pub(super) fn parse_ttls(list: &str) -> Result<FamilyTtls, String> {
    let known: Vec<&str> = crate::cache::DEFAULT_FAMILY_TTLS
        .iter()
        .map(|(f, _)| *f)
        .collect();
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (family, secs) = item
            .split_once('=')
            .and_then(|(f, s)| Some((f.trim(), s.trim().parse::<u64>().ok()?)))
            .ok_or_else(|| format!("'{item}' is not family=seconds"))?;
        if !known.contains(&family) {
            return Err(format!(
                "unknown family '{family}' (known: {})",
                known.join(", ")
            ));
        }
        out.push((family.to_string(), Duration::from_secs(secs.max(1))));
    }
    Ok(FamilyTtls(out))
}

pub(super) fn parse_path_prefix(v: &str) -> Result<String, String> {
    let v = v.trim();
    if !v.starts_with('/') {
        return Err(format!("'{v}' is not a path (start it with /)"));
    }
    Ok(v.to_string())
}

pub(super) fn parse_webhook_secret(v: &str) -> Result<SecretKey, String> {
    if v.len() < 16 {
        return Err("must be at least 16 characters".into());
    }
    Ok(SecretKey(v.to_string()))
}

pub(super) fn parse_api_token(v: &str) -> Result<SecretKey, String> {
    if v.trim().is_empty() || v.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err("must be a token without spaces".into());
    }
    Ok(SecretKey(v.to_string()))
}

pub(super) fn parse_secret_key(v: &str) -> Result<SecretKey, String> {
    SecretKey::new(v.to_string()).map_err(|e| e.reason)
}

pub(super) fn parse_site_url(v: &str) -> Result<String, String> {
    url::Url::parse(v).map_err(|e| e.to_string())?;
    Ok(v.to_string())
}

pub(super) fn parse_timezone(v: &str) -> Result<jiff::tz::TimeZone, String> {
    jiff::tz::TimeZone::get(v).map_err(|e| {
        format!("{e} (an IANA name such as Europe/Paris, from the system's time zone database)")
    })
}

pub(super) fn parse_bind(bind: &str) -> Result<String, String> {
    validate_bind(bind).map_err(|e| e.reason)?;
    Ok(bind.to_string())
}

pub fn validate_bind(bind: &str) -> Result<(), ConfigError> {
    let (host, port) = bind
        .rsplit_once(':')
        .ok_or_else(|| invalid("BIND", format!("'{bind}' is not host:port")))?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(invalid("BIND", format!("'{bind}' is not host:port")));
    }
    Ok(())
}

pub(super) fn parse_bool(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        other => Err(format!("'{other}' is not a boolean (use true or false)")),
    }
}
