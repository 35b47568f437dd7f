//! Architecture invariant: only `src/env/` touches the wall clock, threads,
//! files or OS randomness. Anything else breaks determinism in the simulator or
//! escapes the disk fault model. A line may opt out with a trailing
//! `// env-ok: <reason>`.

use std::path::{Path, PathBuf};

const FORBIDDEN: &[&str] = &[
    "Instant::now",
    "SystemTime::now",
    "std::thread::spawn",
    "thread::spawn(",
    "std::fs",
    "tokio::fs",
    "getrandom",
    "OsRng",
    "thread_rng",
    "rand::random",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn violations(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(root, &mut files);
    files.sort();
    let env_dir = root.join("env");
    let mut found = Vec::new();
    for file in files {
        if file.starts_with(&env_dir) {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read source");
        for (i, line) in text.lines().enumerate() {
            if line.contains("// env-ok") {
                continue;
            }
            // Only code counts, not what a comment says about it.
            let code = line.split("//").next().unwrap_or("");
            for pat in FORBIDDEN {
                if code.contains(pat) {
                    found.push(format!("{}:{}: {}", file.display(), i + 1, line.trim()));
                }
            }
        }
    }
    found
}

#[test]
fn only_env_touches_clock_threads_files_and_entropy() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = violations(&root);
    assert!(
        found.is_empty(),
        "these lines bypass src/env/:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_lint_catches_a_violation() {
    let dir = std::env::temp_dir().join(format!("weir-seam-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("env")).unwrap();
    std::fs::create_dir_all(dir.join("log")).unwrap();
    std::fs::write(
        dir.join("env/ok.rs"),
        "let t = std::time::Instant::now();\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("log/bad.rs"),
        "let t = std::time::Instant::now();\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("log/fine.rs"),
        "let t = now(); // Instant::now is banned\n",
    )
    .unwrap();
    let found = violations(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("log/bad.rs:1"));
}
