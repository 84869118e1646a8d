//! Talking to a running server's JSON endpoints (`folio monitor`, `folio analyze`).

use std::time::Duration;

use serde_json::Value;

use crate::config::Config;

/// The full statistics, which the server gives only to admins.
pub(super) async fn get_monitor(base: &str, config: &Config) -> anyhow::Result<Value> {
    let token = config.admin_token().map(|t| t.expose());
    let (status, stats) = get_with(&format!("{base}/api/cache/monitor/"), token).await?;
    match status {
        200 if stats.get("families_by_miss_cost").is_some() => Ok(stats),
        200 => anyhow::bail!(
            "the server gives its full statistics to admins only: set CACHE_ADMIN_TOKEN (the same as the server's), or run this where the server's DATA_DIR is"
        ),
        401 | 403 => Err(super::refused(
            base,
            reqwest::StatusCode::from_u16(status)?,
            stats,
        )),
        _ => anyhow::bail!("{base}/api/cache/monitor/ answered {status}: {stats}"),
    }
}

pub(super) async fn get_with(url: &str, token: Option<&str>) -> anyhow::Result<(u16, Value)> {
    let mut req = reqwest::Client::new().get(url);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let res = req
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{url} does not answer: {e}"))?;
    let status = res.status().as_u16();
    Ok((status, res.json().await.unwrap_or(Value::Null)))
}

pub(super) fn pct(v: &Value) -> String {
    v.as_f64()
        .map_or("–".into(), |r| format!("{:.1} %", r * 100.0))
}
