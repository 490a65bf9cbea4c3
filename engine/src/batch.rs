//! The batch pipeline: jobs enter a bounded crossbeam channel, a rayon pool works them, results
//! leave through a bounded channel in completion order. A failing job fails alone (a panic in a
//! job is caught and becomes its error), and the bytes in flight are bounded so memory does not
//! grow with the batch.
//!
//! ```text
//!  producer thread ──jobs (bounded)──▶ N workers on the pool ──results (bounded)──▶ caller
//!                                     └── byte budget: acquire before, release after the
//!                                         caller has taken the result
//! ```

use crate::error::{EngineError, Result};
use crate::process::{ProcessConfig, Processed, process, process_into};
use crate::source::AudioSource;
use crossbeam_channel::bounded;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::{Condvar, Mutex};

/// The charge of a job refused at its headers (it fails as fast when it runs): this many times
/// the input's size.
pub const MEMORY_PER_INPUT_BYTE: u64 = 4;

/// What the streaming chain holds whatever the length: its blocks (input, mix, encoder) and
/// buffers.
pub const STREAMING_OVERHEAD_BYTES: u64 = 8 << 20;

/// Decoded samples per input byte assumed when a format does not say its length (an MP3 without
/// a frame count): an 8 kbit/s stream of 8 kHz mono.
const UNKNOWN_SAMPLES_PER_BYTE: u64 = 8;

/// Batch settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Worker threads; 0 means one per core.
    pub threads: usize,
    /// Capacity of the job and result channels; 0 means twice the threads.
    pub queue_depth: usize,
    /// Most memory the jobs in flight may claim (see [`memory_estimate`]), results not yet
    /// taken included. A single larger job still runs, alone. Default 1 GiB.
    pub max_in_flight_bytes: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            threads: 0,
            queue_depth: 0,
            max_in_flight_bytes: 1 << 30,
        }
    }
}

/// Where a job's audio comes from.
pub enum JobInput {
    /// A file, memory-mapped by the worker that takes the job.
    File(PathBuf),
    /// Audio already in memory.
    Source(AudioSource),
}

/// Where a job's processed audio goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutput {
    /// Into [`Processed::audio`].
    Memory,
    /// Into this file as it is encoded: a temporary file beside it, synced and renamed over it
    /// once whole (removed on failure); [`Processed::audio`] is left empty.
    File(PathBuf),
}

impl JobInput {
    /// What the job will claim: see [`memory_estimate`].
    fn charge(&self, config: &ProcessConfig, output: &JobOutput) -> u64 {
        match self {
            JobInput::File(path) => match AudioSource::map_file(path, &config.input.limits) {
                Ok(source) => memory_estimate(&source, config, output),
                // It fails as it runs, having claimed nothing much.
                Err(_) => 0,
            },
            JobInput::Source(source) => memory_estimate(source, config, output),
        }
    }
}

/// The memory processing `source` with `config` into `output` takes, from what its headers say
/// it decodes to. A format that does not say its length is taken to decode to
/// [`UNKNOWN_SAMPLES_PER_BYTE`] samples a byte. Reads the headers only.
///
/// The chain ([`crate::process::process_into`]) streams: it holds [`STREAMING_OVERHEAD_BYTES`],
/// the decoded samples of a compressed input up to the spill budget (4 bytes each), 1 byte per
/// 8 samples of frame statistics, a FLAC output's frames up to a quarter of the spill budget
/// (the rest wait in a file), the output only when it goes to memory (2 bytes a sample, FLAC's
/// frame headers on top in the worst case), and the input's bytes unless they are a mapped
/// file. A few hundred KB of FLAC that decode to hours are charged for the hours' frame
/// statistics, not for their samples.
pub fn memory_estimate(source: &AudioSource, config: &ProcessConfig, output: &JobOutput) -> u64 {
    let limits = &config.input.limits;
    let (samples, in_place) = match crate::decode::Decoder::open(source, limits) {
        Ok(decoder) => {
            let in_place = matches!(decoder, crate::decode::Decoder::Wav { .. });
            let info = decoder.info();
            let samples = match info.declared_frames {
                Some(frames) => frames.saturating_mul(u64::from(info.channels.max(1))),
                None => source.len().saturating_mul(UNKNOWN_SAMPLES_PER_BYTE),
            };
            (samples, in_place)
        }
        // Refused at its headers: it will fail as fast when it runs.
        Err(_) => return source.len().saturating_mul(MEMORY_PER_INPUT_BYTE),
    };
    let budget = config.spill.memory_bytes as u64;
    let spill = if in_place {
        0
    } else {
        samples.saturating_mul(4).min(budget)
    };
    let flac = config.format == crate::encode::OutputFormat::Flac;
    let encoded = samples.saturating_mul(2) + if flac { samples / 256 } else { 0 };
    let spool = if flac { encoded.min(budget / 4) } else { 0 };
    let output = match output {
        JobOutput::Memory => encoded,
        JobOutput::File(_) => 0,
    };
    let held = if source.is_mapped() { 0 } else { source.len() };
    STREAMING_OVERHEAD_BYTES + held + spill + samples / 8 + spool + output
}

/// What the batch did, for logs and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchStats {
    pub jobs: u64,
    pub failed: u64,
    /// The most memory (by the budget's measure) that was in flight at once.
    pub peak_in_flight_bytes: u64,
}

/// A counting semaphore over bytes.
struct ByteBudget {
    limit: u64,
    state: Mutex<(u64, u64)>, // (in flight, peak)
    freed: Condvar,
}

impl ByteBudget {
    fn acquire(&self, bytes: u64) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // A job larger than the whole budget runs when nothing else is in flight.
        while state.0 > 0 && state.0 + bytes > self.limit {
            state = self.freed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        state.0 += bytes;
        state.1 = state.1.max(state.0);
    }

    fn release(&self, bytes: u64) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.0 -= bytes;
        self.freed.notify_all();
    }

    fn peak(&self) -> u64 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).1
    }
}

/// The engine: a worker pool and its settings.
pub struct Engine {
    pool: rayon::ThreadPool,
    threads: usize,
    config: EngineConfig,
}

impl Engine {
    pub fn new(config: EngineConfig) -> Result<Engine> {
        let mut builder =
            rayon::ThreadPoolBuilder::new().thread_name(|i| format!("callrec-engine-{i}"));
        if config.threads > 0 {
            builder = builder.num_threads(config.threads);
        }
        let pool = builder
            .build()
            .map_err(|e| EngineError::Io(std::io::Error::other(e)))?;
        let threads = pool.current_num_threads();
        Ok(Engine {
            pool,
            threads,
            config,
        })
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Processes `jobs` (each with the caller's tag `T`) with `config`. `finish` receives each
    /// job's outcome (to write it out, say) and turns it into `R`; on the calling thread,
    /// `collect` receives the results in completion order.
    ///
    /// `finish` runs on one of the committing threads beside the pool (as many as workers):
    /// there a file output is synced and renamed into place before `finish` sees it, so the
    /// workers go on computing while the disk works.
    pub fn process_batch<T, R, J, F, C>(
        &self,
        jobs: J,
        config: &ProcessConfig,
        finish: F,
        collect: C,
    ) -> BatchStats
    where
        T: Send,
        R: Send,
        J: IntoIterator<Item = (T, JobInput)>,
        J::IntoIter: Send,
        F: Fn(&T, Result<Processed>) -> (R, bool) + Sync,
        C: FnMut(T, R),
    {
        self.process_batch_to(jobs, config, |_| JobOutput::Memory, finish, collect)
    }

    /// [`Engine::process_batch`] with each job's audio sent where `output` says (a file
    /// written as it is encoded keeps a long recording's output out of memory).
    pub fn process_batch_to<T, R, J, O, F, C>(
        &self,
        jobs: J,
        config: &ProcessConfig,
        output: O,
        finish: F,
        mut collect: C,
    ) -> BatchStats
    where
        T: Send,
        R: Send,
        J: IntoIterator<Item = (T, JobInput)>,
        J::IntoIter: Send,
        O: Fn(&T) -> JobOutput + Sync,
        F: Fn(&T, Result<Processed>) -> (R, bool) + Sync,
        C: FnMut(T, R),
    {
        let depth = if self.config.queue_depth == 0 {
            2 * self.threads
        } else {
            self.config.queue_depth
        };
        let budget = ByteBudget {
            limit: self.config.max_in_flight_bytes,
            state: Mutex::new((0, 0)),
            freed: Condvar::new(),
        };
        let (job_tx, job_rx) = bounded::<(T, JobInput)>(depth);
        let (commit_tx, commit_rx) = bounded::<(T, Result<Computed>, u64)>(depth);
        let (result_tx, result_rx) = bounded::<(T, R, bool, u64)>(depth);
        let mut stats = BatchStats::default();
        let jobs = jobs.into_iter();
        std::thread::scope(|scope| {
            scope.spawn(move || {
                for job in jobs {
                    if job_tx.send(job).is_err() {
                        break;
                    }
                }
            });
            let (budget, finish, output) = (&budget, &finish, &output);
            scope.spawn(move || {
                self.pool.scope(|workers| {
                    for _ in 0..self.threads {
                        let (job_rx, commit_tx) = (job_rx.clone(), commit_tx.clone());
                        workers.spawn(move |_| {
                            for (tag, input) in job_rx {
                                let output = output(&tag);
                                let charge = input.charge(config, &output);
                                budget.acquire(charge);
                                let outcome = run_one(input, output, config);
                                if let Err(refused) = commit_tx.send((tag, outcome, charge)) {
                                    // No committer left (the caller has stopped collecting).
                                    if let (_, Ok(computed), _) = refused.into_inner() {
                                        computed.discard();
                                    }
                                    budget.release(charge);
                                    break;
                                }
                            }
                        });
                    }
                });
                drop(commit_tx);
            });
            // Syncing and renaming a file waits on the disk: beside the pool, not on it.
            for _ in 0..self.threads {
                let (commit_rx, result_tx) = (commit_rx.clone(), result_tx.clone());
                scope.spawn(move || {
                    for (tag, outcome, charge) in commit_rx {
                        let outcome = outcome.and_then(Computed::commit);
                        let (result, ok) = finish(&tag, outcome);
                        if result_tx.send((tag, result, ok, charge)).is_err() {
                            budget.release(charge);
                            break;
                        }
                    }
                });
            }
            drop((commit_rx, result_tx));
            for (tag, result, ok, charge) in result_rx {
                stats.jobs += 1;
                stats.failed += (!ok) as u64;
                collect(tag, result);
                budget.release(charge);
            }
        });
        stats.peak_in_flight_bytes = budget.peak();
        stats
    }
}

/// A job's outcome as a worker leaves it: a file output written but not yet synced and
/// renamed into place.
struct Computed {
    processed: Processed,
    unsynced: Option<Unsynced>,
}

/// A processed recording in its temporary file beside `path`.
struct Unsynced {
    file: std::fs::File,
    temp: PathBuf,
    path: PathBuf,
}

impl Computed {
    /// Syncs a file output and renames it over its path (removing it if either fails).
    fn commit(self) -> Result<Processed> {
        if let Some(Unsynced { file, temp, path }) = self.unsynced {
            let done = file.sync_all().and_then(|()| std::fs::rename(&temp, &path));
            if let Err(e) = done {
                let _ = std::fs::remove_file(&temp);
                return Err(e.into());
            }
        }
        Ok(self.processed)
    }

    /// A job that is not going on: its temporary output is removed.
    fn discard(self) {
        if let Some(unsynced) = self.unsynced {
            let _ = std::fs::remove_file(&unsynced.temp);
        }
    }
}

fn run_one(input: JobInput, output: JobOutput, config: &ProcessConfig) -> Result<Computed> {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let source = match input {
            JobInput::File(path) => AudioSource::map_file(&path, &config.input.limits)?,
            JobInput::Source(source) => source,
        };
        match output {
            JobOutput::Memory => Ok(Computed {
                processed: process(&source, config)?,
                unsynced: None,
            }),
            JobOutput::File(path) => process_to_file(&source, config, &path),
        }
    }));
    outcome.unwrap_or_else(|panic| {
        Err(EngineError::Decoder(format!(
            "a job panicked: {}",
            crate::error::panic_message(panic.as_ref())
        )))
    })
}

/// Processes `source` into a temporary file beside `path`, written and flushed; the caller
/// syncs it and renames it into place ([`Computed::commit`]).
fn process_to_file(
    source: &AudioSource,
    config: &ProcessConfig,
    path: &std::path::Path,
) -> Result<Computed> {
    use std::io::Write as _;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| -> Result<(crate::process::ProcessReport, std::fs::File)> {
        let mut file = std::io::BufWriter::with_capacity(
            1 << 20,
            WriteBehind::new(std::fs::File::create(&temp)?),
        );
        let report = process_into(source, config, &mut file)?;
        file.flush()?;
        let file = file.into_inner().map_err(|e| e.into_error())?.file;
        Ok((report, file))
    })();
    match written {
        Ok((report, file)) => Ok(Computed {
            processed: Processed {
                audio: Vec::new(),
                report,
            },
            unsynced: Some(Unsynced {
                file,
                temp,
                path: path.to_path_buf(),
            }),
        }),
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            Err(e)
        }
    }
}

/// How much output is written before the kernel is asked to start writing it to the disk.
const WRITE_BEHIND_BYTES: u64 = 8 << 20;

/// A file writer that has the kernel start writing back each [`WRITE_BEHIND_BYTES`] as soon as
/// they are written (Linux `sync_file_range(SYNC_FILE_RANGE_WRITE)`, which does not wait), so
/// the `fsync` at the end waits for the last piece rather than the whole file (measured: 24–30
/// ms of a 57.6 MB output's `fsync` on this host's disk). A hint only: the `fsync` reports the
/// errors, and elsewhere nothing is asked early.
struct WriteBehind {
    file: std::fs::File,
    written: u64,
    started: u64,
}

impl WriteBehind {
    fn new(file: std::fs::File) -> Self {
        WriteBehind {
            file,
            written: 0,
            started: 0,
        }
    }
}

impl std::io::Write for WriteBehind {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.started >= WRITE_BEHIND_BYTES {
            start_writeback(&self.file, self.started, self.written - self.started);
            self.started = self.written;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

#[cfg(target_os = "linux")]
fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: a system call on a descriptor this writer owns; no memory is handed to the kernel.
    // Its result is ignored: it only starts work the final fsync would do anyway.
    let _ = unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    };
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &std::fs::File, _offset: u64, _len: u64) {}
