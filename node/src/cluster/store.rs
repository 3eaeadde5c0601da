//! sled-backed storage for openraft: the Raft log and vote ([`LogStore`]) and the
//! state machine with persistent snapshots ([`StateMachineStore`]).
//!
//! Layout in one sled database (opened in LowSpace mode, see docs/dependencies.md):
//! - tree `log`: big-endian u64 index -> JSON entry;
//! - tree `meta`: `vote`, `committed`, `last_purged`, `identity` ([`StoreIdentity`]) as
//!   JSON;
//! - tree `snapshot`: `current` -> JSON `{meta, data}`.
//!
//! The state machine lives in memory; on restart openraft installs the last snapshot
//! and re-applies the log up to the persisted committed id, so a SIGKILLed node comes
//! back with its state and event history. Every write that Raft relies on (entries, vote,
//! purge and truncation) is flushed before it is acknowledged; the committed mark is
//! not (see `save_committed`).

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

use super::{NodeId, TypeConfig};
use upsilon_core::replicated::state::{CommandResult, PowerState};

type C = TypeConfig;

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// How long one storage write may take before the store counts as failed.
pub const STORAGE_STALL: std::time::Duration = std::time::Duration::from_secs(15);

/// Runs a sled write off the runtime's worker threads: on a full or failing disk sled
/// can block in it, and a runtime whose workers are all blocked cannot even notice the
/// failure and stop (see `fatal`). A write that does not finish within
/// [`STORAGE_STALL`] (a disk turned read-only or full under sled's flusher, which then
/// waits forever) is an error: openraft stops on it and the node exits for its
/// supervisor, rather than run on answering no one.
async fn off_runtime<T: Send + 'static>(
    f: impl FnOnce() -> sled::Result<T> + Send + 'static,
) -> io::Result<T> {
    match tokio::time::timeout(STORAGE_STALL, tokio::task::spawn_blocking(f)).await {
        Ok(done) => done
            .map_err(|e| io_err(format!("storage task failed: {e}")))?
            .map_err(io_err),
        Err(_) => Err(io_err(format!(
            "a storage write did not finish within {} s: the disk is full, read-only or failing",
            STORAGE_STALL.as_secs()
        ))),
    }
}

fn to_json<T: Serialize>(v: &T) -> io::Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(io_err)
}

fn from_json<T: for<'de> Deserialize<'de>>(b: &[u8]) -> io::Result<T> {
    serde_json::from_slice(b).map_err(|e| io_err(format!("corrupt raft storage record: {e}")))
}

pub use upsilon_core::store_identity::{StoreIdentity, fnv64};

/// Reads and updates the store's identity record.
#[derive(Debug, Clone)]
pub struct IdentityHandle {
    meta: sled::Tree,
    dir: std::path::PathBuf,
    current: Arc<RwLock<StoreIdentity>>,
}

impl IdentityHandle {
    pub fn get(&self) -> StoreIdentity {
        self.current.read().expect("identity lock").clone()
    }

    /// Records the cluster this store belongs to (once); flushed before it returns.
    pub fn set_cluster_id(&self, id: &str) -> io::Result<()> {
        let mut cur = self.current.write().expect("identity lock");
        if cur.cluster_id.as_deref() == Some(id) {
            return Ok(());
        }
        let mut next = cur.clone();
        next.cluster_id = Some(id.to_string());
        self.meta
            .insert("identity", to_json(&next)?)
            .map_err(io_err)?;
        self.meta.flush().map_err(io_err)?;
        write_sidecar(&self.dir, &next)?;
        *cur = next;
        Ok(())
    }
}

/// The identity record kept apart from sled's files, with a checksum: a store whose
/// sled files lost their contents is told from a new one by it.
pub const IDENTITY_FILE: &str = "store-identity";

fn write_sidecar(dir: &Path, id: &StoreIdentity) -> io::Result<()> {
    let text = upsilon_core::store_identity::encode(id);
    let tmp = dir.join(format!("{IDENTITY_FILE}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut f, text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(IDENTITY_FILE))
}

/// The identity record beside the store: `Ok(None)` if there is none, `Err` (what is
/// wrong) if it is damaged.
fn read_sidecar(dir: &Path) -> Result<Option<StoreIdentity>, String> {
    let path = dir.join(IDENTITY_FILE);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    upsilon_core::store_identity::decode(&text)
        .map(Some)
        .map_err(|e| format!("{} {e}", path.display()))
}

/// A random non-zero u64 from the TLS provider's system random source.
pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    let rng = rustls::crypto::ring::default_provider().secure_random;
    loop {
        if rng.fill(&mut b).is_err() {
            // No system randomness: fall back to the clock (still unique per store).
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64);
            return t.max(1);
        }
        let v = u64::from_le_bytes(b);
        if v != 0 {
            return v;
        }
    }
}

/// Why the store could not be opened, in words naming the directory and what to do.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create the data directory {dir}: {source}")]
    CreateDir { dir: String, source: io::Error },
    #[error(
        "the raft store in {dir} is corrupt ({detail}). This node cannot rejoin with it: move the directory away (keep it for a bug report), then run `upsilon nodes remove {node_id}` on a member and start this node again to join as a new member"
    )]
    Corrupt {
        dir: String,
        detail: String,
        node_id: NodeId,
    },
    #[error(
        "the raft store in {dir} lost its contents ({detail}). This node cannot rejoin with it: move the directory away (keep it for a bug report), then start this node again: it rejoins as a new store by itself (`[cluster] damaged_store = \"set-aside\"` does this at start)"
    )]
    LostContents {
        dir: String,
        detail: String,
        node_id: NodeId,
    },
    #[error(
        "the raft store in {dir} is locked by another process (is another upsilond running with this data_dir?): {detail}"
    )]
    Locked { dir: String, detail: String },
    #[error("cannot open the raft store in {dir}: {detail}")]
    Io { dir: String, detail: String },
    #[error(
        "the data directory {dir} belongs to node id {found}, but this node's [cluster] id is {wanted}: point data_dir at this node's own directory (ids are never reused for another store)"
    )]
    WrongNode {
        dir: String,
        found: NodeId,
        wanted: NodeId,
    },
}

/// Opens (or creates) node `node_id`'s Raft storage under `dir`. A corrupt store is an
/// error naming the directory, never a panic (sled panics on some corruptions: caught).
pub fn open(
    dir: &Path,
    node_id: NodeId,
) -> Result<(LogStore, StateMachineStore, IdentityHandle), OpenError> {
    let d = dir.display().to_string();
    std::fs::create_dir_all(dir).map_err(|source| OpenError::CreateDir {
        dir: d.clone(),
        source,
    })?;
    let path = dir.join("raft.sled");
    let try_open = || {
        crate::fatal::catch_panics(|| {
            sled::Config::new()
                .path(&path)
                .mode(sled::Mode::LowSpace)
                // The state is small; sled's default 1 GiB page cache is not needed.
                .cache_capacity(16 * 1024 * 1024)
                .open()
        })
    };
    // The lock of a store just closed in this process can outlive it briefly (sled's
    // background flush; seconds on a loaded machine, seen in CI): wait up to 5 s before
    // calling it held by someone else.
    let mut opened = try_open();
    for _ in 0..50 {
        match &opened {
            Ok(Err(sled::Error::Io(e))) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(std::time::Duration::from_millis(100));
                opened = try_open();
            }
            _ => break,
        }
    }
    let corrupt = |detail: String| OpenError::Corrupt {
        dir: d.clone(),
        detail,
        node_id,
    };
    let db = match opened {
        Err(panic) => return Err(corrupt(format!("sled could not read it: {panic}"))),
        Ok(Err(sled::Error::Corruption { at, .. })) => {
            return Err(corrupt(format!("sled found corruption at {at:?}")));
        }
        Ok(Err(sled::Error::Io(e))) if e.kind() == io::ErrorKind::WouldBlock => {
            return Err(OpenError::Locked {
                dir: d.clone(),
                detail: e.to_string(),
            });
        }
        Ok(Err(sled::Error::Io(e))) if e.to_string().contains("lock") => {
            return Err(OpenError::Locked {
                dir: d.clone(),
                detail: e.to_string(),
            });
        }
        Ok(Err(e)) => {
            return Err(OpenError::Io {
                dir: d.clone(),
                detail: e.to_string(),
            });
        }
        Ok(Ok(db)) => db,
    };
    let tree = |name: &str| {
        db.open_tree(name).map_err(|e| OpenError::Io {
            dir: d.clone(),
            detail: e.to_string(),
        })
    };
    let meta = tree("meta")?;
    let log_tree = tree("log")?;
    let sidecar = read_sidecar(dir);
    let identity = match meta.get("identity") {
        Ok(Some(v)) => from_json::<StoreIdentity>(&v).map_err(|e| corrupt(e.to_string()))?,
        Ok(None) if !matches!(sidecar, Ok(None)) => {
            let detail = match &sidecar {
                Ok(Some(was)) => format!(
                    "its files hold no identity, but {IDENTITY_FILE} says it is node {}'s store {:016x}, created at Unix ms {}",
                    was.node_id, was.incarnation, was.created_ms
                ),
                Err(e) => format!("its files hold no identity, and {e}"),
                Ok(None) => unreachable!("matched above"),
            };
            return Err(OpenError::LostContents {
                dir: d.clone(),
                detail,
                node_id,
            });
        }
        Ok(None) => {
            // A store from before identities, or a new one: either way, from now on
            // this is its identity. A store that already holds a log keeps working
            // (its members know it with incarnation 0, which is not checked).
            let id = StoreIdentity {
                node_id,
                incarnation: random_u64(),
                cluster_id: None,
                created_ms: upsilon_core::time::unix_ms(std::time::SystemTime::now()),
            };
            let json = to_json(&id).map_err(|e| corrupt(e.to_string()))?;
            meta.insert("identity", json)
                .and_then(|_| meta.flush())
                .map_err(|e| OpenError::Io {
                    dir: d.clone(),
                    detail: e.to_string(),
                })?;
            id
        }
        Err(e) => return Err(corrupt(e.to_string())),
    };
    if identity.node_id != node_id {
        return Err(OpenError::WrongNode {
            dir: d,
            found: identity.node_id,
            wanted: node_id,
        });
    }
    let log = LogStore {
        log: log_tree,
        meta: meta.clone(),
    };
    let sm = StateMachineStore::new(tree("snapshot")?);
    check_consistent(&log, &sm).map_err(corrupt)?;
    // The record beside the store follows the store's own (written for stores from
    // before it, rewritten if damaged).
    if sidecar.as_ref().ok().and_then(|s| s.as_ref()) != Some(&identity) {
        write_sidecar(dir, &identity).map_err(|e| OpenError::Io {
            dir: d.clone(),
            detail: format!("cannot write {IDENTITY_FILE}: {e}"),
        })?;
    }
    let handle = IdentityHandle {
        meta,
        dir: dir.to_path_buf(),
        current: Arc::new(RwLock::new(identity)),
    };
    Ok((log, sm, handle))
}

impl OpenError {
    /// What is wrong with a damaged store, in a few words.
    pub fn damage_detail(&self) -> String {
        match self {
            OpenError::Corrupt { detail, .. } => format!("sled cannot use it: {detail}"),
            OpenError::LostContents { detail, .. } => format!("it lost its contents: {detail}"),
            other => other.to_string(),
        }
    }

    /// The store is damaged (as opposed to locked, misplaced or unreadable for want of
    /// permissions): it may be set aside.
    pub fn is_damage(&self) -> bool {
        matches!(
            self,
            OpenError::Corrupt { .. } | OpenError::LostContents { .. }
        )
    }
}

/// [`open`], and with `set_aside` a damaged store is moved into `damaged-<unix s>` in
/// the data directory (kept, for a bug report) and a new store started: the cluster
/// re-admits it. Returns what was done, for the node's log and events.
pub fn open_or_set_aside(
    dir: &Path,
    node_id: NodeId,
    set_aside: bool,
) -> Result<(LogStore, StateMachineStore, IdentityHandle, Option<String>), OpenError> {
    match open(dir, node_id) {
        Ok((l, s, i)) => Ok((l, s, i, None)),
        Err(e) if e.is_damage() && set_aside => {
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let aside = dir.join(format!("damaged-{stamp}"));
            let moved = std::fs::create_dir_all(&aside).and_then(|_| {
                std::fs::rename(dir.join("raft.sled"), aside.join("raft.sled"))?;
                match std::fs::rename(dir.join(IDENTITY_FILE), aside.join(IDENTITY_FILE)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                    _ => Ok(()),
                }
            });
            if let Err(m) = moved {
                return Err(OpenError::Io {
                    dir: dir.display().to_string(),
                    detail: format!(
                        "{e}; and it could not be moved aside to {}: {m}",
                        aside.display()
                    ),
                });
            }
            let what = format!(
                "the raft store in {} is damaged ({}): moved it to {} (kept for a bug report) and started a new store; this node rejoins the cluster by itself",
                dir.display(),
                e.damage_detail(),
                aside.display()
            );
            let (l, s, i) = open(dir, node_id)?;
            Ok((l, s, i, Some(what)))
        }
        Err(e) => Err(e),
    }
}

/// A store sled recovered only in part (a truncated or damaged file) can hold a log
/// that ends before what this node had already committed: openraft must never start on
/// it (it would panic, or hand the leader a reverted log).
fn check_consistent(log: &LogStore, sm: &StateMachineStore) -> Result<(), String> {
    let committed: Option<LogIdOf<C>> = log
        .meta_get::<Option<LogIdOf<C>>>("committed")
        .map_err(|e| e.to_string())?
        .flatten();
    let Some(committed) = committed else {
        return Ok(());
    };
    let last_log = match log.log.last().map_err(|e| e.to_string())? {
        Some((_, v)) => Some(
            from_json::<EntryOf<C>>(&v)
                .map_err(|e| e.to_string())?
                .log_id()
                .index(),
        ),
        None => None,
    };
    let purged: Option<LogIdOf<C>> = log.meta_get("last_purged").map_err(|e| e.to_string())?;
    let snapshot = sm
        .current()
        .map_err(|e| e.to_string())?
        .and_then(|s| s.meta.last_log_id.map(|l| l.index()));
    let held = [last_log, purged.map(|l| l.index()), snapshot]
        .into_iter()
        .flatten()
        .max();
    if held.is_none_or(|h| h < committed.index()) {
        return Err(format!(
            "its log ends at index {} but this node had committed index {}: entries were lost",
            held.map_or("0".to_string(), |h| h.to_string()),
            committed.index()
        ));
    }
    Ok(())
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

    /// Writes and flushes one record (one hand-off to the blocking pool, not two).
    async fn meta_put<T: Serialize>(&self, key: &str, v: &T) -> io::Result<()> {
        let (meta, key, json) = (self.meta.clone(), key.to_string(), to_json(v)?);
        off_runtime(move || meta.insert(key, json).and_then(|_| meta.flush())).await?;
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

    /// Not flushed: Raft does not rely on it (openraft only re-applies less at start
    /// when it lags), and a flush here would be a second fsync per entry on every node,
    /// on the commit path. It reaches the disk with the next log append's flush or
    /// sled's own flush within `flush_every_ms` (500 ms), so after a crash a node may
    /// count that much of its last committed entries as present rather than history
    /// (see `Cluster::caught_up`): the lag any follower under load has anyway. A lagging
    /// mark is never above the log's end, which `check_consistent` relies on.
    async fn save_committed(&mut self, committed: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        let (meta, json) = (self.meta.clone(), to_json(&committed)?);
        off_runtime(move || meta.insert("committed", json)).await?;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<C>>, io::Error> {
        Ok(self.meta_get::<Option<LogIdOf<C>>>("committed")?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = EntryOf<C>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let t_us = upsilon_core::time::now_us();
        let mut batch = sled::Batch::default();
        let mut last = 0;
        for e in entries {
            last = e.index();
            batch.insert(&last.to_be_bytes(), to_json(&e)?);
        }
        let log = self.log.clone();
        let res = off_runtime(move || log.apply_batch(batch).and_then(|_| log.flush()))
            .await
            .map(|_| ());
        tracing::trace!(
            target: crate::trace::LATENCY,
            index = last,
            took_us = upsilon_core::time::now_us() - t_us,
            t_us = upsilon_core::time::now_us(),
            "latency appended"
        );
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
        let log = self.log.clone();
        off_runtime(move || {
            for k in keys.into_iter().rev() {
                log.remove(k)?;
            }
            log.flush()
        })
        .await?;
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
        let log = self.log.clone();
        off_runtime(move || {
            for k in keys {
                log.remove(k)?;
            }
            log.flush()
        })
        .await?;
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
        let (snapshots, json) = (self.snapshots.clone(), to_json(s)?);
        off_runtime(move || {
            snapshots
                .insert("current", json)
                .and_then(|_| snapshots.flush())
        })
        .await?;
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
                let mut r = match &entry.payload {
                    EntryPayload::Blank => CommandResult::done(),
                    EntryPayload::Normal(cmd) => a.power.apply(cmd),
                    EntryPayload::Membership(m) => {
                        a.last_membership = StoredMembership::new(Some(entry.log_id()), m.clone());
                        CommandResult::done()
                    }
                };
                r.index = entry.log_id().index();
                r
            };
            tracing::trace!(
                target: crate::trace::LATENCY,
                index = result.index,
                t_us = upsilon_core::time::now_us(),
                "latency applied"
            );
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
        tracing::info!(
            "installed a snapshot up to index {} ({} bytes) from the leader",
            meta.last_log_id.as_ref().map_or(0, |l| l.index()),
            snapshot.len()
        );
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
            let (l, s, _) = open(dir.path(), 1).expect("open store");
            Ok((dir, l, s))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn passes_openraft_storage_suite() {
        Suite::test_all(Builder)
            .await
            .expect("openraft storage suite");
    }

    /// [`super::open`] for tests that reopen a store they just dropped: sled releases
    /// its file lock from a background thread a moment after the last handle goes
    /// (a new process never meets that), so a lock still held is waited out.
    fn open(
        dir: &Path,
        node_id: NodeId,
    ) -> Result<(LogStore, StateMachineStore, IdentityHandle), OpenError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match super::open(dir, node_id) {
                Err(OpenError::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                r => return r,
            }
        }
    }

    #[tokio::test]
    async fn log_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut l, _, _) = open(dir.path(), 1).unwrap();
            let vote = VoteOf::<C>::new(1, 1);
            l.save_vote(&vote).await.unwrap();
            l.save_committed(None).await.unwrap();
        }
        let (mut l, _, _) = open(dir.path(), 1).unwrap();
        assert!(l.read_vote().await.unwrap().is_some());
        assert_eq!(l.read_committed().await.unwrap(), None);
    }

    #[test]
    fn identity_is_kept_across_reopen_and_new_for_a_new_store() {
        let dir = tempfile::tempdir().unwrap();
        let first = open(dir.path(), 4).unwrap().2.get();
        assert_ne!(first.incarnation, 0);
        assert_eq!(first.node_id, 4);
        let again = open(dir.path(), 4).unwrap().2;
        assert_eq!(again.get(), first);
        again.set_cluster_id("c1").unwrap();
        drop(again);
        assert_eq!(
            open(dir.path(), 4).unwrap().2.get().cluster_id.as_deref(),
            Some("c1")
        );
        let e = open(dir.path(), 5).unwrap_err().to_string();
        assert!(
            e.contains("belongs to node id 4") && e.contains("id is 5"),
            "{e}"
        );
        std::fs::remove_dir_all(dir.path()).unwrap();
        let wiped = open(dir.path(), 4).unwrap().2.get();
        assert_ne!(wiped.incarnation, first.incarnation);
        assert_eq!(wiped.cluster_id, None);
    }

    #[tokio::test]
    async fn a_store_that_lost_committed_entries_is_an_error_naming_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut l, _, _) = open(dir.path(), 1).unwrap();
            for i in 1..=10u64 {
                l.log.insert(i.to_be_bytes(), entry_json(i)).unwrap();
            }
            let committed: LogIdOf<C> =
                serde_json::from_str(r#"{"leader_id":{"term":1,"node_id":1},"index":20}"#).unwrap();
            l.save_committed(Some(committed)).await.unwrap();
        }
        // sled recovers a truncated file to a consistent prefix; the log then ends
        // before what this node had committed.
        let e = open(dir.path(), 1).unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, OpenError::Corrupt { .. }), "{text}");
        assert!(
            text.contains(&dir.path().display().to_string())
                && text.contains("committed index 20")
                && text.contains("upsilon nodes remove 1"),
            "{text}"
        );
    }

    fn entry_json(i: u64) -> Vec<u8> {
        format!(
            r#"{{"log_id":{{"leader_id":{{"term":1,"node_id":1}},"index":{i}}},"payload":"Blank"}}"#
        )
        .into_bytes()
    }

    #[test]
    fn a_store_that_lost_its_contents_is_named_and_set_aside_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let first = open(dir.path(), 4).unwrap().2.get();
        // sled's files lose everything (a disk that returned zeros, a bad restore):
        // the identity record beside them still says whose store this was.
        std::fs::remove_dir_all(dir.path().join("raft.sled")).unwrap();
        let e = open(dir.path(), 4).unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, OpenError::LostContents { .. }), "{text}");
        assert!(
            text.contains(&dir.path().display().to_string())
                && text.contains(&format!("{:016x}", first.incarnation)),
            "{text}"
        );
        let e = super::open_or_set_aside(dir.path(), 4, false).unwrap_err();
        assert!(e.is_damage(), "{e}");
        let (_, _, id, note) = super::open_or_set_aside(dir.path(), 4, true).unwrap();
        let note = note.expect("a note");
        assert!(
            note.contains("lost its contents") && note.contains("damaged-"),
            "{note}"
        );
        assert_ne!(id.get().incarnation, first.incarnation);
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("damaged-"))
            .collect();
        assert_eq!(aside.len(), 1);
        assert!(aside[0].path().join(IDENTITY_FILE).exists());
    }

    #[test]
    fn a_damaged_identity_record_is_rewritten_from_a_whole_store_and_damage_with_an_empty_one() {
        let dir = tempfile::tempdir().unwrap();
        let first = open(dir.path(), 2).unwrap().2.get();
        let side = dir.path().join(IDENTITY_FILE);
        let mut b = std::fs::read(&side).unwrap();
        b[3] ^= 0x55;
        std::fs::write(&side, &b).unwrap();
        // The store still knows itself: the record is written again.
        assert_eq!(open(dir.path(), 2).unwrap().2.get(), first);
        assert_eq!(read_sidecar(dir.path()).unwrap(), Some(first));
        std::fs::write(&side, b"garbage").unwrap();
        std::fs::remove_dir_all(dir.path().join("raft.sled")).unwrap();
        let e = open(dir.path(), 2).unwrap_err().to_string();
        assert!(
            e.contains("lost its contents") && e.contains("cut short"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn corrupt_record_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let (mut l, _, _) = open(dir.path(), 1).unwrap();
        l.meta.insert("vote", b"not json".to_vec()).unwrap();
        let e = l.read_vote().await.unwrap_err().to_string();
        assert!(e.contains("corrupt raft storage record"), "{e}");
    }
}
