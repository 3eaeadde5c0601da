//! sled-backed storage for openraft: the Raft log and vote ([`LogStore`]) and the
//! state machine with persistent snapshots ([`StateMachineStore`]).
//!
//! Layout in one sled database (opened in LowSpace mode, see STACK.md):
//! - tree `log`: big-endian u64 index -> JSON entry;
//! - tree `meta`: `vote`, `committed`, `last_purged` as JSON;
//! - tree `snapshot`: `current` -> JSON `{meta, data}`.
//!
//! The state machine lives in memory; on restart openraft installs the last snapshot
//! and re-applies the log up to the persisted committed id, so a SIGKILLed node comes
//! back with its state and event history. Every write that Raft relies on is flushed
//! before it is acknowledged.

use std::io;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use openraft::alias::{EntryOf, LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf, VoteOf};
use openraft::entry::RaftEntry;
use openraft::storage::{
    EntryResponder, IOFlushed, LogState, RaftLogReader, RaftLogStorage, RaftSnapshotBuilder,
    RaftStateMachine,
};
use openraft::{EntryPayload, OptionalSend, StoredMembership};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::TypeConfig;
use super::state::{CommandResult, PowerState};

type C = TypeConfig;

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

fn to_json<T: Serialize>(v: &T) -> io::Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(io_err)
}

fn from_json<T: for<'de> Deserialize<'de>>(b: &[u8]) -> io::Result<T> {
    serde_json::from_slice(b).map_err(|e| io_err(format!("corrupt raft storage record: {e}")))
}

/// Opens (or creates) the node's Raft storage under `dir`.
pub fn open(dir: &Path) -> io::Result<(LogStore, StateMachineStore)> {
    std::fs::create_dir_all(dir)?;
    let db = sled::Config::new()
        .path(dir.join("raft.sled"))
        .mode(sled::Mode::LowSpace)
        // The state is small; sled's default 1 GiB page cache is not needed.
        .cache_capacity(16 * 1024 * 1024)
        .open()
        .map_err(|e| {
            io_err(format!(
                "cannot open raft storage in {}: {e}",
                dir.display()
            ))
        })?;
    let log = LogStore {
        log: db.open_tree("log").map_err(io_err)?,
        meta: db.open_tree("meta").map_err(io_err)?,
    };
    let sm = StateMachineStore::new(db.open_tree("snapshot").map_err(io_err)?);
    Ok((log, sm))
}

/// The Raft log and vote.
#[derive(Debug, Clone)]
pub struct LogStore {
    log: sled::Tree,
    meta: sled::Tree,
}

impl LogStore {
    fn meta_get<T: for<'de> Deserialize<'de>>(&self, key: &str) -> io::Result<Option<T>> {
        match self.meta.get(key).map_err(io_err)? {
            Some(v) => Ok(Some(from_json(&v)?)),
            None => Ok(None),
        }
    }

    async fn meta_put<T: Serialize>(&self, key: &str, v: &T) -> io::Result<()> {
        self.meta.insert(key, to_json(v)?).map_err(io_err)?;
        self.meta.flush_async().await.map_err(io_err)?;
        Ok(())
    }
}

impl RaftLogReader<C> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<EntryOf<C>>, io::Error> {
        use std::ops::Bound;
        let start = match range.start_bound() {
            Bound::Included(s) => *s,
            Bound::Excluded(s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let mut out = Vec::new();
        for kv in self.log.range(start.to_be_bytes()..) {
            let (k, v) = kv.map_err(io_err)?;
            let idx = u64::from_be_bytes(k.as_ref().try_into().map_err(io_err)?);
            if !range.contains(&idx) {
                break;
            }
            out.push(from_json(&v)?);
        }
        Ok(out)
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<C>>, io::Error> {
        self.meta_get("vote")
    }
}

impl RaftLogStorage<C> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, io::Error> {
        let last_purged: Option<LogIdOf<C>> = self.meta_get("last_purged")?;
        let last = match self.log.last().map_err(io_err)? {
            Some((_, v)) => Some(from_json::<EntryOf<C>>(&v)?.log_id()),
            None => last_purged,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<C>) -> Result<(), io::Error> {
        self.meta_put("vote", vote).await
    }

    async fn save_committed(&mut self, committed: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        self.meta_put("committed", &committed).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<C>>, io::Error> {
        Ok(self.meta_get::<Option<LogIdOf<C>>>("committed")?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = EntryOf<C>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = sled::Batch::default();
        for e in entries {
            batch.insert(&e.index().to_be_bytes(), to_json(&e)?);
        }
        self.log.apply_batch(batch).map_err(io_err)?;
        let res = self.log.flush_async().await.map(|_| ()).map_err(io_err);
        callback.io_completed(res);
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |l| l.index() + 1);
        // From the end backwards, so a crash never leaves a hole.
        let keys: Vec<_> = self
            .log
            .range(from.to_be_bytes()..)
            .keys()
            .collect::<Result<_, _>>()
            .map_err(io_err)?;
        for k in keys.into_iter().rev() {
            self.log.remove(k).map_err(io_err)?;
        }
        self.log.flush_async().await.map_err(io_err)?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogIdOf<C>) -> Result<(), io::Error> {
        self.meta_put("last_purged", &log_id).await?;
        let keys: Vec<_> = self
            .log
            .range(..=log_id.index().to_be_bytes())
            .keys()
            .collect::<Result<_, _>>()
            .map_err(io_err)?;
        for k in keys {
            self.log.remove(k).map_err(io_err)?;
        }
        self.log.flush_async().await.map_err(io_err)?;
        Ok(())
    }
}

/// The applied state: the power state plus what openraft needs to know about it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Applied {
    pub last_applied: Option<LogIdOf<C>>,
    pub last_membership: StoredMembershipOf<C>,
    pub power: PowerState,
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMetaOf<C>,
    data: Vec<u8>,
}

/// The state machine. Cheap to clone; all clones share the state.
#[derive(Debug, Clone)]
pub struct StateMachineStore {
    applied: Arc<RwLock<Applied>>,
    snapshots: sled::Tree,
    changed: Arc<watch::Sender<u64>>,
}

impl StateMachineStore {
    fn new(snapshots: sled::Tree) -> Self {
        StateMachineStore {
            applied: Arc::new(RwLock::new(Applied::default())),
            snapshots,
            changed: Arc::new(watch::channel(0).0),
        }
    }

    /// Reads the applied state.
    pub fn read<T>(&self, f: impl FnOnce(&Applied) -> T) -> T {
        f(&self.applied.read().expect("state lock"))
    }

    /// Ticks after every apply or snapshot install.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v += 1);
    }

    fn current(&self) -> io::Result<Option<StoredSnapshot>> {
        match self.snapshots.get("current").map_err(io_err)? {
            Some(v) => Ok(Some(from_json(&v)?)),
            None => Ok(None),
        }
    }

    async fn save(&self, s: &StoredSnapshot) -> io::Result<()> {
        self.snapshots
            .insert("current", to_json(s)?)
            .map_err(io_err)?;
        self.snapshots.flush_async().await.map_err(io_err)?;
        Ok(())
    }
}

impl RaftSnapshotBuilder<C> for StateMachineStore {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<C, Vec<u8>>, io::Error> {
        let (meta, data) = {
            let a = self.applied.read().expect("state lock");
            (
                SnapshotMetaOf::<C> {
                    last_log_id: a.last_applied,
                    last_membership: a.last_membership.clone(),
                },
                to_json(&a.power)?,
            )
        };
        self.save(&StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        })
        .await?;
        Ok(SnapshotOf::<C, Vec<u8>> {
            meta,
            snapshot: data,
        })
    }
}

impl RaftStateMachine<C> for StateMachineStore {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogIdOf<C>>, StoredMembershipOf<C>), io::Error> {
        let a = self.applied.read().expect("state lock");
        Ok((a.last_applied, a.last_membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: futures::Stream<Item = Result<EntryResponder<C>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let result = {
                let mut a = self.applied.write().expect("state lock");
                a.last_applied = Some(entry.log_id());
                match &entry.payload {
                    EntryPayload::Blank => CommandResult { applied: true },
                    EntryPayload::Normal(cmd) => a.power.apply(cmd),
                    EntryPayload::Membership(m) => {
                        a.last_membership = StoredMembership::new(Some(entry.log_id()), m.clone());
                        CommandResult { applied: true }
                    }
                }
            };
            if let Some(r) = responder {
                r.send(result);
            }
        }
        self.bump();
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<C>,
        snapshot: Vec<u8>,
    ) -> Result<(), io::Error> {
        let power: PowerState = from_json(&snapshot)?;
        {
            let mut a = self.applied.write().expect("state lock");
            *a = Applied {
                last_applied: meta.last_log_id,
                last_membership: meta.last_membership.clone(),
                power,
            };
        }
        self.save(&StoredSnapshot {
            meta: meta.clone(),
            data: snapshot,
        })
        .await?;
        self.bump();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<SnapshotOf<C, Vec<u8>>>, io::Error> {
        Ok(self.current()?.map(|s| SnapshotOf::<C, Vec<u8>> {
            meta: s.meta,
            snapshot: s.data,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::StorageError;
    use openraft::testing::log::{StoreBuilder, Suite};

    struct Builder;

    impl StoreBuilder<C, LogStore, StateMachineStore, tempfile::TempDir> for Builder {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError<C>> {
            let dir = tempfile::tempdir().expect("tempdir");
            let (l, s) = open(dir.path()).expect("open store");
            Ok((dir, l, s))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn passes_openraft_storage_suite() {
        Suite::test_all(Builder)
            .await
            .expect("openraft storage suite");
    }

    #[tokio::test]
    async fn log_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut l, _) = open(dir.path()).unwrap();
            let vote = VoteOf::<C>::new(1, 1);
            l.save_vote(&vote).await.unwrap();
            l.save_committed(None).await.unwrap();
        }
        let (mut l, _) = open(dir.path()).unwrap();
        assert!(l.read_vote().await.unwrap().is_some());
        assert_eq!(l.read_committed().await.unwrap(), None);
    }

    #[tokio::test]
    async fn corrupt_record_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let (mut l, _) = open(dir.path()).unwrap();
        l.meta.insert("vote", b"not json".to_vec()).unwrap();
        let e = l.read_vote().await.unwrap_err().to_string();
        assert!(e.contains("corrupt raft storage record"), "{e}");
    }
}
