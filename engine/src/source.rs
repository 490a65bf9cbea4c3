//! Where input bytes come from: an owned `bytes::Bytes` (an upload, a test) or a memory map of a
//! file, both seen as one `Bytes` so that every later stage reads the same way and nothing copies
//! the file.

use crate::error::{EngineError, Result};
use crate::limits::Limits;
use bytes::Bytes;
use std::path::Path;
use std::sync::Arc;

/// A shared memory map as the owner of a `Bytes`.
struct SharedMap(Arc<memmap2::Mmap>);

impl AsRef<[u8]> for SharedMap {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Audio input: the bytes plus what is known about them from outside (a name, a format hint).
#[derive(Debug, Clone)]
pub struct AudioSource {
    bytes: Bytes,
    /// The map behind `bytes` when they come from a file: pages already read can be handed
    /// back ([`AudioSource::release`]), so a long file read front to back does not stay
    /// resident.
    map: Option<Arc<memmap2::Mmap>>,
    /// The file name (no directories), when the input came from a file or a named upload.
    name: Option<String>,
    /// A lower-case extension or MIME-derived hint such as `"wav"` or `"mp3"`.
    hint: Option<String>,
    /// The bytes' digests, when the caller computed them as the bytes arrived (boxed: a source
    /// travels through channels by value).
    digests: Option<Box<crate::checksum::Digests>>,
}

impl AudioSource {
    /// Input already in memory. No copy is made.
    pub fn from_bytes(bytes: impl Into<Bytes>) -> Self {
        AudioSource {
            bytes: bytes.into(),
            map: None,
            name: None,
            hint: None,
            digests: None,
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
        let (bytes, map) = if len == 0 {
            // mmap(2) refuses a zero length; an empty file is simply empty input.
            (Bytes::new(), None)
        } else {
            // SAFETY: the map is read-only and private to this process; the caller guarantees the
            // file is not truncated while mapped (see the doc above). Its length was read above
            // and the map covers exactly the file.
            let map = unsafe { memmap2::Mmap::map(&file)? };
            // No madvise(MADV_SEQUENTIAL): the chain reads front to back twice and a few windows
            // in between, releasing behind itself (`release`), and the kernel's own read-ahead
            // serves that; measured on a 60-minute call, the sequential hint kept ~2 MB more of
            // the file mapped at once, for no gain in time.
            let map = Arc::new(map);
            (Bytes::from_owner(SharedMap(map.clone())), Some(map))
        };
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let hint = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .filter(|e| !e.is_empty());
        Ok(AudioSource {
            bytes,
            map,
            name,
            hint,
            digests: None,
        })
    }

    /// Tells the kernel that `range` of the bytes will not be read again soon: for a mapped
    /// file, the pages it touches leave this process's memory (they stay in the page cache, and
    /// a later read maps them again), and so do those up to 64 KiB before it, which the kernel
    /// maps around a faulting page ("fault-around"). Nothing for bytes in memory. Reading front
    /// to back and releasing behind keeps a file of any length from counting in the resident
    /// set.
    pub fn release(&self, range: std::ops::Range<usize>) {
        #[cfg(unix)]
        if let Some(map) = &self.map {
            const PAGE: usize = 4096;
            const AROUND: usize = 64 << 10;
            let start = range.start.saturating_sub(AROUND) / PAGE * PAGE;
            // The kernel rounds the length up to whole pages: the last, partial page of the
            // file is released by asking up to the map's end.
            let end = (range.end.div_ceil(PAGE) * PAGE).min(map.len());
            if end > start {
                // SAFETY: the map is read-only, backed by a file callrec does not
                // change while mapped (see `map_file`): after MADV_DONTNEED a later read of these
                // pages maps the file's same contents again, and no byte seen through `bytes`
                // changes.
                let _ = unsafe {
                    map.unchecked_advise_range(
                        memmap2::UncheckedAdvice::DontNeed,
                        start,
                        end - start,
                    )
                };
            }
        }
        #[cfg(not(unix))]
        let _ = range;
    }

    /// Hands in the bytes' digests, computed by the caller as they arrived (an upload's spool),
    /// so the engine does not hash the input a second time: the report's input checksums are
    /// these, and expected checksums are checked against them. They are the caller's word;
    /// digests of another length than these bytes are not attached (the engine hashes them).
    pub fn with_digests(mut self, digests: crate::checksum::Digests) -> Self {
        if digests.bytes == self.len() {
            self.digests = Some(Box::new(digests));
        }
        self
    }

    /// The digests handed in with [`Self::with_digests`].
    pub fn digests(&self) -> Option<&crate::checksum::Digests> {
        self.digests.as_deref()
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

    /// Whether the bytes are a memory map of a file (read in place, released behind the reader)
    /// rather than held in memory.
    pub fn is_mapped(&self) -> bool {
        self.map.is_some()
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
