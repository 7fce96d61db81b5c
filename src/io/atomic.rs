use crate::error::{Error, Result};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Numbers the temporary files of this process, so two writes never share one.
static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` so that a crash at any moment leaves either the old file or the
/// complete new one, never a torn file: write a temporary file beside it, fsync it, rename
/// it over the target, then fsync the folder so the rename itself is durable.
///
/// Each call writes its own temporary file (named with the process id and a per-process
/// counter, and created exclusively), so concurrent saves to the same path from several
/// threads or processes never write into one another's file: the target ends up holding one
/// complete payload, the last renamed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let err = |what: &str, e: std::io::Error| Error::io(path, what, e);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| Error::File {
        path: path.to_path_buf(),
        message: "not a file path".into(),
    })?;
    let (tmp, mut file) = loop {
        let tmp = dir.join(format!(
            ".{}.tmp-{}-{}",
            name.to_string_lossy(),
            std::process::id(),
            NEXT_TEMP.fetch_add(1, Ordering::Relaxed)
        ));
        // create_new: a leftover file of a crashed run with the same name is skipped, never
        // shared.
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(err("cannot create temporary file", e)),
        }
    };
    let result = (|| {
        file.write_all(bytes).map_err(|e| err("write failed", e))?;
        file.sync_all().map_err(|e| err("fsync failed", e))?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(|e| err("rename failed", e))?;
        // Make the rename durable; not every platform can open a folder, so this is best-effort.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("convnet-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let target = dir.join("ckpt.safetensors");
        write_atomic(&target, b"first").unwrap();
        write_atomic(&target, b"second").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        // A target in a folder that does not exist fails cleanly, naming the path.
        let bad = dir.join("no/such/dir/x");
        assert!(write_atomic(&bad, b"x")
            .unwrap_err()
            .to_string()
            .contains("no/such/dir"));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn many_threads_saving_to_one_path_all_succeed_and_leave_one_whole_file() {
        let dir = std::env::temp_dir().join(format!("convnet-atomic-race-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let target = dir.join("weights.safetensors");
        // Payloads of different lengths, each self-describing, so a torn or mixed file shows.
        let payload = |t: usize, i: usize| -> Vec<u8> {
            let tag = (t * 1000 + i) as u32;
            let mut v = tag.to_le_bytes().to_vec();
            v.extend(std::iter::repeat_n((tag % 251) as u8, 1000 + 97 * t + i));
            v
        };
        let failures: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|t| {
                    let target = &target;
                    s.spawn(move || {
                        (0..50)
                            .filter(|&i| write_atomic(target, &payload(t, i)).is_err())
                            .count()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(failures, 0, "every save must succeed");
        let got = std::fs::read(&target).unwrap();
        let tag = u32::from_le_bytes(got[..4].try_into().unwrap()) as usize;
        assert_eq!(
            got,
            payload(tag / 1000, tag % 1000),
            "the file is one whole payload"
        );
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temporary file is left: {names:?}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
