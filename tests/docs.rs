//! Man pages and completions are generated from the CLI definition and committed; this
//! test fails when they drift. Regenerate with `cargo run -- generate-docs`.

use std::path::Path;

#[test]
fn generated_docs_are_up_to_date() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut stale = Vec::new();
    for (rel, bytes) in viber::cmd::docs::render() {
        let on_disk = std::fs::read(root.join(&rel)).unwrap_or_default();
        if on_disk != bytes {
            stale.push(rel.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "out of date: {stale:?}\nregenerate with: cargo run -- generate-docs"
    );
}
