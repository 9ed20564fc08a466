//! The `logfile` writer: appends to the file, and reopens its path on SIGHUP so that logrotate
//! (move the file away, then `kill -HUP`) works as in 1.x.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// The open log file, shared by every log line; clones share it.
#[derive(Debug, Clone)]
pub struct LogFile {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

/// The log file of this process, reopened by [`reopen`].
static CURRENT: OnceLock<LogFile> = OnceLock::new();

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl LogFile {
    /// Opens (creates if missing) `path` for appending.
    ///
    /// # Errors
    /// The file cannot be opened; the error names the path.
    pub fn open(path: &Path) -> io::Result<LogFile> {
        let file = open(path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Ok(LogFile { path: path.to_path_buf(), file: Arc::new(Mutex::new(file)) })
    }

    /// Makes this the file that [`reopen`] reopens (the first one installed stays).
    pub fn install(&self) {
        let _ = CURRENT.set(self.clone());
    }

    /// Opens the path again and writes there from now on (the old file, moved away, is closed).
    ///
    /// # Errors
    /// The path cannot be opened; the old file is kept then.
    pub fn reopen(&self) -> io::Result<()> {
        let file = open(&self.path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.path.display())))?;
        *self.file.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = file;
        Ok(())
    }

    /// The path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Write for LogFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // The formatter hands over a whole line per call: one lock per line.
        self.file.lock().unwrap_or_else(std::sync::PoisonError::into_inner).write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.lock().unwrap_or_else(std::sync::PoisonError::into_inner).write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.lock().unwrap_or_else(std::sync::PoisonError::into_inner).flush()
    }
}

/// Reopens the installed log file, if any (SIGHUP). `Ok(None)` when logging goes to stderr.
///
/// # Errors
/// The path cannot be opened again; logging goes on to the old file.
pub fn reopen() -> io::Result<Option<PathBuf>> {
    match CURRENT.get() {
        Some(log) => log.reopen().map(|()| Some(log.path.clone())),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopen_writes_to_a_new_file_after_the_old_one_is_moved() {
        let dir = std::env::temp_dir().join(format!("astmanproxy-logfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.log");
        let mut log = LogFile::open(&path).unwrap();
        log.write_all(b"one\n").unwrap();
        std::fs::rename(&path, dir.join("a.log.1")).unwrap();
        log.write_all(b"two\n").unwrap();
        log.reopen().unwrap();
        log.write_all(b"three\n").unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("a.log.1")).unwrap(), "one\ntwo\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "three\n");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_unopenable_path_is_named() {
        let err = LogFile::open(Path::new("/nonexistent-dir/x.log")).unwrap_err().to_string();
        assert!(err.contains("/nonexistent-dir/x.log"), "{err}");
    }
}
