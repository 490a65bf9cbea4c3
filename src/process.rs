//! `callrec process`: run the engine's chain over files, writing audio and a JSON report each.

use anyhow::{Context, bail};
use callrec_engine::dsp::gain::{DEFAULT_CEILING_DBTP, DEFAULT_MAX_GAIN_DB, LoudnessTarget};
use callrec_engine::{
    Engine, EngineConfig, EngineError, JobInput, JobOutput, OutputFormat, ProcessConfig,
    ProcessReport, Processed,
};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args)]
#[command(
    after_help = "Each input IN yields OUT_DIR/IN.<wav|flac> and OUT_DIR/IN.json (the report: \
input facts, loudness, true peak, P.56 speech level, silence map, spectrum, the decisions taken, \
output checksums). Directories are walked for audio files and mirrored under OUT_DIR.\n\n\
Exit status: 0 when every file was processed, 1 when any failed (the others are still written), \
2 for usage errors."
)]
pub struct ProcessArgs {
    /// Files or directories to process.
    #[arg(required = true, value_name = "IN_FILE_OR_DIR")]
    inputs: Vec<PathBuf>,
    /// Where to write the processed audio and reports (created if missing).
    #[arg(short, long, value_name = "OUT_DIR")]
    out: PathBuf,
    /// Normalize to this level: LUFS (integrated loudness) or dBov (P.56 active speech level),
    /// or "none".
    #[arg(
        long,
        default_value = "-26dBov",
        value_name = "LEVEL",
        allow_hyphen_values = true
    )]
    target: String,
    /// True-peak ceiling of the output, dBTP.
    #[arg(long, default_value_t = DEFAULT_CEILING_DBTP, allow_negative_numbers = true, value_name = "DBTP")]
    ceiling: f64,
    /// Largest gain applied, dB.
    #[arg(long, default_value_t = DEFAULT_MAX_GAIN_DB, value_name = "DB")]
    max_gain: f64,
    /// Remove leading and trailing silence (250 ms of it is kept).
    #[arg(long)]
    trim: bool,
    /// Resample the output to this rate, Hz (e.g. 16000 for speech recognition).
    #[arg(long, value_name = "HZ")]
    resample: Option<u32>,
    /// Output format: wav (PCM16), ulaw, alaw or flac.
    #[arg(long, default_value = "wav", value_name = "FORMAT")]
    format: String,
    /// Mix stereo down to mono.
    #[arg(long)]
    downmix: bool,
    /// Print each report as one JSON line on stdout instead of a summary line per file.
    #[arg(long)]
    json: bool,
    /// Worker threads (default: one per core).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
}

fn config(args: &ProcessArgs) -> anyhow::Result<ProcessConfig> {
    let target = match args.target.trim().to_ascii_lowercase().as_str() {
        "none" | "off" => None,
        _ => Some(
            args.target
                .parse::<LoudnessTarget>()
                .map_err(anyhow::Error::msg)
                .context("--target")?,
        ),
    };
    if !(-20.0..=0.0).contains(&args.ceiling) {
        bail!(
            "--ceiling must be between -20 and 0 dBTP, got {}",
            args.ceiling
        );
    }
    if !(0.0..=60.0).contains(&args.max_gain) {
        bail!(
            "--max-gain must be between 0 and 60 dB, got {}",
            args.max_gain
        );
    }
    if let Some(rate) = args.resample
        && !(4000..=192_000).contains(&rate)
    {
        bail!("--resample must be between 4000 and 192000 Hz, got {rate}");
    }
    let format = args
        .format
        .parse::<OutputFormat>()
        .map_err(anyhow::Error::msg)
        .context("--format")?;
    Ok(ProcessConfig {
        target,
        ceiling_dbtp: args.ceiling,
        max_gain_db: args.max_gain,
        trim: args.trim,
        resample_hz: args.resample,
        downmix: args.downmix,
        format,
        ..ProcessConfig::default()
    })
}

/// One input's job: where it is read and where its results go.
struct Job {
    input: PathBuf,
    audio_out: PathBuf,
    report_out: PathBuf,
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, then a rename.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&temp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&temp);
    })
}

#[derive(Debug)]
enum JobError {
    Engine(EngineError),
    Write(std::io::Error),
}

impl From<EngineError> for JobError {
    fn from(err: EngineError) -> Self {
        JobError::Engine(err)
    }
}

impl std::fmt::Display for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JobError::Engine(err) => write!(f, "{}: {err}", err.kind()),
            JobError::Write(err) => write!(f, "writing the output: {err}"),
        }
    }
}

/// Writes a processed job's audio and report (on the worker that processed it).
fn finish_job(
    job: &Job,
    outcome: Result<Processed, EngineError>,
) -> Result<ProcessReport, JobError> {
    // The audio is already written (the engine streams it to `audio_out`).
    let processed = outcome?;
    let report = serde_json::to_vec_pretty(&processed.report).expect("reports serialize");
    write_atomically(&job.report_out, &report).map_err(JobError::Write)?;
    Ok(processed.report)
}

/// The line printed for a processed file: its report as JSON with `--json`, else a summary.
fn summary_line(job: &Job, report: &ProcessReport, json: bool) -> String {
    if json {
        return serde_json::to_string(report).expect("reports serialize");
    }
    let d = &report.decisions;
    let level = report
        .analysis
        .speech
        .level_dbov
        .map_or("no speech".into(), |l| format!("{l:.1} dBov"));
    format!(
        "{} -> {}  {}  gain {:+.1} dB{}  trim {:.2}/{:.2} s  {}",
        job.input.display(),
        job.audio_out.display(),
        level,
        d.gain.gain_db,
        d.gain
            .limited_by
            .map_or(String::new(), |l| format!(" (limited by {l:?})")),
        d.trim_start_ms / 1000.0,
        d.trim_end_ms / 1000.0,
        &report.output.sha256[..12],
    )
}

pub fn run(args: ProcessArgs) -> anyhow::Result<ExitCode> {
    let config = config(&args)?;
    let files = crate::files::collect(&args.inputs)?;
    let extension = config.format.extension();
    // a/b.mp3 → OUT/a/b.wav; where two inputs would meet (b.mp3 and b.m4a), both keep their
    // full name instead (b.mp3.wav, b.m4a.wav).
    let base = |relative: &Path| relative.with_extension("");
    let mut seen: HashMap<PathBuf, usize> = HashMap::new();
    for file in &files {
        *seen.entry(base(&file.relative)).or_default() += 1;
    }
    let mut jobs = Vec::with_capacity(files.len());
    let mut claimed: HashMap<PathBuf, PathBuf> = HashMap::new();
    for file in files {
        let stem = if seen[&base(&file.relative)] > 1 {
            file.relative.clone()
        } else {
            base(&file.relative)
        };
        let with = |ext: &str| {
            let mut name = stem.clone().into_os_string();
            name.push(".");
            name.push(ext);
            args.out.join(name)
        };
        let (audio_out, report_out) = (with(extension), with("json"));
        if let Some(other) = claimed.insert(audio_out.clone(), file.path.clone()) {
            bail!(
                "{} and {} would both be written to {}: process them into separate output folders",
                other.display(),
                file.path.display(),
                audio_out.display()
            );
        }
        if let (Ok(a), Ok(b)) = (audio_out.canonicalize(), file.path.canonicalize())
            && a == b
        {
            bail!(
                "{} would overwrite its own input: choose another --out",
                file.path.display()
            );
        }
        jobs.push(Job {
            input: file.path,
            audio_out,
            report_out,
        });
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;

    let progress = ProgressBar::new(jobs.len() as u64);
    progress.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} files ({per_sec}, eta {eta})",
        )
        .expect("a valid template"),
    );
    if args.threads == Some(0) {
        bail!("--threads must be at least 1");
    }
    let engine = Engine::new(EngineConfig {
        threads: args.threads.unwrap_or(0),
        ..EngineConfig::default()
    })
    .context("starting the engine")?;
    // Results are printed as they complete and dropped: memory does not grow with the batch.
    let inputs: Vec<(usize, JobInput)> = jobs
        .iter()
        .enumerate()
        .map(|(i, job)| (i, JobInput::File(job.input.clone())))
        .collect();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut failed = 0;
    let mut write_error: Option<std::io::Error> = None;
    engine.process_batch_to(
        inputs,
        &config,
        |&i| JobOutput::File(jobs[i].audio_out.clone()),
        |&i, outcome| {
            // Reduce the report to what is printed before it leaves the worker.
            let result = finish_job(&jobs[i], outcome)
                .map(|report| summary_line(&jobs[i], &report, args.json));
            let ok = result.is_ok();
            (result, ok)
        },
        |i, result| {
            progress.inc(1);
            let printed = progress.suspend(|| match result {
                Ok(line) => writeln!(out, "{line}").and_then(|()| out.flush()),
                Err(err) => {
                    failed += 1;
                    writeln!(std::io::stderr(), "{}: {err}", jobs[i].input.display())
                }
            });
            if let Err(err) = printed {
                write_error.get_or_insert(err);
            }
        },
    );
    progress.finish_and_clear();
    if let Some(err) = write_error {
        return Err(err).context("writing to stdout");
    }
    if !args.json {
        writeln!(
            out,
            "{} files: {} processed, {} failed",
            jobs.len(),
            jobs.len() - failed,
            failed
        )?;
    }
    out.flush()?;
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
