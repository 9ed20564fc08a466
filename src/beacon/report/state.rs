//! The reporter's state: per (target url, Asterisk server) the server id, the token and when it
//! was issued, and the last posting. Kept in memory in a [`Board`] (which `BeaconShowServer`
//! reads) and persisted as JSON in the state file, written atomically (temporary file, fsync,
//! rename, fsync of the directory) with mode 0600, and loaded at start so that a restart keeps
//! its ids.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// The format version written in the file.
pub const STATE_VERSION: u32 = 1;

/// The state file's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateFile {
    /// [`STATE_VERSION`].
    #[serde(default)]
    pub version: u32,
    /// One entry per (target url, server).
    #[serde(default)]
    pub servers: Vec<Entry>,
}

/// What is known of one Asterisk server at one target.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The target's url.
    pub url: String,
    /// The proxy-side server name.
    pub server: String,
    /// The id the collector issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_id: Option<String>,
    /// The current token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// When the token was issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_issued: Option<DateTime<Utc>>,
    /// The last accepted report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_posting: Option<DateTime<Utc>>,
    /// When the next report is due (informative; recomputed at start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_posting: Option<DateTime<Utc>>,
}

impl Entry {
    fn is(&self, url: &str, server: &str) -> bool {
        self.url == url && self.server.eq_ignore_ascii_case(server)
    }
}

/// Why the state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// An I/O error on the file (or its temporary file).
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a state file.
    #[error("{}: not a Beacon state file: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: serde_json::Error,
    },
}

/// Reads the state file; a missing file is an empty state.
///
/// # Errors
/// An unreadable file or one that is not JSON of this shape.
pub fn load(path: &Path) -> Result<StateFile, StateError> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(StateFile::default()),
        Err(source) => return Err(StateError::Io { path: path.to_path_buf(), source }),
    };
    serde_json::from_slice(&text).map_err(|source| StateError::Json { path: path.to_path_buf(), source })
}

/// Writes `state` to `path` atomically with mode 0600: a temporary file in the same directory,
/// fsync, rename over `path`, fsync of the directory. The directory is created if missing.
///
/// # Errors
/// Any I/O error (the previous file is then left as it was).
pub fn save(path: &Path, state: &StateFile) -> Result<(), StateError> {
    let io = |source| StateError::Io { path: path.to_path_buf(), source };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "beacon".to_string());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let body =
        serde_json::to_vec_pretty(state).map_err(|source| StateError::Json { path: path.to_path_buf(), source })?;
    let written = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        #[cfg(unix)]
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        file.write_all(&body)?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            // Some file systems refuse to fsync a directory; the rename is done either way.
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(io)
}

/// The reporters' live state, shared with `BeaconShowServer`, plus a trigger that makes every
/// reporter report now (tests). Cheap to clone.
#[derive(Clone)]
pub struct Board {
    inner: Arc<BoardInner>,
}

struct BoardInner {
    entries: Mutex<Vec<Entry>>,
    trigger: watch::Sender<u64>,
    save: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Board {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Board").field("entries", &self.entries().len()).finish()
    }
}

impl Default for Board {
    fn default() -> Self {
        Board {
            inner: Arc::new(BoardInner {
                entries: Mutex::new(Vec::new()),
                trigger: watch::channel(0).0,
                save: tokio::sync::Mutex::new(()),
            }),
        }
    }
}

impl Board {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.inner.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Replaces everything with what a state file holds.
    pub fn load(&self, state: StateFile) {
        *self.lock() = state.servers;
    }

    /// A copy of every entry.
    pub fn entries(&self) -> Vec<Entry> {
        self.lock().clone()
    }

    /// The entry of `server` at `url` (a copy).
    pub fn get(&self, url: &str, server: &str) -> Option<Entry> {
        self.lock().iter().find(|e| e.is(url, server)).cloned()
    }

    /// The entry of `server` at the first of `urls` that has one (what `BeaconShowServer`
    /// shows: the first target).
    pub fn first(&self, urls: &[&str], server: &str) -> Option<Entry> {
        urls.iter().find_map(|url| self.get(url, server))
    }

    /// Changes the entry of `server` at `url` (created empty first if missing).
    pub fn update(&self, url: &str, server: &str, change: impl FnOnce(&mut Entry)) {
        let mut entries = self.lock();
        let i = match entries.iter().position(|e| e.is(url, server)) {
            Some(i) => i,
            None => {
                entries.push(Entry { url: url.to_string(), server: server.to_string(), ..Entry::default() });
                entries.len() - 1
            }
        };
        change(&mut entries[i]);
    }

    /// Writes the current state to `path` (one writer at a time; the newest state wins).
    ///
    /// # Errors
    /// The file cannot be written.
    pub async fn save(&self, path: &Path) -> Result<(), StateError> {
        let _one_writer = self.inner.save.lock().await;
        let state = StateFile { version: STATE_VERSION, servers: self.entries() };
        let path = path.to_path_buf();
        let written = tokio::task::spawn_blocking(move || save(&path, &state)).await;
        written.unwrap_or_else(|e| Err(StateError::Io { path: PathBuf::new(), source: std::io::Error::other(e) }))
    }

    /// Makes every reporter report now (a scheduled wait ends; a `Retry-After` or backoff wait
    /// does not).
    pub fn trigger(&self) {
        self.inner.trigger.send_modify(|n| *n += 1);
    }

    /// A receiver of [`Board::trigger`] calls.
    pub fn triggers(&self) -> watch::Receiver<u64> {
        self.inner.trigger.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("astmanproxy-state-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn sample() -> StateFile {
        let issued = DateTime::parse_from_rfc3339("2026-12-01T08:00:00Z").unwrap().with_timezone(&Utc);
        StateFile {
            version: STATE_VERSION,
            servers: vec![Entry {
                url: "https://b.example/api/v1".into(),
                server: "pbx1".into(),
                server_id: Some("id-1".into()),
                token: Some("tok".into()),
                token_issued: Some(issued),
                last_posting: Some(issued),
                next_posting: None,
            }],
        }
    }

    #[test]
    fn atomic_write_private_mode_and_reload() {
        let dir = temp("save");
        let path = dir.join("sub/beacon-state.json");
        assert_eq!(load(&path).unwrap(), StateFile::default(), "missing file: empty state");
        save(&path, &sample()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert_eq!(load(&path).unwrap(), sample());
        // Overwriting leaves no temporary file behind.
        let mut changed = sample();
        changed.servers[0].token = Some("tok2".into());
        save(&path, &changed).unwrap();
        assert_eq!(load(&path).unwrap(), changed);
        let names: Vec<_> =
            std::fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["beacon-state.json"]);
        // A file that is not a state file is an error, not silently an empty state.
        std::fs::write(&path, "nonsense").unwrap();
        assert!(load(&path).unwrap_err().to_string().contains("not a Beacon state file"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let dir = temp("fail");
        let path = dir.join("s.json");
        save(&path, &sample()).unwrap();
        // A directory where the temporary file would go: the write fails, the old file stays.
        std::fs::create_dir_all(dir.join(format!(".s.json.{}.tmp", std::process::id()))).unwrap();
        assert!(save(&path, &StateFile::default()).is_err());
        assert_eq!(load(&path).unwrap(), sample());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn board_updates_and_saves() {
        let dir = temp("board");
        let path = dir.join("s.json");
        let board = Board::default();
        board.load(sample());
        assert_eq!(board.get("https://b.example/api/v1", "PBX1").unwrap().server_id.as_deref(), Some("id-1"));
        board.update("https://other", "pbx1", |e| e.server_id = Some("id-2".into()));
        assert_eq!(
            board.first(&["https://other", "https://b.example/api/v1"], "pbx1").unwrap().server_id.as_deref(),
            Some("id-2")
        );
        board.save(&path).await.unwrap();
        assert_eq!(load(&path).unwrap().servers.len(), 2);
        let rx = board.triggers();
        board.trigger();
        assert!(rx.has_changed().unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
