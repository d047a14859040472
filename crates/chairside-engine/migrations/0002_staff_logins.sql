-- Staff login throttling, shared by every instance and kept across restarts, and the audit of
-- login attempts. Times are Unix milliseconds. Never a password.

-- Consecutive failures per subject: kind 'account' (the username typed, known or not) or
-- 'address' (the client IP). A success clears the account's row; an address's failures are
-- forgotten once none has happened for the policy's window.
CREATE TABLE login_failures (
    kind            TEXT NOT NULL,
    subject         TEXT NOT NULL,
    failures        INTEGER NOT NULL,
    last_failure_at INTEGER NOT NULL,
    locked_until    INTEGER,
    PRIMARY KEY (kind, subject)
);

-- Every login attempt and every unlock: who, from where, when, and how it ended.
CREATE TABLE login_attempts (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       INTEGER NOT NULL,
    username TEXT NOT NULL,
    address  TEXT NOT NULL,
    outcome  TEXT NOT NULL
);
CREATE INDEX login_attempts_username ON login_attempts (username, at);
