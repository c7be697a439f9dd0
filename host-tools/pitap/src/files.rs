//! `pitap files`: the files that crossed the taps' flows (HTTP bodies), by
//! hash, URL or type, newest first, with the flow each one names. The
//! flows themselves are a query away: `pitap query 'file_sha256:…'`.

use std::io::Write;
use std::path::Path;

use pitap_wire::format::file_text_line;

use crate::store::{FileFilter, Store};

/// Lists the matching files; returns how many.
pub fn run(
    store: &Path,
    filter: &FileFilter,
    json: bool,
    out: &mut dyn Write,
) -> Result<usize, String> {
    if let Some(h) = &filter.hash {
        crate::store::files::hash_column(h)?;
    }
    let store = Store::open_existing(store)?;
    let files = store.files(filter)?;
    for f in &files {
        let line = if json {
            f.json().to_string()
        } else {
            file_text_line(&f.file, &f.tap)
        };
        writeln!(out, "{line}").map_err(|e| format!("writing files: {e}"))?;
    }
    if files.is_empty() && !json {
        eprintln!("pitap: no file in the store matches (in the window; --since 0 for all)");
    }
    Ok(files.len())
}
