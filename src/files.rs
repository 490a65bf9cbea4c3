//! Turning command-line paths into the files to work on.

use anyhow::Context;
use std::path::{Path, PathBuf};

/// Extensions picked up when a directory is walked (files named explicitly are always read).
const AUDIO_EXTENSIONS: &[&str] = &[
    "wav", "wave", "rf64", "mp3", "flac", "ogg", "oga", "opus", "m4a", "mp4", "aac", "caf", "aif",
    "aiff", "mka",
];

/// One input file and its path relative to the directory it was found in (its file name when
/// it was named directly).
pub struct InputFile {
    pub path: PathBuf,
    pub relative: PathBuf,
}

fn is_audio(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| AUDIO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Expands directories (recursively, sorted, audio extensions only); files are kept as given,
/// in order. A missing file is kept too, so it is reported as that file's error.
pub fn collect(paths: &[PathBuf]) -> anyhow::Result<Vec<InputFile>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let before = files.len();
            for entry in walkdir::WalkDir::new(path).sort_by_file_name() {
                let entry = entry.with_context(|| format!("walking {}", path.display()))?;
                if entry.file_type().is_file() && is_audio(entry.path()) {
                    let relative = entry
                        .path()
                        .strip_prefix(path)
                        .unwrap_or(entry.path())
                        .to_path_buf();
                    files.push(InputFile {
                        path: entry.into_path(),
                        relative,
                    });
                }
            }
            if files.len() == before {
                eprintln!("warning: no audio files under {}", path.display());
            }
        } else {
            let relative = path
                .file_name()
                .map(PathBuf::from)
                .unwrap_or_else(|| path.clone());
            files.push(InputFile {
                path: path.clone(),
                relative,
            });
        }
    }
    Ok(files)
}

/// A rayon pool of `threads` workers (default: one per core).
pub fn pool(threads: Option<usize>) -> anyhow::Result<rayon::ThreadPool> {
    let mut builder = rayon::ThreadPoolBuilder::new();
    if let Some(threads) = threads {
        anyhow::ensure!(threads > 0, "--threads must be at least 1");
        builder = builder.num_threads(threads);
    }
    builder.build().context("starting the worker pool")
}
