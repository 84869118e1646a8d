use actix_web::{web, HttpResponse};

use super::{base_context, render, structured};
use crate::web::error::PageError;
use crate::web::state::AppState;

pub async fn index(state: web::Data<AppState>) -> Result<HttpResponse, PageError> {
    let mut ctx = base_context(&state, "about", "/about/").await?;
    // Both cached (the base context just read them).
    let (info, links) = tokio::join!(state.repo.personal_info(), state.repo.social_links(false));
    if let Some(info) = info? {
        let image = ctx
            .get("share_image")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        let ld = structured::person(&info, &links?, &image, &state.config.site_url);
        ctx.insert("json_ld", &ld);
    }
    render(&state, "about/index.html", ctx).await
}
