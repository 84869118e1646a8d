-- Bumped at sign-out and password change: sessions signed in under an older value are refused (server-side revocation of cookie sessions).
ALTER TABLE admin_users ADD COLUMN session_generation INTEGER NOT NULL DEFAULT 0;
