//! The worker's temporary space: each job spills its video and its MP3 here.
//!
//! Two bounds hold by construction. The space the jobs in flight may use together is a budget
//! (`CONVERTER_TEMP_BUDGET`): a job reserves its video's size plus the largest MP3 it may write
//! before it spills anything, and waits while others hold the room. And a worker that was killed
//! (OOM, SIGKILL) leaves nothing behind for long: each process spills into a directory of its
//! own, holding an exclusive lock on a file inside it for its lifetime; at start a worker removes
//! every such directory whose lock it can take, since its owner is gone. The lock, not a PID, says
//! who is alive: PIDs repeat (every container's worker is PID 1) and the kernel drops a dead
//! process's locks.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Directories of worker processes are named `<PREFIX><uuid>`.
const PREFIX: &str = "mp3converter-spill-";
const LOCK_FILE: &str = ".lock";
const MIB: u64 = 1024 * 1024;

pub struct SpillSpace {
    /// This process's own directory; removed when the worker stops.
    dir: tempfile::TempDir,
    /// Held for the process's lifetime: while it is locked, the directory is in use.
    _lock: File,
    /// Free room, in MiB.
    room: Arc<Semaphore>,
    budget_bytes: u64,
}

/// The reservation is larger than the whole budget: this job can never fit.
#[derive(Debug, thiserror::Error)]
#[error("the job needs {needed} bytes of temporary space and the whole budget is {budget} bytes")]
pub struct TooLarge {
    pub needed: u64,
    pub budget: u64,
}

impl SpillSpace {
    /// Removes what dead workers left in `parent` (the system's temp dir when `None`), then makes
    /// this process's directory there, with `budget_bytes` of room for the jobs in flight.
    pub fn open(parent: Option<&Path>, budget_bytes: u64) -> io::Result<Self> {
        let parent = parent.map_or_else(std::env::temp_dir, Path::to_path_buf);
        std::fs::create_dir_all(&parent)?;
        let removed = remove_leftovers(&parent)?;
        if removed > 0 {
            tracing::info!(removed, dir = %parent.display(), "removed the spill directories of stopped workers");
        }
        let dir = tempfile::Builder::new()
            .prefix(PREFIX)
            .tempdir_in(&parent)?;
        let lock = File::create(dir.path().join(LOCK_FILE))?;
        lock.try_lock().map_err(io::Error::other)?;
        let permits = usize::try_from(budget_bytes / MIB)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        Ok(Self {
            dir,
            _lock: lock,
            room: Arc::new(Semaphore::new(permits)),
            budget_bytes,
        })
    }

    /// A new temporary file in this process's directory.
    pub fn file(&self) -> io::Result<tempfile::NamedTempFile> {
        tempfile::NamedTempFile::new_in(self.dir.path())
    }

    /// Waits until `bytes` of room are free and holds them until the permit drops.
    pub async fn reserve(&self, bytes: u64) -> Result<OwnedSemaphorePermit, TooLarge> {
        let needed_mib = bytes.div_ceil(MIB);
        let too_large = || TooLarge {
            needed: bytes,
            budget: self.budget_bytes,
        };
        let permits = u32::try_from(needed_mib).map_err(|_| too_large())?;
        if needed_mib > self.budget_bytes / MIB {
            return Err(too_large());
        }
        self.room
            .clone()
            .acquire_many_owned(permits)
            .await
            .map_err(|_| too_large())
    }

    /// This process's directory.
    #[cfg(test)]
    fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Removes the spill directories in `parent` whose owner no longer runs; returns how many.
fn remove_leftovers(parent: &Path) -> io::Result<usize> {
    let mut removed = 0;
    for entry in std::fs::read_dir(parent)? {
        let entry = entry?;
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(PREFIX) || !entry.file_type()?.is_dir() {
            continue;
        }
        if owner_is_gone(&entry.path()) {
            match std::fs::remove_dir_all(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) => {
                    tracing::warn!(error = %e, dir = %entry.path().display(), "could not remove a stopped worker's spill directory")
                }
            }
        }
    }
    Ok(removed)
}

/// True when nobody holds the directory's lock (or it has none: its owner died while creating
/// it).
fn owner_is_gone(dir: &Path) -> bool {
    match File::open(dir.join(LOCK_FILE)) {
        Ok(lock) => lock.try_lock().is_ok(),
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    }
}

/// A default budget: room for `concurrency` jobs at the largest upload and MP3 the defaults
/// allow would be tens of GiB; 5 GiB fits the k8s `spill` volume (6 Gi) with a margin.
pub const DEFAULT_BUDGET_BYTES: u64 = 5 * 1024 * MIB;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_workers_directory_is_removed_and_a_live_ones_is_kept() {
        let parent = tempfile::tempdir().unwrap();
        let live = SpillSpace::open(Some(parent.path()), 64 * MIB).unwrap();
        std::fs::write(live.file().unwrap().path().with_extension("x"), b"in use").unwrap();
        // A worker killed mid-job: its directory and files remain, nobody holds its lock.
        let dead = parent.path().join(format!("{PREFIX}dead"));
        std::fs::create_dir(&dead).unwrap();
        File::create(dead.join(LOCK_FILE)).unwrap();
        std::fs::write(dead.join("video"), vec![0u8; 4096]).unwrap();

        let next = SpillSpace::open(Some(parent.path()), 64 * MIB).unwrap();
        assert!(!dead.exists(), "the dead worker's spill is gone");
        assert!(live.path().exists(), "the running worker's spill is kept");
        assert!(next.path().exists());
        let live_path = live.path().to_owned();
        drop(live);
        assert!(
            !live_path.exists(),
            "a worker removes its own directory when it stops"
        );
    }

    #[tokio::test]
    async fn reservations_wait_for_room_and_refuse_what_can_never_fit() {
        let parent = tempfile::tempdir().unwrap();
        let space = SpillSpace::open(Some(parent.path()), 10 * MIB).unwrap();
        let first = space.reserve(6 * MIB).await.unwrap();
        let waiting = space.reserve(6 * MIB);
        tokio::pin!(waiting);
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), &mut waiting)
                .await
                .is_err(),
            "the second job waits while the first holds the room"
        );
        drop(first);
        let _second = waiting.await.unwrap();
        let error = space.reserve(11 * MIB).await.unwrap_err();
        assert_eq!(error.budget, 10 * MIB);
    }
}
