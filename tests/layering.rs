//! The crate's layering, checked on its sources: each module imports only modules below it
//! (`types → metrics → worker → bus → reactor → runtime → ingress`, as `src/lib.rs` states),
//! and no two sibling files of a module import each other. A change that breaks either fails
//! here, naming the file and the import.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Bottom-up: a module may name only those before it.
const ORDER: [&str; 7] = [
    "types", "metrics", "worker", "bus", "reactor", "runtime", "ingress",
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The file's module path below `src/` (`reactor::mailbox`; `mod.rs` is its directory).
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file
        .strip_prefix(src)
        .expect("under src")
        .with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// Code without comments: a doc comment may mention any path.
fn code(text: &str) -> String {
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path the code names from the crate's root (`crate::a::b`) or relative to its own
/// module (`super::b`, `super::super::c`), as segments from the crate's root.
fn crate_paths(module: &[String], code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    for (start, word) in [("crate::", 0usize), ("super::", 1)] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start) {
            let at = from + i;
            from = at + start.len();
            // A whole word only (not `my_crate::`), and not the tail of `super::super::`.
            if at > 0
                && (bytes[at - 1].is_ascii_alphanumeric()
                    || bytes[at - 1] == b'_'
                    || bytes[at - 1] == b':')
            {
                continue;
            }
            let path: String = code[at..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let mut segments: Vec<String> = path
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            let mut base: Vec<String> = Vec::new();
            if word == 1 {
                let ups = segments.iter().take_while(|s| *s == "super").count();
                base = module[..module.len().saturating_sub(ups)].to_vec();
                segments.drain(..ups);
            } else {
                segments.remove(0);
            }
            base.extend(segments);
            out.push(base);
        }
    }
    out
}

#[test]
fn modules_import_only_modules_below_them_and_siblings_never_import_each_other() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let modules: BTreeMap<Vec<String>, String> = files
        .iter()
        .map(|f| {
            (
                module_path(&src, f),
                code(&fs::read_to_string(f).expect("read")),
            )
        })
        .collect();

    let mut upward = Vec::new();
    let mut edges: BTreeSet<(Vec<String>, Vec<String>)> = BTreeSet::new();
    for (module, code) in &modules {
        let Some(layer) = module
            .first()
            .and_then(|m| ORDER.iter().position(|o| o == m))
        else {
            continue; // lib.rs and anything outside the layers
        };
        for path in crate_paths(module, code) {
            if let Some(target) = path.first().and_then(|m| ORDER.iter().position(|o| o == m)) {
                if target > layer {
                    upward.push(format!(
                        "{} names crate::{}",
                        module.join("::"),
                        path.join("::")
                    ));
                }
            }
            // The longest prefix of the path that is a file of the crate is what it imports.
            if let Some(n) = (1..=path.len())
                .rev()
                .find(|&n| modules.contains_key(&path[..n]))
            {
                let target = path[..n].to_vec();
                if &target != module {
                    edges.insert((module.clone(), target));
                }
            }
        }
    }
    assert!(upward.is_empty(), "imports of a module above: {upward:#?}");

    let cycles: Vec<_> = edges
        .iter()
        .filter(|(a, b)| {
            a < b
                && a.len() == b.len()
                && a[..a.len() - 1] == b[..b.len() - 1]
                && edges.contains(&(b.clone(), a.clone()))
        })
        .map(|(a, b)| format!("{} <-> {}", a.join("::"), b.join("::")))
        .collect();
    assert!(
        cycles.is_empty(),
        "sibling files that import each other: {cycles:#?}"
    );
    // The check sees the crate: a file that moved out of reach would pass vacuously.
    assert!(
        modules.len() > 40 && edges.len() > 40,
        "{} files, {} imports",
        modules.len(),
        edges.len()
    );
}
