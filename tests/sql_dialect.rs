//! The SQL flashgate sends is portable: MySQL 8.0 as well as MariaDB 10.6+.
//!
//! This machine runs MariaDB only, so every other test proves the SQL on MariaDB. This one holds
//! the same SQL against MySQL's grammar without a MySQL server: every migration in `sql/` and every
//! SQL string literal in `src/` must parse with `sqlparser`'s MySQL dialect, and none may use a
//! construct MySQL 8 lacks (MariaDB's `SEQUENCE`/`NEXTVAL`, `RETURNING`, `CREATE OR REPLACE
//! TABLE`, …). What parsing cannot show (types, functions' behaviour) is listed in
//! `docs/operations.md` under "MySQL 8".

use std::path::{Path, PathBuf};

use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// MariaDB-only syntax (or MySQL-missing), as lowercase fragments.
const NOT_IN_MYSQL: [&str; 7] = [
    "sequence",
    "nextval",
    "lastval",
    "returning",
    "create or replace table",
    "minus",
    "intersect all",
];

fn files(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, ext, out);
        } else if path.extension().is_some_and(|e| e == ext) {
            out.push(path);
        }
    }
}

/// `--` comments off, so a word in a comment is not mistaken for syntax.
fn without_comments(sql: &str) -> String {
    sql.lines()
        .map(|l| l.split("--").next().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_portable(what: &str, sql: &str) {
    let lower = without_comments(sql).to_lowercase();
    for bad in NOT_IN_MYSQL {
        assert!(
            !lower.contains(bad),
            "{what} uses `{bad}`, which MySQL 8 does not have:\n{sql}"
        );
    }
    // `LOCK IN SHARE MODE` is MySQL 8's documented older spelling of `FOR SHARE` (kept for
    // compatibility, and the only one MariaDB knows); the parser knows only the newer one
    let sql = &sql.replace("LOCK IN SHARE MODE", "FOR SHARE");
    if let Err(e) = Parser::parse_sql(&MySqlDialect {}, sql) {
        panic!("{what} does not parse as MySQL: {e}\n{sql}");
    }
}

#[test]
fn every_migration_parses_as_mysql() {
    let mut migrations = Vec::new();
    files(&Path::new(ROOT).join("sql"), "sql", &mut migrations);
    assert!(migrations.len() >= 2, "no migrations found");
    for path in migrations {
        let sql = std::fs::read_to_string(&path).unwrap();
        assert_portable(&path.display().to_string(), &sql);
    }
}

/// The SQL string literals of a Rust file: `"SELECT …"`, `"UPDATE …"` and so on, with `\`
/// line continuations joined. Format strings (`{…}`) are skipped: they are not sent as written.
fn sql_literals(source: &str) -> Vec<String> {
    let mut found = Vec::new();
    let starts = [
        "\"SELECT ",
        "\"UPDATE ",
        "\"INSERT ",
        "\"DELETE ",
        "\"CREATE ",
    ];
    let mut rest = source;
    while let Some(at) = starts.iter().filter_map(|s| rest.find(s)).min() {
        let body = &rest[at + 1..];
        let mut end = 0;
        let bytes = body.as_bytes();
        while end < bytes.len() && !(bytes[end] == b'"' && (end == 0 || bytes[end - 1] != b'\\')) {
            end += 1;
        }
        let literal = &body[..end];
        rest = &body[end..];
        let joined: String = literal
            .split("\\\n")
            .map(str::trim_start)
            .collect::<Vec<_>>()
            .join("");
        if !joined.contains('{') {
            found.push(joined);
        }
    }
    found
}

#[test]
fn every_sql_string_in_the_code_parses_as_mysql() {
    let mut sources = Vec::new();
    files(&Path::new(ROOT).join("src"), "rs", &mut sources);
    let mut checked = 0;
    for path in sources {
        let text = std::fs::read_to_string(&path).unwrap();
        for sql in sql_literals(&text) {
            assert_portable(&path.display().to_string(), &sql);
            checked += 1;
        }
    }
    // the writer's six statements alone are more than this
    assert!(
        checked >= 30,
        "only {checked} SQL strings found: is the scan broken?"
    );
}

#[test]
fn the_scan_finds_continued_literals_and_the_check_refuses_mariadb_only_syntax() {
    let src = "let q = \"SELECT a \\\n     FROM t WHERE b = ?\";";
    assert_eq!(sql_literals(src), vec!["SELECT a FROM t WHERE b = ?"]);
    let refused = std::panic::catch_unwind(|| {
        assert_portable("t", "CREATE SEQUENCE s START WITH 1 INCREMENT BY 1")
    });
    assert!(refused.is_err());
    let refused = std::panic::catch_unwind(|| assert_portable("t", "SELEKT 1"));
    assert!(refused.is_err());
}
