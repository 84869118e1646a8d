//! The diesel schema, one for both backends (see migrations/postgres and migrations/sqlite).

diesel::table! {
    authors (id) {
        id -> Integer,
        name -> Text,
        slug -> Text,
        bio -> Text,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    tags (id) {
        id -> Integer,
        name -> Text,
        slug -> Text,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    posts (id) {
        id -> Integer,
        title -> Text,
        slug -> Text,
        body_markdown -> Text,
        body_html -> Text,
        excerpt -> Text,
        author_id -> Integer,
        published -> Bool,
        published_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        view_count -> BigInt,
        featured -> Bool,
        /// Site-relative URL of an uploaded image (`/media/…`), or ''.
        cover_image -> Text,
        cover_width -> Integer,
        cover_height -> Integer,
    }
}

diesel::table! {
    post_tags (post_id, tag_id) {
        post_id -> Integer,
        tag_id -> Integer,
    }
}

diesel::table! {
    personal_info (id) {
        id -> Integer,
        name -> Text,
        headline -> Text,
        bio -> Text,
        location -> Text,
        email -> Text,
        avatar_url -> Text,
        skills -> Text,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    social_links (id) {
        id -> Integer,
        name -> Text,
        url -> Text,
        icon -> Text,
        sort_order -> Integer,
        visible -> Bool,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    ai_tools (id) {
        id -> Integer,
        name -> Text,
        slug -> Text,
        url -> Text,
        description -> Text,
        category -> Text,
        featured -> Bool,
        sort_order -> Integer,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    contact_messages (id) {
        id -> Integer,
        name -> Text,
        email -> Text,
        subject -> Text,
        message -> Text,
        created_at -> Timestamp,
        is_read -> Bool,
        sender_ip -> Nullable<Text>,
    }
}

diesel::table! {
    /// Uploaded images, named by the hash of their bytes (see `content::images`).
    images (hash) {
        hash -> Text,
        format -> Text,
        width -> Integer,
        height -> Integer,
        bytes -> Binary,
        created_at -> Timestamp,
    }
}

diesel::table! {
    /// Resized copies of uploaded images, for `srcset`.
    image_variants (hash, width) {
        hash -> Text,
        width -> Integer,
        bytes -> Binary,
    }
}

diesel::joinable!(image_variants -> images (hash));
diesel::joinable!(posts -> authors (author_id));
diesel::joinable!(post_tags -> posts (post_id));
diesel::joinable!(post_tags -> tags (tag_id));

// Only tables some query joins: each pair listed makes diesel generate impls for every
// column of both, and type-checking those cost a cold build ~25 s with all 12 tables.
diesel::allow_tables_to_appear_in_same_query!(authors, tags, posts, post_tags);
diesel::allow_tables_to_appear_in_same_query!(images, image_variants);

diesel::table! {
    admin_users (id) {
        id -> Integer,
        username -> Text,
        password_hash -> Text,
        created_at -> Timestamp,
        session_generation -> Integer,
    }
}

diesel::table! {
    /// The invalidation outbox (see `content::invalidation`).
    cache_invalidations (id) {
        id -> Integer,
        tags -> Text,
        created_at -> Timestamp,
        /// When to apply it (UTC); NULL: at once (a scheduled post's publication).
        due_at -> Nullable<Timestamp>,
        /// Whether the edges are purged too (see `invalidation::purges_edges`).
        purge_edges -> Bool,
    }
}

diesel::table! {
    /// Purges owed to each edge cache (see `edge`).
    edge_purges (id) {
        id -> Integer,
        edge -> Text,
        tags -> Text,
        /// 1: the purge after the write; 2: the delayed second one (the fill race).
        round -> Integer,
        attempts -> Integer,
        due_at -> Timestamp,
        claim -> Nullable<Text>,
        last_error -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    /// URLs the path edges may hold, per tag their answer was built from (see `edge::paths`).
    edge_paths (tag, path) {
        tag -> Text,
        path -> Text,
        /// After this no edge can still hold the answer recorded.
        until -> Timestamp,
    }
}

diesel::table! {
    /// Paths sent to each path edge per month (`YYYY-MM`, UTC).
    edge_usage (edge, month) {
        edge -> Text,
        month -> Text,
        paths -> BigInt,
    }
}

diesel::table! {
    /// Requests per URL and hour, every instance's summed (see `web::demand`).
    demand (path, hour) {
        path -> Text,
        hour -> Timestamp,
        requests -> BigInt,
        misses -> BigInt,
        /// The misses' render time, summed.
        miss_ms -> Double,
    }
}

diesel::table! {
    /// Cache analytics per minute and per hour, per instance (see `web::analytics`).
    cache_rollups (id) {
        id -> Integer,
        /// Seconds a row covers: 60 or 3600.
        resolution -> Integer,
        bucket -> Timestamp,
        instance -> Text,
        /// `family`, `route` or `instance`.
        series -> Text,
        name -> Text,
        hits -> BigInt,
        misses -> BigInt,
        stale -> BigInt,
        fills -> BigInt,
        fill_ms -> Double,
        requests -> BigInt,
        /// Request counts per latency bucket (`web::metrics::BUCKETS`, then +Inf), commas.
        latency_buckets -> Text,
        memory_bytes -> Nullable<BigInt>,
        breaker_open -> Nullable<Bool>,
    }
}

diesel::table! {
    /// The one cache this database's content is cached in (see `repository::cache_site`).
    cache_site (id) {
        id -> Integer,
        /// `memory`, `redis:<prefix>`, `redis-cluster:<prefix>`, or `none`.
        name -> Text,
        /// When an instance using it last said so (the database's clock).
        seen_at -> Timestamp,
    }
}
