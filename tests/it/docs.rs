//! The README's client snippets are the tested examples, verbatim.

fn dedent(lines: &[&str]) -> Vec<String> {
    let indent = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    lines
        .iter()
        .map(|l| l.get(indent..).unwrap_or("").trim_end().to_owned())
        .collect()
}

#[test]
fn readme_snippets_are_the_examples() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let mut checked = 0;
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        let Some(rest) = line.strip_prefix("<!-- snippet: ") else {
            continue;
        };
        let path = rest.trim_end_matches(" -->").split('#').next().unwrap();
        assert!(
            lines.next().unwrap().starts_with("```"),
            "a code block follows the marker of {path}"
        );
        let block: Vec<&str> = lines
            .by_ref()
            .take_while(|l| !l.starts_with("```"))
            .collect();
        let block = dedent(&block);
        let source = std::fs::read_to_string(format!("{root}/{path}"))
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let source: Vec<&str> = source.lines().collect();
        let found = source.windows(block.len()).any(|w| dedent(w) == block);
        assert!(
            found,
            "the README snippet of {path} is not in that file verbatim:\n{}",
            block.join("\n")
        );
        checked += 1;
    }
    assert_eq!(checked, 4, "three Python snippets and one Node snippet");
}
