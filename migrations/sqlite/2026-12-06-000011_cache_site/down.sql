DROP TABLE cache_site;
