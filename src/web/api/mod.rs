//! The public JSON API under `/api/`. Field names and shapes are a contract with API
//! consumers: they live in `dto.rs`, separate from the content models, and the OpenAPI
//! description is generated from the same types so the two cannot drift.

pub mod cache;
pub mod dto;
pub(crate) mod posts;
pub(crate) mod search;
pub(crate) mod site;
pub mod webhook;

use actix_web::HttpResponse;

use utoipa::OpenApi;

use crate::web::routes::{Kind, Param};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Folio public API",
        description = "Read-only access to the blog's posts (and their full-text search), personal info, social links and AI tools."
    ),
    paths(
        posts::list,
        posts::detail,
        site::personal_info,
        site::social_links,
        site::ai_tools,
        search::search
    ),
    components(schemas(
        dto::PostListItem,
        dto::PostDetailDto,
        dto::PostList,
        dto::AuthorDto,
        dto::TagDto,
        dto::PersonalInfoDto,
        dto::SocialLinkDto,
        dto::SocialLinkList,
        dto::AiToolDto,
        dto::AiToolList,
        search::SearchResult,
        search::SearchResults,
        super::error::ErrorBody,
        super::error::ErrorDetail
    ))
)]
pub struct ApiDoc;

pub(crate) async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(&*OPENAPI)
}

/// The description: the handlers' paths and schemas, with each route's query parameters
/// and their bounds from the route table (`web::routes`), where the request is checked.
pub static OPENAPI: std::sync::LazyLock<utoipa::openapi::OpenApi> =
    std::sync::LazyLock::new(|| {
        let mut doc = ApiDoc::openapi();
        for route in crate::web::routes::TABLE {
            let Some(operation) = doc
                .paths
                .paths
                .get_mut(route.path)
                .and_then(|item| item.get.as_mut())
            else {
                continue;
            };
            let parameters = operation.parameters.get_or_insert_with(Vec::new);
            parameters.extend(route.params.iter().map(query_parameter));
        }
        doc
    });

fn query_parameter(param: &Param) -> utoipa::openapi::path::Parameter {
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    use utoipa::openapi::{ObjectBuilder, Required, Type};
    let schema = match param.kind {
        Kind::Page => ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Int64,
            )))
            .minimum(Some(1)),
        Kind::Slug => ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(crate::web::routes::MAX_SLUG))
            .pattern(Some("^[a-z0-9-]+$")),
        Kind::Flag => ObjectBuilder::new().schema_type(Type::Boolean),
        Kind::Text { max_chars } => ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(max_chars)),
        Kind::Search => ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(crate::content::search::MAX_QUERY_CHARS)),
        Kind::OneOf(values) => ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(values.iter().copied())),
    };
    let mut doc = param.doc.to_string();
    if let Some(needed) = param.needs {
        doc.push_str(&format!(" Read only with `{needed}`."));
    }
    ParameterBuilder::new()
        .name(param.name)
        .parameter_in(ParameterIn::Query)
        .required(match param.required {
            true => Required::True,
            false => Required::False,
        })
        .description(Some(doc))
        .schema(Some(schema.build()))
        .build()
}
