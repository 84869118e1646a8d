ALTER TABLE post_search ALTER COLUMN document SET STORAGE EXTENDED;
ALTER INDEX post_search_document RESET (fastupdate);
