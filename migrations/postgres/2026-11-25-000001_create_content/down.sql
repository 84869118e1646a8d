DROP TABLE contact_messages;
DROP TABLE ai_tools;
DROP TABLE social_links;
DROP TABLE personal_info;
DROP TABLE post_tags;
DROP TABLE posts;
DROP TABLE tags;
DROP TABLE authors;
