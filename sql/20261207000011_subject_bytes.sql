-- Shop subjects compared byte for byte, for real (security review, row 1). The column was
-- VARCHAR under utf8mb4_bin, which is a PAD SPACE collation: 'alice' and 'alice ' compared equal,
-- unique key included, so a shopper whose subject was another's plus trailing spaces became that
-- shopper. VARBINARY has no collation and no padding: two subjects are one user only when their
-- bytes are. Existing rows keep their bytes (every pair of rows was already distinct); a row made
-- by a subject with leading or trailing whitespace can no longer be reached (such subjects are now
-- refused at the door, code 500233): docs/operations.md "A shop in front" lists them.
ALTER TABLE users
    MODIFY COLUMN subject VARBINARY(255) NULL;
