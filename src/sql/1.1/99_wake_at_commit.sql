-- 99_wake_at_commit.sql: last fragment.  CREATE EXTENSION and ALTER
-- EXTENSION ... UPDATE wake the worker when they commit: it sleeps until
-- then (it does not poll for the extension).
SELECT wa_notify._wake_on_commit();
