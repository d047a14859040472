-- The kind of problem a detection task is about (issue #16: detection tasks alert staff): the
-- `plan.needs_staff` event and the staff alert name it (`unreadable_record`, `unreadable_plan`,
-- `plan_not_loading`, `plan_check`, `edited_after_done`). Tasks opened before this migration were
-- mostly unreadable feed records, and are already on the dashboard; they are not alerted.
ALTER TABLE detection_tasks ADD COLUMN kind TEXT NOT NULL DEFAULT 'unreadable_record';
