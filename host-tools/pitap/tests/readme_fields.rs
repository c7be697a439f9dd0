//! The README's list of fields is the field table's: a field added to the
//! table and not to the README (or the other way) fails here.

use std::collections::BTreeSet;

#[test]
fn the_readme_lists_every_field_and_no_other() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md");
    let start = readme.find("**Fields.**").expect("a Fields paragraph");
    let para = &readme[start..];
    let para = &para[..para.find("\n\n").unwrap_or(para.len())];
    // The backquoted runs of lower-case words are field names; paths and
    // options and other code in the paragraph have slashes, dots, dashes.
    let listed: BTreeSet<&str> = para
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| !s.contains(['/', '.', '-']))
        .flat_map(|s| s.split_whitespace())
        .collect();
    let table: BTreeSet<&str> = pitap::fields::Field::names().collect();
    assert_eq!(
        listed.difference(&table).collect::<Vec<_>>(),
        Vec::<&&str>::new(),
        "in the README, not in the table"
    );
    assert_eq!(
        table.difference(&listed).collect::<Vec<_>>(),
        Vec::<&&str>::new(),
        "in the table, not in the README"
    );
}
