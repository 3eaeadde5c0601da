//! The repository explains itself: every relative link in a Markdown file resolves to a
//! file or directory of the repository, and no file outside `docs/` points at design
//! notes that live outside it (the facts the code relies on are in `docs/`).

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

/// Files to read: the repository's own, not build output, vendored upstream sources,
/// fuzz corpora or git's.
fn own_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().to_string();
        if p.is_dir() {
            if matches!(name.as_str(), "target" | ".git" | "corpus" | "artifacts")
                || (dir.ends_with("vendor") && p.is_dir())
            {
                continue;
            }
            own_files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// The targets of Markdown links `[text](target)` in `text`.
fn link_targets(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(after[..end].trim().to_string());
            rest = &after[end..];
        }
    }
    out
}

#[test]
fn every_relative_link_in_markdown_resolves() {
    let root = root();
    let mut files = Vec::new();
    own_files(&root, &mut files);
    let mut broken = Vec::new();
    let mut checked = 0;
    for f in files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "md"))
    {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        for target in link_targets(&text) {
            if target.is_empty()
                || target.starts_with('#')
                || target.contains("://")
                || target.starts_with("mailto:")
            {
                continue;
            }
            let path = target.split('#').next().unwrap_or("");
            let resolved = f.parent().unwrap().join(path);
            checked += 1;
            if !resolved.exists() {
                broken.push(format!(
                    "{}: ({target}) does not resolve",
                    f.strip_prefix(&root).unwrap().display()
                ));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    assert!(
        checked > 20,
        "only {checked} relative links found: the walk is broken"
    );
}

#[test]
fn nothing_outside_docs_points_at_notes_outside_the_repository() {
    // Built from pieces so that this file does not match itself.
    let words: Vec<String> = [
        ["..", "/shared"],
        ["PROTOCOLS", ".md"],
        ["DESIGN", ".md"],
        ["HARDWARE", ".md"],
        ["STACK", ".md"],
    ]
    .iter()
    .map(|[a, b]| format!("{a}{b}"))
    .collect();
    let root = root();
    let mut files = Vec::new();
    own_files(&root, &mut files);
    let mut found = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&root).unwrap();
        if rel.starts_with("docs") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            if let Some(w) = words.iter().find(|w| line.contains(w.as_str())) {
                found.push(format!("{}:{}: {w}", rel.display(), n + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "references to notes outside the repository (carry the facts into docs/):\n{}",
        found.join("\n")
    );
}
