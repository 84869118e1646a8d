//! `/search/?q=…` (and the steps `/api/search/` shares): the query, canonical by the
//! time it gets here (`web::canonical` redirected other spellings), is counted for
//! popularity unless it is a warm request, and searched through the repository, whose
//! results of popular queries live in a fixed budget of entries
//! (`content::repository::search`). The page or API answer is rendered from them and
//! never stored whole, so made-up queries leave no entry beyond that budget; a search
//! the cache cannot answer runs one at a time per address (`content::search::gate`). A page
//! number without a query is redirected away (by `web::canonical`: the route's `page`
//! needs `q`). Also `/opensearch.xml`.

use actix_web::{web, HttpRequest, HttpResponse};

use super::{base_context, render};
use crate::content::models::Page;
use crate::content::repository::search::SearchHit;
use crate::content::search::{QueryError, SearchQuery};
use crate::db::DbError;
use crate::web::canonical::Params;
use crate::web::error::PageError;
use crate::web::http_cache::DoNotStore;
use crate::web::state::AppState;

/// Results per page, on the page and in the API.
pub const PER_PAGE: i64 = 10;

/// A search answered.
pub(crate) struct Answer {
    pub query: SearchQuery,
    pub results: Page<SearchHit>,
}

/// Searches `raw` (a canonical `q`): popularity counted unless the request is a warm one.
pub(crate) async fn answer(
    state: &AppState,
    req: &HttpRequest,
    raw: &str,
    page: i64,
) -> Result<Result<Answer, QueryError>, DbError> {
    let query = match SearchQuery::parse(raw) {
        Ok(query) => query,
        Err(e) => return Ok(Err(e)),
    };
    let (popular, client) = match crate::web::http_cache::is_warm_request(req, &state.warm_token) {
        true => (true, None),
        false => {
            let trusted = &state.config.trusted_proxies;
            let client = crate::web::client::client_ip(req.peer_addr(), req.headers(), trusted);
            let client = crate::content::search::popular::client_hash(client);
            (
                state.repo.search_counts().record(query.canonical(), client),
                Some(client),
            )
        }
    };
    let results = state
        .repo
        .search(&query, page, PER_PAGE, popular, client)
        .await?;
    Ok(results.map(|results| Answer { query, results }))
}

pub async fn index(
    state: web::Data<AppState>,
    req: HttpRequest,
    params: Params,
) -> Result<HttpResponse, PageError> {
    let page = params.page();
    // The same for every spelling of the request (`web::canonical`).
    let path = match (params.get("q"), page) {
        (None, _) => "/search/".to_string(),
        (Some(q), 1) => format!("/search/?q={}", Params::encode(q)),
        (Some(q), n) => format!("/search/?q={}&page={n}", Params::encode(q)),
    };
    let mut ctx = base_context(&state, "search", &path).await?;
    ctx.insert("per_page", &PER_PAGE);
    let Some(raw) = params.get("q") else {
        ctx.insert("q", "");
        return render(&state, "search/results.html", ctx).await;
    };
    match answer(&state, &req, raw, page).await? {
        Err(e) => {
            // The reader's text is kept in the box, with what is wrong with it.
            ctx.insert("q", raw);
            ctx.insert("error", &e.to_string());
            let busy = e == QueryError::Busy;
            let mut res = render(&state, "search/results.html", ctx).await?;
            *res.status_mut() = match busy {
                true => actix_web::http::StatusCode::TOO_MANY_REQUESTS,
                false => actix_web::http::StatusCode::BAD_REQUEST,
            };
            if busy {
                res.headers_mut().insert(
                    actix_web::http::header::RETRY_AFTER,
                    actix_web::http::header::HeaderValue::from_static("1"),
                );
            }
            res.extensions_mut().insert(DoNotStore);
            Ok(res)
        }
        Ok(answer) => {
            // Past the last page (a query that found nothing has one page).
            if answer.results.is_out_of_range() && answer.results.page > 1 {
                return Err(PageError::NotFound);
            }
            ctx.insert("q", answer.query.canonical());
            ctx.insert("q_param", &Params::encode(answer.query.canonical()));
            ctx.insert("num_pages", &answer.results.num_pages());
            ctx.insert("results", &answer.results);
            let mut res = render(&state, "search/results.html", ctx).await?;
            res.extensions_mut().insert(DoNotStore);
            Ok(res)
        }
    }
}

/// The OpenSearch description, so browsers can add the site's search.
pub async fn opensearch(state: web::Data<AppState>) -> Result<HttpResponse, PageError> {
    let info = state.repo.personal_info().await?;
    let mut ctx = tera::Context::new();
    let name = info.as_ref().map_or("Folio", |i| i.name.as_str());
    ctx.insert("site_name", name);
    // OpenSearch's ShortName: at most 16 characters.
    ctx.insert("short_name", &name.chars().take(16).collect::<String>());
    ctx.insert("site_url", &state.config.site_url);
    let xml = crate::web::templates::render(&state.tera, "feeds/opensearch.xml", &ctx)?;
    Ok(HttpResponse::Ok()
        .content_type("application/opensearchdescription+xml; charset=utf-8")
        .body(xml))
}
