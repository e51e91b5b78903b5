//! The single writer and its group commit.
//!
//! Submitters decode and verify signatures on their own threads, and check a new contribution's
//! content against the content store there too (hashing a large document never stalls the
//! writer), then hand records to one writer thread. The writer drains everything queued (up to
//! `max_batch_records`), folds each record into the state, writes all accepted records and their
//! Merkle hashes in one store transaction (SQLite or PostgreSQL), and only after that commit
//! answers the submitters. One fsync thus acknowledges many records, and no record is
//! acknowledged before it is durable.
//!
//! Readers see the ledger through its [`View`]; the writer holds the view exclusively from the
//! first fold of a batch until its commit, so nobody ever observes a record that is not yet
//! durable.
//!
//! **An uncontended submit commits on its own thread** (SQLite). When nothing is queued and no
//! batch is being committed, [`Ledger::submit_record`] folds and commits its record itself,
//! under the same store lock the writer thread takes for each batch, instead of handing it over
//! and waiting to be woken: the two thread wake-ups cost more than the fold on a small machine,
//! and one record at a time is the latency path (a gateway call's receipt). As soon as anything
//! is queued, records go to the writer and share its group commit.

use crate::reader::{ConsistencyProof, InclusionProof, Reader};
use crate::stored::{self, BatchHistory, BatchWrites};
use crate::{load_signer, ContentStore, DataDir, LedgerError, View};
use serde::Serialize;
use shoulders_log::{leaf_hash, Hash};
use shoulders_record::{sign_record, ActorKey, Body, SignedRecord};
use shoulders_state::HistoryRead;
use shoulders_state::State;
use shoulders_store::{AppendBatch, Store, StoreError};
use std::fs::File;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Most records one `submit_batch` call may carry.
pub const MAX_SUBMIT_BATCH: usize = 10_000;

/// Tuning for the writer.
#[derive(Clone, Debug)]
pub struct LedgerConfig {
    /// Most records folded into one transaction (one fsync).
    pub max_batch_records: usize,
    /// Most jobs waiting for the writer before submitters block (back-pressure).
    pub queue_depth: usize,
    /// How long `open` keeps trying for a PostgreSQL database's writer lock before refusing
    /// with `E_WRITER_LOCKED` (a writer that just died holds it for a moment).
    pub writer_lock_wait_ms: u64,
    /// When set, a new record (not an identical resubmission) whose signer timestamp is more
    /// than this far from the clock is refused with `E_TIMESTAMP_OUTSIDE_WINDOW`, so an old
    /// signed body cannot be submitted later to back-date an action. Off for local tools that
    /// import history; the server turns it on.
    pub admission_window_ms: Option<u64>,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            max_batch_records: 10_000,
            queue_depth: 1024,
            writer_lock_wait_ms: 3_000,
            admission_window_ms: None,
        }
    }
}

/// The outcome of a successful submit.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Appended {
    pub index: u64,
    #[serde(serialize_with = "ser_hash")]
    pub leaf_hash: Hash,
    /// True when the same record was already in the log (idempotent resubmission).
    pub duplicate: bool,
    /// For a `usage.receipt` appended by this submit: what the fold charged, as its receipt
    /// row and legs in the store say, so a caller (the gateway) need not read them back.
    /// `None` for other records and for a duplicate.
    #[serde(skip)]
    pub charged: Option<Charged>,
}

/// What the fold charged for a receipt ([`Appended::charged`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Charged {
    pub charge_micros: u128,
    pub currency: Arc<str>,
    /// The legs the receipt posted (its split): the store's legs of its record.
    pub legs: usize,
}

fn ser_hash<S: serde::Serializer>(h: &Hash, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&h.to_string())
}

struct Shared {
    admission_window_ms: Option<u64>,
    /// The operator's key (`D/operator.key`), when this data directory has one: the writer
    /// signs `ledger.clock` records with it.
    operator_key: Option<ActorKey>,
    view: View,
    stopped: AtomicBool,
    /// Records handed to the writer and not yet answered (its queue depth, for metrics).
    queued_records: AtomicUsize,
    /// Told the time of every batch the writer folds and commits (see [`Ledger::observe_commits`]).
    commit_observer: OnceLock<CommitObserver>,
}

/// Called by the writer thread after each batch with the time it took (folding the batch and
/// its store transaction) and the records it carried. Keeps the engine free of any metrics
/// library: the server turns these calls into a histogram.
pub type CommitObserver = Box<dyn Fn(Duration, usize) + Send + Sync>;

/// A decoded, signature-checked record on its way to the writer.
pub(crate) struct Checked {
    record: SignedRecord,
    leaf: Hash,
    /// Why the record must be refused if it is new (a contribution whose content the ledger
    /// has not received or whose sizes are not the measured ones). Found on the submitter's
    /// thread; the writer ignores it for an identical resubmission, which stays a duplicate.
    refusal: Option<LedgerError>,
}

struct Job {
    records: Vec<Checked>,
    reply: SyncSender<Vec<Result<Appended, LedgerError>>>,
}

/// A ledger open for writing. Exactly one per data directory (enforced with a file lock) and,
/// on PostgreSQL, one per database (the store's advisory lock: `E_WRITER_LOCKED`).
pub struct Ledger {
    shared: Arc<Shared>,
    /// The writable store: the writer thread holds it for each batch, and an uncontended
    /// submitter for its own commit (see the module doc).
    store: Arc<Mutex<Box<dyn Store>>>,
    /// Whether an uncontended submit may commit on its own thread: SQLite only. PostgreSQL's
    /// blocking client runs a runtime of its own, which cannot start on a thread of the
    /// caller's async runtime, so its commits stay on the writer thread (and a network round
    /// trip dwarfs the hand-off there anyway).
    commit_on_caller: bool,
    content: ContentStore,
    tx: Option<SyncSender<Job>>,
    writer: Option<JoinHandle<()>>,
    verifier_key: String,
    _lock: File,
}

impl Ledger {
    pub fn open(dir: &DataDir) -> Result<Self, LedgerError> {
        Self::open_with(dir, LedgerConfig::default())
    }

    pub fn open_with(dir: &DataDir, config: LedgerConfig) -> Result<Self, LedgerError> {
        assert!(config.max_batch_records >= 1 && config.queue_depth >= 1);
        dir.require()?;
        let lock = dir.lock()?;
        let location = dir.store_location()?;
        let store =
            location.open_writer(std::time::Duration::from_millis(config.writer_lock_wait_ms))?;
        let (signer, verifier_key) = load_signer(dir, &*store)?;
        // The stored state, not a replay: opening costs O(entities), whatever the history.
        let mut store = store;
        let (state, frontier) = stored::open_state(&mut *store)?;
        let reader = Reader::from_parts(location.open_read_only()?, signer, verifier_key.clone());
        let operator_key = load_operator_key(dir)?;
        let shared = Arc::new(Shared {
            admission_window_ms: config.admission_window_ms,
            operator_key,
            view: View::new(state, frontier, reader),
            stopped: AtomicBool::new(false),
            queued_records: AtomicUsize::new(0),
            commit_observer: OnceLock::new(),
        });
        let (tx, rx) = mpsc::sync_channel(config.queue_depth);
        let store = Arc::new(Mutex::new(store));
        let (writer_shared, writer_store) = (Arc::clone(&shared), Arc::clone(&store));
        let writer = std::thread::Builder::new()
            .name("shoulders-writer".into())
            .spawn(move || run_writer(writer_shared, writer_store, rx, config.max_batch_records))
            .map_err(|e| LedgerError::io(dir.root(), e))?;
        Ok(Ledger {
            shared,
            store,
            commit_on_caller: matches!(location, crate::StoreLocation::Sqlite(_)),
            content: ContentStore::new(dir),
            tx: Some(tx),
            writer: Some(writer),
            verifier_key,
            _lock: lock,
        })
    }

    /// Records submitted and not yet committed (or refused): the writer's queue depth.
    pub fn queued_records(&self) -> usize {
        self.shared.queued_records.load(Ordering::Relaxed)
    }

    /// Whether the writer still takes records: false once its thread has ended or a failed
    /// commit left it unable to recover its state (every submit is then `E_WRITER_STOPPED`).
    pub fn is_running(&self) -> bool {
        !self.shared.stopped.load(Ordering::SeqCst)
            && self.writer.as_ref().is_some_and(|w| !w.is_finished())
    }

    /// Have `observer` told about every later batch commit. Only the first observer set is
    /// kept; returns false if one was already set.
    pub fn observe_commits(&self, observer: CommitObserver) -> bool {
        self.shared.commit_observer.set(observer).is_ok()
    }

    pub fn verifier_key(&self) -> &str {
        &self.verifier_key
    }

    /// The data directory's content store, where a contribution's document must be before its
    /// record is admitted.
    pub fn content(&self) -> &ContentStore {
        &self.content
    }

    /// The admission window on signer timestamps, if this ledger has one.
    pub(crate) fn admission_window_ms(&self) -> Option<u64> {
        self.shared.admission_window_ms
    }

    /// What readers see: everything durably committed.
    pub fn view(&self) -> &View {
        &self.shared.view
    }

    /// The log's origin: every record must be signed for it (`log`), else `E_WRONG_LEDGER`.
    pub fn origin(&self) -> &str {
        self.view().origin()
    }

    /// Number of durably committed records.
    pub fn size(&self) -> u64 {
        self.view().size()
    }

    /// Run `f` on the committed state (bounded: entities, balances, counters).
    pub fn with_state<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        self.view().with_state(f)
    }

    /// Run `f` on the committed state and the store's history, consistently: the store is read
    /// through the reader at the committed size, while no commit can run.
    pub fn with_history<T>(
        &self,
        f: impl FnOnce(&State, &dyn shoulders_store::Store) -> Result<T, LedgerError>,
    ) -> Result<T, LedgerError> {
        self.view().with_history(f)
    }

    /// Where `(signer, client id)` was first used in the committed log, if it was.
    pub fn seen(
        &self,
        signer: &shoulders_record::PublicKey,
        client_id: &str,
    ) -> Result<Option<shoulders_state::Seen>, LedgerError> {
        self.view().seen(signer, client_id)
    }

    /// The signed checkpoint of everything committed.
    pub fn checkpoint(&self) -> Result<Vec<u8>, LedgerError> {
        self.view().checkpoint()
    }

    /// Inclusion proof of `index` in the tree of `size` (default: everything committed).
    pub fn inclusion_proof(
        &self,
        index: u64,
        size: Option<u64>,
    ) -> Result<InclusionProof, LedgerError> {
        self.view().inclusion_proof(index, size)
    }

    /// Consistency proof from `old` to `new` (default: everything committed).
    pub fn consistency_proof(
        &self,
        old: u64,
        new: Option<u64>,
    ) -> Result<ConsistencyProof, LedgerError> {
        self.view().consistency_proof(old, new)
    }

    /// The exact bytes of record `index`.
    pub fn record(&self, index: u64) -> Result<Option<Vec<u8>>, LedgerError> {
        self.view().record(index)
    }

    /// The C2SP tile `coord` of the committed tree.
    pub fn tile(&self, coord: &shoulders_log::tiles::TileCoord) -> Result<Vec<u8>, LedgerError> {
        self.view().tile(coord)
    }

    /// Export everything committed.
    pub fn export(&self, out: &mut dyn std::io::Write) -> Result<(), LedgerError> {
        self.view().export(out)
    }

    /// Verify, fold and durably append one signed record. Returns only after it is committed
    /// (or was already in the log: same signer, client id and bytes).
    ///
    /// A new `data.contribute` is admitted only for content already in [`Ledger::content`],
    /// intact and with the measured sizes (`E_CONTENT_MISSING`, `E_CONTENT_CORRUPT`,
    /// `E_CONTENT_SIZE_MISMATCH`); [`Ledger::contribute`] stores the content and submits. A
    /// new `model.register` naming a `training.config_hash` is admitted only when that
    /// configuration is stored there, intact, and a JSON object of at most 1 MiB
    /// (`E_CONTENT_MISSING`, `E_CONTENT_CORRUPT`, `E_TRAINING_CONFIG_INVALID`).
    pub fn submit(&self, bytes: Vec<u8>) -> Result<Appended, LedgerError> {
        self.submit_record(SignedRecord::decode(bytes)?)
    }

    /// [`Ledger::submit`] for a record already decoded: its signature is checked unless it
    /// already was (decoded and verified by the caller, or signed in this process), so a server
    /// that verified a record to charge its signer's quota does not verify it twice.
    pub fn submit_record(&self, mut record: SignedRecord) -> Result<Appended, LedgerError> {
        record.verify_signature()?;
        self.submit_checked(self.check_record(record))
    }

    /// Commit one checked record: on this thread when the writer is idle (see the module
    /// doc), else handed to the writer. Returns its outcome once it is durable (or refused).
    pub(crate) fn submit_checked(&self, checked: Checked) -> Result<Appended, LedgerError> {
        let outcome = match self.claim_idle_store() {
            Some(mut claim) => commit_jobs(&self.shared, &mut **claim.store, vec![vec![checked]])
                .pop()
                .expect("one outcome per job"),
            None => self.send(vec![checked]),
        };
        outcome.into_iter().next().expect("one outcome per record")
    }

    /// The store, if nothing is queued for the writer and no batch is being committed. Only
    /// one record at a time comes this way, so a burst still reaches the writer and its group
    /// commit: the first submitter to find the queue empty claims it (`queued_records` 0 to
    /// 1), and everyone after it queues.
    fn claim_idle_store(&self) -> Option<IdleClaim<'_>> {
        if !self.commit_on_caller {
            return None;
        }
        let queued = &self.shared.queued_records;
        queued
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Relaxed)
            .ok()?;
        match self.store.try_lock() {
            Ok(store) => Some(IdleClaim { store, queued }),
            Err(_) => {
                queued.fetch_sub(1, Ordering::AcqRel);
                None
            }
        }
    }

    /// The checks that run on the submitter's thread before the writer sees a verified record:
    /// a new contribution's content must be stored, intact and of the declared sizes, and a new
    /// registration's training configuration stored, intact and a JSON object. Replay
    /// never runs this (the log is admitted history; its content is not re-read on open).
    pub(crate) fn check_record(&self, record: SignedRecord) -> Checked {
        let leaf = leaf_hash(record.bytes());
        let refusal = self.content_refusal(&record);
        Checked {
            record,
            leaf,
            refusal,
        }
    }

    fn content_refusal(&self, record: &SignedRecord) -> Option<LedgerError> {
        let r = record.record();
        // A (signer, id) already in the log is answered by the writer as a duplicate or an id
        // conflict before this verdict is looked at, so checking its content anyway is only a
        // little wasted work.
        match &r.body {
            Body::DataContribute(body) => self.content.check_contribution(body).err(),
            // A registration naming a training configuration: the document must be here, so
            // the configuration of every admitted run can be shown.
            Body::ModelRegister(body) => {
                let hash = body.training.as_ref()?.config_hash.as_ref()?;
                self.content.training_config(hash).err()
            }
            _ => None,
        }
    }

    /// Submit many records at once. Results are in input order, one per record, and accepted
    /// records are appended in input order.
    ///
    /// Records are decoded and their signatures verified in chunks on worker threads, one batch
    /// equation per chunk ([`SignedRecord::from_bytes_batch`]; a chunk with a bad signature
    /// falls back to one-by-one checks, so each bad record gets its own `E_SIG_INVALID` and the
    /// others go on). Each verified chunk goes to the writer as soon as it and every earlier
    /// chunk are ready, so verification of later chunks overlaps the commit of earlier ones.
    pub fn submit_batch(&self, batch: Vec<Vec<u8>>) -> Vec<Result<Appended, LedgerError>> {
        const CHUNK: usize = 256;
        let count = batch.len();
        if count > MAX_SUBMIT_BATCH {
            return (0..count)
                .map(|_| {
                    Err(LedgerError::BatchTooLarge {
                        count,
                        limit: MAX_SUBMIT_BATCH,
                    })
                })
                .collect();
        }
        let mut rest = batch.into_iter();
        let chunks = std::iter::from_fn(|| {
            let chunk: Vec<Vec<u8>> = rest.by_ref().take(CHUNK).collect();
            (!chunk.is_empty()).then_some(chunk)
        });
        let threads = crate::pipeline::worker_threads().min(count.div_ceil(CHUNK).max(1));
        let mut results: Vec<Option<Result<Appended, LedgerError>>> =
            (0..count).map(|_| None).collect();
        let mut waiting: Vec<(Vec<usize>, Option<Replies>)> = Vec::new();
        let mut base = 0;
        crate::pipeline::ordered_map(
            chunks,
            threads,
            threads * 2,
            |records| {
                SignedRecord::from_bytes_batch(records)
                    .into_iter()
                    .map(|r| Ok(self.check_record(r?)))
                    .collect::<Vec<Result<Checked, LedgerError>>>()
            },
            |verified| {
                let mut slots = Vec::new();
                let mut valid = Vec::new();
                for (offset, v) in verified.into_iter().enumerate() {
                    match v {
                        Ok(checked) => {
                            slots.push(base + offset);
                            valid.push(checked);
                        }
                        Err(e) => results[base + offset] = Some(Err(e)),
                    }
                }
                base += CHUNK;
                let rx = (!valid.is_empty()).then(|| self.enqueue(valid));
                waiting.push((slots, rx));
                std::ops::ControlFlow::Continue(())
            },
        );
        for (slots, rx) in waiting {
            let Some(rx) = rx else { continue };
            let count = slots.len();
            for (slot, outcome) in slots.into_iter().zip(Self::wait(rx, count)) {
                results[slot] = Some(outcome);
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every record answered"))
            .collect()
    }

    fn send(&self, records: Vec<Checked>) -> Vec<Result<Appended, LedgerError>> {
        let count = records.len();
        Self::wait(self.enqueue(records), count)
    }

    /// Queue records for the writer; the receiver yields their outcomes after the commit.
    fn enqueue(&self, records: Vec<Checked>) -> Replies {
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        let tx = self.tx.as_ref().expect("sender lives until drop");
        let count = records.len();
        self.shared
            .queued_records
            .fetch_add(count, Ordering::Relaxed);
        // If the writer is gone the job (and its reply sender) is dropped, and `wait` reports it.
        if tx
            .send(Job {
                records,
                reply: reply_tx,
            })
            .is_err()
        {
            self.shared
                .queued_records
                .fetch_sub(count, Ordering::Relaxed);
        }
        reply_rx
    }

    fn wait(rx: Replies, count: usize) -> Vec<Result<Appended, LedgerError>> {
        rx.recv().unwrap_or_else(|_| {
            (0..count)
                .map(|_| Err(LedgerError::WriterStopped))
                .collect()
        })
    }
}

/// The writable store, claimed by a submitter that found the writer idle
/// ([`Ledger::claim_idle_store`]); dropping it gives the queue back.
struct IdleClaim<'a> {
    store: MutexGuard<'a, Box<dyn Store>>,
    queued: &'a AtomicUsize,
}

impl Drop for IdleClaim<'_> {
    fn drop(&mut self) {
        self.queued.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Where a job's outcomes arrive once its batch is committed.
type Replies = Receiver<Vec<Result<Appended, LedgerError>>>;

impl Drop for Ledger {
    /// Graceful shutdown: queued submissions are still committed and answered.
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

fn run_writer(
    shared: Arc<Shared>,
    store: Arc<Mutex<Box<dyn Store>>>,
    rx: Receiver<Job>,
    max_batch: usize,
) {
    while let Ok(first) = rx.recv() {
        // Waits for a submitter committing on its own thread, if one is.
        let mut store = store.lock().unwrap_or_else(|p| p.into_inner());
        let mut count = first.records.len();
        let mut jobs = vec![first];
        while count < max_batch {
            match rx.try_recv() {
                Ok(job) => {
                    count += job.records.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let (batches, replies): (Vec<_>, Vec<_>) =
            jobs.into_iter().map(|j| (j.records, j.reply)).unzip();
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        let outcomes = commit_jobs(&shared, &mut **store, batches);
        drop(store);
        for ((reply, size), outcome) in replies.into_iter().zip(sizes).zip(outcomes) {
            // A submitter that gave up waiting is not an error for the others.
            shared.queued_records.fetch_sub(size, Ordering::Relaxed);
            let _ = reply.send(outcome);
        }
    }
}

/// Fold and commit `batches` as one store transaction (unless the writer has stopped), telling
/// the commit observer; one outcome per record, per batch. The caller holds the store lock.
fn commit_jobs(
    shared: &Shared,
    store: &mut dyn Store,
    mut batches: Vec<Vec<Checked>>,
) -> Vec<Vec<Result<Appended, LedgerError>>> {
    if shared.stopped.load(Ordering::SeqCst) {
        return batches
            .iter()
            .map(|b| b.iter().map(|_| Err(LedgerError::WriterStopped)).collect())
            .collect();
    }
    // A panic in the fold or the store (a bug) stops the writer: the view may be half-folded.
    struct StopOnPanic<'a>(&'a AtomicBool);
    impl Drop for StopOnPanic<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                self.0.store(true, Ordering::SeqCst);
            }
        }
    }
    let _stop_on_panic = StopOnPanic(&shared.stopped);
    let started = Instant::now();
    let count = batches.iter().map(Vec::len).sum();
    let outcomes = commit_batch(shared, store, &mut batches);
    if let Some(observe) = shared.commit_observer.get() {
        observe(started.elapsed(), count);
    }
    outcomes
}

/// The refusal of a record signed for another ledger (its `log` is not this ledger's origin):
/// checked before anything else, so a record can never count here that was meant elsewhere.
pub(crate) fn wrong_ledger(origin: &str, r: &shoulders_record::Record) -> Option<LedgerError> {
    (r.log != origin).then(|| LedgerError::WrongLedger {
        record_log: r.log.clone(),
        origin: origin.to_string(),
    })
}

/// The admission-window refusal for a record signed at `ts_ms`, if it is outside the window.
pub(crate) fn outside_window(window_ms: Option<u64>, ts_ms: u64) -> Option<LedgerError> {
    let window_ms = window_ms?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    (ts_ms.abs_diff(now_ms) > window_ms).then_some(LedgerError::TimestampOutsideWindow {
        ts_ms,
        now_ms,
        window_ms,
    })
}

/// The log's clock advances at least this often while records that a licence time rule
/// applies to are admitted: such a record is judged no earlier than this long before the writer
/// admitted it.
pub const CLOCK_TICK_MS: u64 = 1000;

/// `D/operator.key`, if the data directory has one.
fn load_operator_key(dir: &DataDir) -> Result<Option<ActorKey>, LedgerError> {
    let path = dir.operator_key();
    match std::fs::read_to_string(&path) {
        Ok(text) => ActorKey::from_file_text(&text)
            .map(Some)
            .map_err(|e| LedgerError::KeyFile(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LedgerError::io(&path, e)),
    }
}

/// A `ledger.clock` record to admit before this batch: when a record in it is subject to a
/// licence time rule (see `State::needs_log_time`) and the log's clock is more than
/// [`CLOCK_TICK_MS`] behind the writer's. Without an operator key there is no clock, and time
/// rules fall back to the signer's timestamp (bounded by the admission window).
fn clock_record(shared: &Shared, state: &State, batches: &[Vec<Checked>]) -> Option<SignedRecord> {
    let key = shared.operator_key.as_ref()?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    if now_ms <= state.log_time_ms().saturating_add(CLOCK_TICK_MS) {
        return None;
    }
    let needed = batches
        .iter()
        .flatten()
        .any(|c| state.needs_log_time(c.record.record()));
    if !needed {
        return None;
    }
    let body = Body::LedgerClock(shoulders_record::LedgerClock { now_ms });
    sign_record(
        key,
        shared.view.origin(),
        &format!("clock-{now_ms}"),
        now_ms,
        body,
    )
    .ok()
}

fn commit_batch(
    shared: &Shared,
    store: &mut dyn Store,
    jobs: &mut [Vec<Checked>],
) -> Vec<Vec<Result<Appended, LedgerError>>> {
    let mut committed = shared.view.extend();
    let first_index = committed.frontier.size();
    let clock = clock_record(shared, &committed.state, jobs);
    // The history the fold needs for this batch, in one query per table.
    let mut history = match BatchHistory::prefetch(
        &*store,
        clock.iter().chain(jobs.iter().flatten().map(|c| &c.record)),
    ) {
        Ok(h) => h,
        Err(err) => {
            let message = err.to_string();
            return jobs
                .iter()
                .map(|j| {
                    j.iter()
                        .map(|_| Err(LedgerError::Store(StoreError::Database(message.clone()))))
                        .collect()
                })
                .collect();
        }
    };
    let mut state_writes = BatchWrites::default();
    let mut to_write: Vec<&[u8]> = Vec::new();
    let mut hashes: Vec<Hash> = Vec::new();
    if let Some(clock) = &clock {
        // The log's time first, so the batch's records are judged by it. If the fold refuses
        // it (the key in operator.key is no longer the operator's), the batch goes on without.
        let leaf = leaf_hash(clock.bytes());
        let index = committed.frontier.size();
        if let Ok((_, effects)) = committed.state.apply_with(index, leaf.0, clock, &history) {
            history.record(&effects);
            state_writes.add(effects);
            hashes.extend(committed.frontier.append(leaf));
            to_write.push(clock.bytes());
        }
    }
    let mut outcomes: Vec<Vec<Result<Appended, LedgerError>>> = Vec::with_capacity(jobs.len());
    for job in jobs.iter_mut() {
        let mut job_out = Vec::with_capacity(job.len());
        for checked in job.iter_mut() {
            let Checked {
                record: rec,
                leaf,
                refusal,
            } = checked;
            let rec: &SignedRecord = rec;
            let r = rec.record();
            let outcome = if let Some(err) = wrong_ledger(shared.view.origin(), r) {
                Err(err)
            } else if let Some(seen) = history.seen(&r.signer, &r.client_id) {
                if seen.leaf_hash == leaf.0 {
                    Ok(Appended {
                        index: seen.index,
                        leaf_hash: *leaf,
                        duplicate: true,
                        charged: None,
                    })
                } else {
                    Err(LedgerError::IdConflict {
                        client_id: r.client_id.clone(),
                        index: seen.index,
                    })
                }
            } else if let Some(err) = outside_window(shared.admission_window_ms, r.ts_ms) {
                Err(err)
            } else if let Some(err) = refusal.take() {
                // When the fold would refuse the record anyway, its reason is the better
                // answer: no upload can make that record acceptable.
                Err(match committed.state.check_with(rec, &history) {
                    Err(reject) => LedgerError::Rejected(reject),
                    Ok(()) => err,
                })
            } else {
                let index = committed.frontier.size();
                match committed.state.apply_with(index, leaf.0, rec, &history) {
                    Ok((_, effects)) => {
                        let charged = effects.receipt.as_ref().map(|r| Charged {
                            charge_micros: r.charge_micros,
                            currency: Arc::clone(&r.currency),
                            legs: effects.legs.len(),
                        });
                        history.record(&effects);
                        state_writes.add(effects);
                        hashes.extend(committed.frontier.append(*leaf));
                        to_write.push(rec.bytes());
                        Ok(Appended {
                            index,
                            leaf_hash: *leaf,
                            duplicate: false,
                            charged,
                        })
                    }
                    Err(reject) => Err(LedgerError::Rejected(reject)),
                }
            };
            job_out.push(outcome);
        }
        outcomes.push(job_out);
    }
    if to_write.is_empty() {
        return outcomes;
    }
    let writes = state_writes.finish(&committed.state);
    let batch = AppendBatch {
        first_index,
        records: to_write,
        hashes,
        state: Some(&writes),
    };
    if let Err(err) = store.append(&batch) {
        // Nothing of this batch may be acknowledged; roll the in-memory state back to what is
        // actually on disk.
        let message = err.to_string();
        for outcome in outcomes.iter_mut().flatten() {
            if outcome.is_ok() {
                *outcome = Err(LedgerError::Store(StoreError::Database(message.clone())));
            }
        }
        let recovered = store
            .refresh()
            .map_err(LedgerError::from)
            .and_then(|_| stored::load_state(store));
        match recovered {
            Ok((state, frontier)) => {
                committed.state = state;
                committed.frontier = frontier;
            }
            Err(_) => shared.stopped.store(true, Ordering::SeqCst),
        }
    }
    outcomes
}
