use crate::error::{Error, Result};
use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` so that a crash at any moment leaves either the old file or the
/// complete new one, never a torn file: write a temporary file beside it, fsync it, rename
/// it over the target, then fsync the folder so the rename itself is durable.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let err = |what: &str, e: std::io::Error| Error::File {
        path: path.display().to_string(),
        message: format!("{what}: {e}"),
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| Error::File {
        path: path.display().to_string(),
        message: "not a file path".into(),
    })?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file =
            std::fs::File::create(&tmp).map_err(|e| err("cannot create temporary file", e))?;
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
}
