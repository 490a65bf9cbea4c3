//! Where input bytes come from: an owned `bytes::Bytes` (an upload, a test) or a memory map of a
//! file, both seen as one `Bytes` so that every later stage reads the same way and nothing copies
//! the file.

use crate::error::{EngineError, Result};
use crate::limits::Limits;
use bytes::Bytes;
use std::path::Path;

/// Audio input: the bytes plus what is known about them from outside (a name, a format hint).
#[derive(Debug, Clone)]
pub struct AudioSource {
    bytes: Bytes,
    /// The file name (no directories), when the input came from a file or a named upload.
    name: Option<String>,
    /// A lower-case extension or MIME-derived hint such as `"wav"` or `"mp3"`.
    hint: Option<String>,
}

impl AudioSource {
    /// Input already in memory. No copy is made.
    pub fn from_bytes(bytes: impl Into<Bytes>) -> Self {
        AudioSource {
            bytes: bytes.into(),
            name: None,
            hint: None,
        }
    }

    /// Maps a file into memory (read-only) after checking its size against `limits`.
    ///
    /// The file must not be truncated by another process while the source lives: callrec maps
    /// only its own spool files and files a user names on the command line.
    pub fn map_file(path: &Path, limits: &Limits) -> Result<Self> {
        let file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        limits.check_input_bytes(len)?;
        let bytes = if len == 0 {
            // mmap(2) refuses a zero length; an empty file is simply empty input.
            Bytes::new()
        } else {
            // SAFETY: the map is read-only and private to this process; the caller guarantees the
            // file is not truncated while mapped (see the doc above). Its length was read above
            // and the map covers exactly the file.
            let map = unsafe { memmap2::Mmap::map(&file)? };
            #[cfg(unix)]
            {
                // Decoding reads front to back once: tell the kernel so it reads ahead.
                let _ = map.advise(memmap2::Advice::Sequential);
            }
            Bytes::from_owner(map)
        };
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let hint = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .filter(|e| !e.is_empty());
        Ok(AudioSource { bytes, name, hint })
    }

    /// Sets the file name (used for the format hint and reported as `file`).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        if self.hint.is_none() {
            self.hint = name
                .rsplit_once('.')
                .map(|(_, ext)| ext.to_ascii_lowercase())
                .filter(|e| !e.is_empty() && e.len() <= 8);
        }
        self.name = Some(name);
        self
    }

    /// Sets a format hint: an extension (`"mp3"`) or a MIME type (`"audio/wav"`).
    pub fn with_hint(mut self, hint: &str) -> Self {
        let hint = hint.trim().to_ascii_lowercase();
        let ext = match hint.as_str() {
            "audio/wav" | "audio/wave" | "audio/x-wav" | "audio/vnd.wave" => "wav",
            "audio/mpeg" | "audio/mp3" => "mp3",
            "audio/flac" | "audio/x-flac" => "flac",
            "audio/ogg" | "application/ogg" => "ogg",
            "audio/mp4" | "audio/m4a" | "audio/x-m4a" | "audio/aac" => "m4a",
            other => other,
        };
        self.hint = Some(ext.to_string());
        self
    }

    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    pub(crate) fn require_non_empty(&self) -> Result<()> {
        if self.bytes.is_empty() {
            return Err(EngineError::Empty);
        }
        Ok(())
    }
}
