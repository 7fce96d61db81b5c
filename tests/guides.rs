//! The English and Korean guides (docs/GUIDE.md, docs/GUIDE.ko.md) show the same code: their
//! Rust blocks must be identical and in the same order, each followed by the output it prints.
//! (The blocks themselves run as doc tests through `convnet::guide` and `convnet::guide_ko`.)

use std::path::Path;

/// Every fenced block of `text` as `(info string, body)`.
fn fenced_blocks(text: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some(info) = line.strip_prefix("```") {
            let body: Vec<&str> = lines
                .by_ref()
                .take_while(|l| !l.starts_with("```"))
                .collect();
            blocks.push((info.to_string(), body.join("\n")));
        }
    }
    blocks
}

fn read(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn both_guides_show_the_same_code_and_outputs() {
    let en = fenced_blocks(&read("GUIDE.md"));
    let ko = fenced_blocks(&read("GUIDE.ko.md"));
    let code = |blocks: &[(String, String)]| -> Vec<(String, String)> {
        blocks
            .iter()
            .filter(|(info, _)| info == "rust" || info == "text")
            .cloned()
            .collect()
    };
    let (en_code, ko_code) = (code(&en), code(&ko));
    assert!(en_code.iter().filter(|(i, _)| i == "rust").count() >= 16);
    assert_eq!(
        en_code.len(),
        ko_code.len(),
        "the guides have different numbers of blocks"
    );
    for (i, (a, b)) in en_code.iter().zip(&ko_code).enumerate() {
        assert_eq!(a, b, "block {i} differs between GUIDE.md and GUIDE.ko.md");
    }
    // Every Rust block is followed by the text block of its output.
    for pair in en_code.windows(2) {
        if pair[0].0 == "rust" {
            assert_eq!(
                pair[1].0, "text",
                "a Rust block without its output:\n{}",
                pair[0].1
            );
        }
    }
    // No block is hidden from the doc tests: only rust, text and sh fences are used.
    for (info, body) in en.iter().chain(&ko) {
        assert!(
            ["rust", "text", "sh"].contains(&info.as_str()),
            "fence `{info}`:\n{body}"
        );
    }
}
