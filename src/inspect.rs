//! `callrec inspect`: verify files and print what the engine learns about each.

use callrec_engine::{
    AudioSource, ChecksumAlgorithm, EngineError, ExpectedChecksums, InspectOptions, Report,
    inspect::DEFAULT_DURATION_TOLERANCE_MS,
};
use clap::Args;
use rayon::prelude::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args)]
#[command(
    after_help = "Exit status: 0 when every file is valid, 1 when any is not, 2 for usage errors.\n\
Directories are walked recursively for audio files (by extension) and inspected in parallel."
)]
pub struct InspectArgs {
    /// Files or directories to inspect.
    #[arg(required = true, value_name = "FILE_OR_DIR")]
    paths: Vec<PathBuf>,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
    /// Expected SHA-256 of the file (hex or base64).
    #[arg(long, value_name = "HEX|B64")]
    expect_sha256: Option<String>,
    /// Expected CRC32C of the file (8 hex digits, or base64 as S3 writes it).
    #[arg(long, value_name = "HEX|B64")]
    expect_crc32c: Option<String>,
    /// Expected MD5 of the file (hex, or base64 as in Content-MD5).
    #[arg(long, value_name = "HEX|B64")]
    expect_md5: Option<String>,
    /// Also compute MD5 (hex and Content-MD5 base64); implied by --expect-md5.
    #[arg(long)]
    md5: bool,
    /// Expected duration of the audio in ms (e.g. from the CDR).
    #[arg(long, value_name = "MS")]
    expect_duration_ms: Option<u64>,
    /// How far the duration may be from --expect-duration-ms, in ms.
    #[arg(long, value_name = "MS", default_value_t = DEFAULT_DURATION_TOLERANCE_MS)]
    duration_tolerance_ms: u64,
    /// Worker threads (default: one per core).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
}

/// The outcome for one path, in the order the paths were given.
struct Outcome {
    path: PathBuf,
    result: Result<Report, EngineError>,
}

pub fn run(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let mut expected = ExpectedChecksums::new();
    for (algorithm, value) in [
        (ChecksumAlgorithm::Sha256, &args.expect_sha256),
        (ChecksumAlgorithm::Crc32c, &args.expect_crc32c),
        (ChecksumAlgorithm::Md5, &args.expect_md5),
    ] {
        if let Some(value) = value {
            expected = expected
                .expect(algorithm, value)
                .map_err(anyhow::Error::new)?;
        }
    }
    let mut options = InspectOptions::new();
    options.expected_checksums = expected;
    options.expected_duration_ms = args.expect_duration_ms;
    options.duration_tolerance_ms = args.duration_tolerance_ms;
    options.compute_md5 = args.md5;

    let files = crate::files::collect(&args.paths)?;
    let pool = crate::files::pool(args.threads)?;
    let outcomes: Vec<Outcome> = pool.install(|| {
        files
            .par_iter()
            .map(|file| Outcome {
                path: file.path.clone(),
                result: inspect_path(&file.path, &options),
            })
            .collect()
    });

    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if args.json {
        for outcome in &outcomes {
            let line = match &outcome.result {
                Ok(report) => {
                    // OCP's recording names carry the call's facts: reported beside the engine's
                    // report (the engine knows nothing of OCP).
                    let ocp = outcome
                        .path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .and_then(callrec_ingest::ocp::name::parse);
                    serde_json::json!({"path": outcome.path, "ok": true, "ocp": ocp, "report": report})
                }
                Err(err) => serde_json::json!({
                    "path": outcome.path,
                    "ok": false,
                    "error": {"kind": err.kind(), "message": err.to_string()},
                }),
            };
            writeln!(out, "{line}")?;
        }
    } else {
        write_table(&mut out, &outcomes)?;
    }
    out.flush()?;
    let invalid = outcomes.iter().filter(|o| o.result.is_err()).count();
    Ok(if invalid == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn inspect_path(path: &Path, options: &InspectOptions) -> Result<Report, EngineError> {
    let source = AudioSource::map_file(path, &options.limits)?;
    callrec_engine::inspect(&source, options)
}

fn fmt_db(value: Option<f64>) -> String {
    value.map_or_else(|| "-inf".to_string(), |v| format!("{v:.1}"))
}

fn write_table(out: &mut impl Write, outcomes: &[Outcome]) -> std::io::Result<()> {
    let rows: Vec<(String, Vec<String>)> = outcomes
        .iter()
        .map(|o| {
            let path = o.path.display().to_string();
            let cells = match &o.result {
                Ok(r) => {
                    let peak = r.levels.iter().map(|l| l.peak_dbfs).fold(
                        None,
                        |m: Option<f64>, p| match (m, p) {
                            (Some(a), Some(b)) => Some(a.max(b)),
                            (a, b) => a.or(b),
                        },
                    );
                    let rms: Vec<String> = r.levels.iter().map(|l| fmt_db(l.rms_dbfs)).collect();
                    vec![
                        "ok".into(),
                        format!("{}/{}", r.container, r.codec),
                        format!("{} Hz", r.sample_rate),
                        format!("{} ch", r.channels),
                        format!("{:.3} s", r.duration_ms / 1000.0),
                        format!("peak {} dBFS", fmt_db(peak)),
                        format!("rms {} dBFS", rms.join("/")),
                        format!("sha256 {}…", &r.checksums.sha256[..12]),
                    ]
                }
                Err(e) => vec!["INVALID".into(), format!("{}: {e}", e.kind())],
            };
            (path, cells)
        })
        .collect();
    let path_width = rows
        .iter()
        .map(|(p, _)| p.chars().count())
        .max()
        .unwrap_or(0);
    let mut widths = [0usize; 8];
    for (_, cells) in rows.iter().filter(|(_, c)| c.len() == 8) {
        for (w, c) in widths.iter_mut().zip(cells) {
            *w = (*w).max(c.chars().count());
        }
    }
    for (path, cells) in &rows {
        write!(out, "{path:<path_width$}")?;
        if cells.len() == 8 {
            for (cell, w) in cells.iter().zip(widths) {
                write!(out, "  {cell:<w$}")?;
            }
        } else {
            for cell in cells {
                write!(out, "  {cell}")?;
            }
        }
        writeln!(out)?;
    }
    let invalid = outcomes.iter().filter(|o| o.result.is_err()).count();
    writeln!(
        out,
        "{} files: {} valid, {} invalid",
        outcomes.len(),
        outcomes.len() - invalid,
        invalid
    )
}
