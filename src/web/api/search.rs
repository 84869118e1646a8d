//! `GET /api/search/?q=…&page=…`: the search of `/search/` as JSON (see
//! `web::pages::search` for what is counted and what is stored).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::dto::PostListItem;
use crate::content::repository::search::RANK_LIMIT;
use crate::content::search::QueryError;
use crate::web::canonical::Params;
use crate::web::error::{ApiError, ErrorBody};
use crate::web::http_cache::DoNotStore;
use crate::web::pages::search::answer;
use crate::web::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResult {
    #[serde(flatten)]
    pub post: PostListItem,
    /// Where the post matches: text (HTML-escaped) with the matched words in `<mark>`.
    pub snippet: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResults {
    /// The query as it was searched (normalised).
    pub query: String,
    /// Number of matching posts over all pages, counted up to 1,000 (see `count_capped`).
    pub count: i64,
    /// More posts than `count` match (matches are counted up to 1,000; such a query's
    /// results are newest first, not best first).
    pub count_capped: bool,
    pub page: i64,
    pub num_pages: i64,
    /// Absolute URL of the next page, if any.
    pub next: Option<String>,
    /// Absolute URL of the previous page, if any.
    pub previous: Option<String>,
    /// Best match first.
    pub results: Vec<SearchResult>,
}

/// Full-text search of published posts (title, excerpt, body and tags), best first.
#[utoipa::path(get, path = "/api/search/",
    responses((status = 200, body = SearchResults), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 429, description = "This address's previous uncached search is still running: retry after the Retry-After seconds", body = ErrorBody)))]
pub async fn search(
    state: web::Data<AppState>,
    req: HttpRequest,
    params: Params,
) -> Result<HttpResponse, ApiError> {
    let page = params.page();
    let Some(raw) = params.get("q") else {
        return Err(ApiError::bad("q", "type a word to search for"));
    };
    let answer = answer(&state, &req, raw, page)
        .await?
        .map_err(|e| match e {
            QueryError::Busy => ApiError::TooMany(e.to_string()),
            e => ApiError::bad("q", e.to_string()),
        })?;
    let results = answer.results;
    if results.is_out_of_range() && results.page > 1 {
        return Err(ApiError::NotFound(format!(
            "page {} does not exist (the last page is {})",
            results.page,
            results.num_pages()
        )));
    }
    let q = Params::encode(answer.query.canonical());
    let link = |n: i64| format!("{}/api/search/?q={q}&page={n}", state.config.site_url);
    let mut res = HttpResponse::Ok().json(SearchResults {
        query: answer.query.canonical().to_string(),
        count: results.total.min(RANK_LIMIT),
        count_capped: results.total > RANK_LIMIT,
        page: results.page,
        num_pages: results.num_pages(),
        next: results.has_next().then(|| link(results.page + 1)),
        previous: results.has_previous().then(|| link(results.page - 1)),
        results: results
            .items
            .into_iter()
            .map(|hit| SearchResult {
                post: PostListItem::from(hit.post),
                snippet: hit.snippet_html,
            })
            .collect(),
    });
    // Rendered from the search budget's entries, never stored whole (see `pages::search`).
    res.extensions_mut().insert(DoNotStore);
    Ok(res)
}
