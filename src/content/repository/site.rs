//! The site aggregate: personal info, social links and AI tools.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::{now, RepoResult, Repository};
use crate::content::invalidation::{depends_on, Model};
use crate::content::models::*;
use crate::content::schema::{ai_tools, personal_info, social_links};
use crate::with_conn;

/// Updates row `id`, or inserts when `id` is None; a missing row is `NotFound`.
macro_rules! save_by_id {
    ($conn:ident, $table:ident, $id:expr, $values:expr) => {{
        match $id {
            Some(id) => {
                let updated = diesel::update($table::table.find(id))
                    .set($values)
                    .execute($conn)
                    .await?;
                if updated == 0 {
                    return Err(diesel::result::Error::NotFound.into());
                }
            }
            None => {
                diesel::insert_into($table::table)
                    .values($values)
                    .execute($conn)
                    .await?;
            }
        }
        Ok(())
    }};
}

/// Inserts unless `$unique` is taken (seeding is idempotent); true if it inserted.
macro_rules! insert_unless_taken {
    ($conn:ident, $table:ident, $unique:ident, $values:expr) => {{
        let inserted = diesel::insert_into($table::table)
            .values($values)
            .on_conflict($table::$unique)
            .do_nothing()
            .execute($conn)
            .await?;
        Ok(inserted > 0)
    }};
}

/// What a write stores, for inserts and updates alike (stamped now).
#[derive(Clone, Insertable, AsChangeset)]
#[diesel(table_name = personal_info)]
struct PersonalInfoWrite<'a> {
    name: &'a str,
    headline: &'a str,
    bio: &'a str,
    location: &'a str,
    email: &'a str,
    avatar_url: &'a str,
    skills: String,
    updated_at: NaiveDateTime,
}

impl<'a> From<&'a NewPersonalInfo> for PersonalInfoWrite<'a> {
    fn from(info: &'a NewPersonalInfo) -> Self {
        PersonalInfoWrite {
            name: &info.name,
            headline: &info.headline,
            bio: &info.bio,
            location: &info.location,
            email: &info.email,
            avatar_url: &info.avatar_url,
            skills: info.skills.join(", "),
            updated_at: now(),
        }
    }
}

#[derive(Clone, Insertable, AsChangeset)]
#[diesel(table_name = social_links)]
struct SocialLinkWrite<'a> {
    name: &'a str,
    url: &'a str,
    icon: &'a str,
    sort_order: i32,
    visible: bool,
    updated_at: NaiveDateTime,
}

impl<'a> From<&'a NewSocialLink> for SocialLinkWrite<'a> {
    fn from(link: &'a NewSocialLink) -> Self {
        SocialLinkWrite {
            name: &link.name,
            url: &link.url,
            icon: &link.icon,
            sort_order: link.sort_order,
            visible: link.visible,
            updated_at: now(),
        }
    }
}

#[derive(Clone, Insertable, AsChangeset)]
#[diesel(table_name = ai_tools)]
struct AiToolWrite<'a> {
    name: &'a str,
    slug: &'a str,
    url: &'a str,
    description: &'a str,
    category: &'a str,
    featured: bool,
    sort_order: i32,
    updated_at: NaiveDateTime,
}

impl<'a> From<&'a NewAiTool> for AiToolWrite<'a> {
    fn from(tool: &'a NewAiTool) -> Self {
        AiToolWrite {
            name: &tool.name,
            slug: &tool.slug,
            url: &tool.url,
            description: &tool.description,
            category: &tool.category,
            featured: tool.featured,
            sort_order: tool.sort_order,
            updated_at: now(),
        }
    }
}

impl Repository {
    pub async fn personal_info(&self) -> RepoResult<Option<PersonalInfo>> {
        self.cache
            .cached_query(
                "personal_info",
                &["one"],
                depends_on::PERSONAL_INFO,
                None,
                || async {
                    let row = with_conn!(self.db, |conn| {
                        Ok(personal_info::table
                            .select(PersonalInfoRow::as_select())
                            .order_by(personal_info::id)
                            .first(conn)
                            .await
                            .optional()?)
                    })?;
                    Ok(row.map(PersonalInfo::from))
                },
            )
            .await
    }

    /// Social links in display order; hidden ones only when asked (admin).
    pub async fn social_links(&self, include_hidden: bool) -> RepoResult<Vec<SocialLink>> {
        let which = if include_hidden { "all" } else { "visible" };
        self.cache
            .cached_query(
                "social_links",
                &[which],
                depends_on::SOCIAL_LINKS,
                None,
                || async {
                    with_conn!(self.db, |conn| {
                        let mut query = social_links::table
                            .select(SocialLink::as_select())
                            .into_boxed();
                        if !include_hidden {
                            query = query.filter(social_links::visible.eq(true));
                        }
                        Ok(query
                            .order_by((social_links::sort_order, social_links::id))
                            .load(conn)
                            .await?)
                    })
                },
            )
            .await
    }

    /// Filtered in memory from one cached list (a few dozen tools): a filter value a
    /// client made up creates no cache entry.
    pub async fn ai_tools(&self, filter: &ToolFilter) -> RepoResult<Vec<AiTool>> {
        let all: Vec<AiTool> = self
            .cache
            .cached_query("tools", &["all"], depends_on::TOOLS, None, || async {
                with_conn!(self.db, |conn| {
                    Ok(ai_tools::table
                        .select(AiTool::as_select())
                        .order_by((ai_tools::category, ai_tools::sort_order, ai_tools::id))
                        .load(conn)
                        .await?)
                })
            })
            .await?;
        Ok(all
            .into_iter()
            .filter(|t| filter.category.as_ref().is_none_or(|c| *c == t.category))
            .filter(|t| filter.featured.is_none_or(|f| f == t.featured))
            .collect())
    }

    /// All tools grouped by category (categories alphabetically, tools in display order).
    pub async fn tools_by_category(&self) -> RepoResult<Vec<ToolCategory>> {
        let tools = self.ai_tools(&ToolFilter::default()).await?;
        let mut groups: Vec<ToolCategory> = Vec::new();
        for tool in tools {
            match groups.last_mut() {
                Some(group) if group.name == tool.category => group.tools.push(tool),
                _ => groups.push(ToolCategory {
                    name: tool.category.clone(),
                    tools: vec![tool],
                }),
            }
        }
        Ok(groups)
    }

    pub async fn has_personal_info(&self) -> RepoResult<bool> {
        with_conn!(self.db, |conn| {
            Ok(personal_info::table.count().get_result::<i64>(conn).await? > 0)
        })
    }

    /// Stores the owner's details unless they are already there (seeding never
    /// overwrites what an admin edited).
    pub async fn ensure_personal_info(&self, info: &NewPersonalInfo) -> RepoResult<bool> {
        if self.has_personal_info().await? {
            return Ok(false);
        }
        transact!(self, &[Model::PersonalInfo], |conn| {
            diesel::insert_into(personal_info::table)
                .values(PersonalInfoWrite::from(info))
                .execute(conn)
                .await?;
            Ok(())
        })?;
        Ok(true)
    }

    /// Inserts a social link unless one with that name exists.
    pub async fn ensure_social_link(&self, link: &NewSocialLink) -> RepoResult<bool> {
        transact!(self, &[Model::SocialLink], |conn| {
            insert_unless_taken!(conn, social_links, name, SocialLinkWrite::from(link))
        })
    }

    /// Inserts an AI tool unless one with that slug exists.
    pub async fn ensure_ai_tool(&self, tool: &NewAiTool) -> RepoResult<bool> {
        transact!(self, &[Model::AiTool], |conn| {
            insert_unless_taken!(conn, ai_tools, slug, AiToolWrite::from(tool))
        })
    }

    /// Replaces the owner's details (creating the row on a fresh site).
    pub async fn save_personal_info(&self, info: &NewPersonalInfo) -> RepoResult<()> {
        transact!(self, &[Model::PersonalInfo], |conn| {
            let values = PersonalInfoWrite::from(info);
            let updated = diesel::update(personal_info::table)
                .set(values.clone())
                .execute(conn)
                .await?;
            if updated == 0 {
                diesel::insert_into(personal_info::table)
                    .values(values)
                    .execute(conn)
                    .await?;
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Creates (`id` None) or updates a social link.
    pub async fn save_social_link(&self, id: Option<i32>, link: &NewSocialLink) -> RepoResult<()> {
        transact!(self, &[Model::SocialLink], |conn| {
            let values = SocialLinkWrite::from(link);
            save_by_id!(conn, social_links, id, values)
        })?;
        Ok(())
    }

    pub async fn delete_social_link(&self, id: i32) -> RepoResult<bool> {
        let n = transact!(self, &[Model::SocialLink], |conn| Ok(diesel::delete(
            social_links::table.find(id)
        )
        .execute(conn)
        .await?))?;
        Ok(n > 0)
    }

    /// Creates (`id` None) or updates an AI tool.
    pub async fn save_ai_tool(&self, id: Option<i32>, tool: &NewAiTool) -> RepoResult<()> {
        transact!(self, &[Model::AiTool], |conn| {
            let values = AiToolWrite::from(tool);
            save_by_id!(conn, ai_tools, id, values)
        })?;
        Ok(())
    }

    pub async fn delete_ai_tool(&self, id: i32) -> RepoResult<bool> {
        let n = transact!(self, &[Model::AiTool], |conn| Ok(diesel::delete(
            ai_tools::table.find(id)
        )
        .execute(conn)
        .await?))?;
        Ok(n > 0)
    }
}
