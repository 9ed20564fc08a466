//! The collector's SQLite database: one row per registered server with its token hash and its
//! latest report.
//!
//! The schema (version [`SCHEMA_VERSION`], kept in `PRAGMA user_version`) is created on open; the
//! database runs in WAL mode. Times are Unix milliseconds (UTC). The calls here block: the
//! [`Db`] handle runs them on tokio's blocking pool: writes one at a time on one connection,
//! the `/stats` scans on a second, read-only one.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use super::stats::{Aggregator, Facts};
use super::tokens::{self, Decision, StoredToken, TokenHash};
use super::CollectorError;
use astmanproxy_beacon_wire::wire::{ServerReport, Token};

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE servers (
    id           TEXT PRIMARY KEY NOT NULL,
    created      INTEGER NOT NULL,
    last_seen    INTEGER NOT NULL,
    token_hash   BLOB NOT NULL,
    token_issued INTEGER NOT NULL,
    report       TEXT NOT NULL,
    version_name TEXT NOT NULL,
    os_name      TEXT NOT NULL,
    machine      TEXT NOT NULL,
    modules      TEXT NOT NULL
);
CREATE INDEX servers_last_seen ON servers (last_seen);
";

/// How long a statement waits for a lock held by another process on the same file.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A report as stored: its JSON and the facts `/stats` counts.
#[derive(Debug, Clone)]
pub struct StoredReport {
    /// The `Server` JSON, with its id.
    pub json: String,
    /// What `/stats` counts of it.
    pub facts: Facts,
}

impl StoredReport {
    /// The stored form of `report`.
    ///
    /// # Errors
    /// A report that cannot be written as JSON (never, for these types).
    pub fn of(report: &ServerReport) -> Result<StoredReport, CollectorError> {
        let json = serde_json::to_string(report).map_err(|e| CollectorError::Internal(e.to_string()))?;
        Ok(StoredReport { json, facts: Facts::of(report) })
    }
}

/// The outcome of an update.
#[derive(Debug)]
pub enum Updated {
    /// Accepted: the new token (only its hash was stored).
    Accepted(Token, Decision),
    /// Refused by the token rules (401).
    Refused(Decision),
    /// No such server (404).
    Unknown,
}

/// A cheap handle on the database connection.
#[derive(Clone)]
pub struct Db {
    /// Every write, and the reads that decide them.
    conn: Arc<Mutex<Connection>>,
    /// The long reads of `/stats`.
    reader: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").finish_non_exhaustive()
    }
}

fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

impl Db {
    /// Opens (creating if needed) the database at `path`, switches it to WAL and creates or
    /// checks the schema.
    ///
    /// # Errors
    /// The file cannot be opened, is not a database, or has a newer schema.
    pub fn open(path: &Path) -> Result<Db, CollectorError> {
        let conn = Connection::open(path).map_err(|e| CollectorError::db(path, e))?;
        init(&conn).map_err(|e| match e {
            Init::Sql(e) => CollectorError::db(path, e),
            Init::Newer(v) => CollectorError::Schema { path: path.display().to_string(), found: v },
        })?;
        let reader = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(|r| r.busy_timeout(BUSY_TIMEOUT).map(|()| r))
            .map_err(|e| CollectorError::db(path, e))?;
        Ok(Db { conn: Arc::new(Mutex::new(conn)), reader: Arc::new(Mutex::new(reader)) })
    }

    /// Runs `f` on the writing connection, on the blocking pool.
    async fn run<T, F>(&self, f: F) -> Result<T, CollectorError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.run_on(&self.conn, f).await
    }

    /// Runs `f` on `conn`, on the blocking pool.
    async fn run_on<T, F>(&self, conn: &Arc<Mutex<Connection>>, f: F) -> Result<T, CollectorError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let conn = conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut conn)
        })
        .await
        .map_err(|e| CollectorError::Internal(format!("database task: {e}")))?
        .map_err(CollectorError::Sql)
    }

    /// Stores a new server with its first token and report.
    ///
    /// # Errors
    /// Database failures.
    pub async fn register(
        &self,
        id: String,
        token: TokenHash,
        now: DateTime<Utc>,
        report: StoredReport,
    ) -> Result<(), CollectorError> {
        self.run(move |c| {
            let f = &report.facts;
            c.execute(
                "INSERT INTO servers (id, created, last_seen, token_hash, token_issued, report,
                                      version_name, os_name, machine, modules)
                 VALUES (?1, ?2, ?2, ?3, ?2, ?4, ?5, ?6, ?7, ?8)",
                params![id, millis(now), token.as_slice(), report.json, f.version, f.os, f.machine, f.modules],
            )
            .map(drop)
        })
        .await
    }

    /// Applies the token rules to an update of server `id` and, when accepted, stores the report
    /// and the hash of a fresh token, all in one transaction.
    ///
    /// # Errors
    /// Database failures.
    pub async fn update(
        &self,
        id: String,
        presented: Option<String>,
        now: DateTime<Utc>,
        report: StoredReport,
    ) -> Result<Updated, CollectorError> {
        self.run(move |c| {
            let tx = c.transaction()?;
            let stored = tx
                .query_row("SELECT token_hash, token_issued FROM servers WHERE id = ?1", [&id], |row| {
                    let hash: Vec<u8> = row.get(0)?;
                    let issued: i64 = row.get(1)?;
                    Ok((hash, issued))
                })
                .optional()?;
            let Some((hash, issued)) = stored else {
                return Ok(Updated::Unknown);
            };
            // A hash of the wrong length (a damaged row) matches nothing.
            let hash: TokenHash = hash.try_into().unwrap_or([0; 32]);
            let stored = StoredToken { hash, issued: from_millis(issued) };
            let decision = tokens::decide(now, &stored, presented.as_deref());
            if !decision.accepted() {
                return Ok(Updated::Refused(decision));
            }
            let token = tokens::new_token();
            let issued = from_millis(millis(now));
            let f = &report.facts;
            tx.execute(
                "UPDATE servers SET last_seen = ?2, token_hash = ?3, token_issued = ?2, report = ?4,
                                    version_name = ?5, os_name = ?6, machine = ?7, modules = ?8
                 WHERE id = ?1",
                params![
                    id,
                    millis(now),
                    tokens::hash_token(&token).as_slice(),
                    report.json,
                    f.version,
                    f.os,
                    f.machine,
                    f.modules
                ],
            )?;
            tx.commit()?;
            Ok(Updated::Accepted(Token { id: token, issued }, decision))
        })
        .await
    }

    /// Counts the servers seen at or after `since`, one row at a time, from their stored facts,
    /// on the reading connection (WAL lets it run beside writes); a second pass over the module
    /// lists, in the same read transaction, counts the servers running a module folded at
    /// `min_group`.
    ///
    /// # Errors
    /// Database failures.
    pub async fn aggregate_since(&self, since: DateTime<Utc>, min_group: u64) -> Result<Aggregator, CollectorError> {
        self.run_on(&self.reader, move |c| {
            let tx = c.transaction()?;
            let mut aggregator = Aggregator::default();
            {
                let mut stmt = tx.prepare_cached(
                    "SELECT version_name, os_name, machine, modules FROM servers WHERE last_seen >= ?1",
                )?;
                let mut rows = stmt.query([millis(since)])?;
                while let Some(row) = rows.next()? {
                    let text = |i: usize| row.get_ref(i).map(|v| v.as_str().unwrap_or_default());
                    aggregator.add(text(0)?, text(1)?, text(2)?, text(3)?);
                }
            }
            let folded = aggregator.folded_modules(min_group);
            if !folded.is_empty() {
                let mut stmt = tx.prepare_cached("SELECT modules FROM servers WHERE last_seen >= ?1")?;
                let mut rows = stmt.query([millis(since)])?;
                while let Some(row) = rows.next()? {
                    aggregator.add_folded(row.get_ref(0)?.as_str().unwrap_or_default(), &folded);
                }
            }
            Ok(aggregator)
        })
        .await
    }

    /// How many servers are registered.
    ///
    /// # Errors
    /// Database failures.
    pub async fn server_count(&self) -> Result<u64, CollectorError> {
        self.run(|c| c.query_row("SELECT COUNT(*) FROM servers", [], |row| row.get::<_, i64>(0)))
            .await
            .map(|n| u64::try_from(n).unwrap_or(0))
    }
}

/// Why a database could not be prepared.
enum Init {
    Sql(rusqlite::Error),
    Newer(i64),
}

impl From<rusqlite::Error> for Init {
    fn from(e: rusqlite::Error) -> Self {
        Init::Sql(e)
    }
}

fn init(conn: &Connection) -> Result<(), Init> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(mode, "the collector database did not switch to WAL mode");
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    match version {
        0 => {
            conn.execute_batch(&format!("BEGIN; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"))?;
            Ok(())
        }
        SCHEMA_VERSION => Ok(()),
        v => Err(Init::Newer(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn schema_is_created_once_and_checked() {
        let dir = std::env::temp_dir().join(format!("astmanproxy-db-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.db");
        let _ = std::fs::remove_file(&path);
        let db = Db::open(&path).unwrap();
        assert_eq!(db.server_count().await.unwrap(), 0);
        drop(db);
        let db = Db::open(&path).unwrap();
        assert_eq!(db.server_count().await.unwrap(), 0);
        drop(db);
        let conn = Connection::open(&path).unwrap();
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = Db::open(&path).unwrap_err();
        assert!(err.to_string().contains("schema version 99"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
