-- The twin of SQLite's 0030, which stores five tables (effects, timers, webhooks, message_sends,
-- patient_page_marks) in their primary key's order (`WITHOUT ROWID`) so that a row is one B-tree
-- write instead of two. PostgreSQL keeps every table as a heap beside its primary key's index and
-- has no such choice to make: nothing changes here.
SELECT 1;
