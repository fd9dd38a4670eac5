-- Passwords are stored as Argon2id strings in PHC form (src/accounts/password.rs), about 100
-- characters. A row of the old MD5 form (32 hex digits, its salt in `salt`) stays until its user
-- next logs in, and is rewritten then; new rows leave `salt` empty (a PHC string carries its own).
-- `test_user` marks load-test users (`flashgate users`): their rows share one hash of the demo
-- password and are never rewritten; `DELETE FROM users WHERE test_user = 1` removes them all.
ALTER TABLE users
    MODIFY COLUMN password VARCHAR(255) NOT NULL,
    ADD COLUMN test_user TINYINT(1) NOT NULL DEFAULT 0;
