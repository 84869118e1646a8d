ALTER TABLE admin_users DROP COLUMN session_generation;
