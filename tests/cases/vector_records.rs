//! Reader for the record files in `tests/vectors` (see its README, which names the source of
//! every file): records separated by blank lines, `key = value` lines, `#` comment lines, lowercase hex byte strings.
//! Malformed test data is a test failure, not something to skip.

#![allow(dead_code)]

use std::path::PathBuf;

/// The vectors directory, inside the repository: a fresh clone needs nothing beside it.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

/// One record of a vectors file.
#[derive(Debug, Clone)]
pub struct Record {
    /// File name, for messages.
    pub file: String,
    /// Line of the record's first field.
    pub line: usize,
    fields: Vec<(String, String)>,
    /// Keys looked at through [`Record::get`], so a test can fail on fields it ignored.
    used: std::cell::RefCell<std::collections::BTreeSet<String>>,
}

impl Record {
    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.used.borrow_mut().insert(key.to_owned());
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key`; panics with the record's location when absent.
    pub fn req(&self, key: &str) -> &str {
        self.get(key)
            .unwrap_or_else(|| panic!("{}: record {:?} has no {key}", self.file, self.name()))
    }

    /// The record's `name` (or its location when it has none).
    pub fn name(&self) -> String {
        self.get("name")
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{}:{}", self.file, self.line))
    }

    /// A hex field decoded; panics on bad hex.
    pub fn hex(&self, key: &str) -> Vec<u8> {
        let v = self.req(key);
        hex::decode(v).unwrap_or_else(|e| {
            panic!("{}: {} field {key} is not hex: {e}", self.file, self.name())
        })
    }

    /// An optional hex field.
    pub fn opt_hex(&self, key: &str) -> Option<Vec<u8>> {
        self.get(key).map(|_| self.hex(key))
    }

    /// A decimal integer field.
    pub fn int(&self, key: &str) -> i64 {
        let v = self.req(key);
        v.parse()
            .unwrap_or_else(|e| panic!("{}: {} field {key} = {v:?}: {e}", self.file, self.name()))
    }

    /// A hex byte field such as `flags = 41`.
    pub fn hex_byte(&self, key: &str) -> u8 {
        let b = self.hex(key);
        assert_eq!(
            b.len(),
            1,
            "{}: {} {key} is not one byte",
            self.file,
            self.name()
        );
        b[0]
    }

    /// All fields, in file order.
    pub fn fields(&self) -> &[(String, String)] {
        &self.fields
    }

    /// Keys nobody looked at through [`Record::get`] (and the helpers built on it).
    pub fn unchecked(&self) -> Vec<String> {
        let used = self.used.borrow();
        self.fields
            .iter()
            .map(|(k, _)| k.clone())
            .filter(|k| !used.contains(k))
            .collect()
    }

    /// The `expect.*` fields, without the prefix.
    pub fn expects(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("expect.").map(|k| (k, v.as_str())))
    }
}

/// Parse record text.
pub fn parse(file: &str, text: &str) -> Vec<Record> {
    let mut out = Vec::new();
    let mut cur: Option<Record> = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            if let Some(r) = cur.take() {
                out.push(r);
            }
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{file}:{}: not a `key = value` line: {line:?}", i + 1));
        let (k, v) = (k.trim().to_owned(), v.trim().to_owned());
        assert!(!k.is_empty(), "{file}:{}: empty key", i + 1);
        let r = cur.get_or_insert_with(|| Record {
            file: file.to_owned(),
            line: i + 1,
            fields: Vec::new(),
            used: Default::default(),
        });
        assert!(
            r.fields.iter().all(|(x, _)| *x != k),
            "{file}:{}: duplicate key {k} in one record",
            i + 1
        );
        r.fields.push((k, v));
    }
    if let Some(r) = cur.take() {
        out.push(r);
    }
    out
}

/// Load and parse a file from [`dir`]. Fails when the file is missing: the data must be there.
pub fn load(file: &str) -> Vec<Record> {
    let path = dir().join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let records = parse(file, &text);
    assert!(!records.is_empty(), "{file} has no records");
    let mut names: Vec<String> = records.iter().map(Record::name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), records.len(), "{file}: duplicate record names");
    records
}

/// Every record of `files`, file by file, each loaded as [`load`] does.
pub fn load_all(files: &[&str]) -> Vec<Record> {
    files.iter().flat_map(|file| load(file)).collect()
}

/// The records of `files` whose `key` is `value` (every record must have `key`).
pub fn load_where(files: &[&str], key: &str, value: &str) -> Vec<Record> {
    load_all(files)
        .into_iter()
        .filter(|r| r.req(key) == value)
        .collect()
}

/// Find a record by `file#name` (the form of `derived_from`).
pub fn lookup(reference: &str) -> Record {
    let (file, name) = reference
        .split_once('#')
        .unwrap_or_else(|| panic!("bad record reference {reference:?}"));
    load(file)
        .into_iter()
        .find(|r| r.get("name") == Some(name))
        .unwrap_or_else(|| panic!("no record {name} in {file}"))
}

#[test]
fn parser_handles_comments_blank_lines_and_empty_values() {
    let text =
        "# header\n# more\n\nname = a\nx = 00ff\n# inside\nempty =\n\n\nname = b\ntext = a = b\n";
    let r = parse("t", text);
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].name(), "a");
    assert_eq!(r[0].hex("x"), vec![0, 255]);
    assert_eq!(r[0].get("empty"), Some(""));
    assert_eq!(r[1].get("text"), Some("a = b"));
    assert_eq!(r[1].line, 10);
}

#[test]
#[should_panic(expected = "duplicate key")]
fn parser_refuses_duplicate_keys() {
    parse("t", "name = a\nname = b\n");
}

#[test]
fn every_vectors_file_names_its_source_here_and_in_the_readme() {
    let readme = std::fs::read_to_string(dir().join("README.md")).expect("tests/vectors/README.md");
    let sources = readme
        .split_once("## Sources")
        .expect("the README has a Sources section")
        .1;
    let mut files: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".txt"))
        .collect();
    files.sort();
    assert!(files.len() >= 16, "{files:?}");
    for file in &files {
        let row = sources
            .lines()
            .find(|l| l.starts_with(&format!("| `{file}` |")))
            .unwrap_or_else(|| panic!("README's Sources table has no row for {file}"));
        let text = std::fs::read_to_string(dir().join(file)).unwrap();
        let header: Vec<&str> = text.lines().take_while(|l| l.starts_with('#')).collect();
        match header.iter().find_map(|l| l.strip_prefix("# source: ")) {
            Some(source) => {
                let repo = source.split_whitespace().next().unwrap();
                assert!(
                    row.contains(repo),
                    "{file}: README row does not name {repo}"
                );
            }
            None => assert!(
                header.first().is_some_and(|l| l.starts_with("# DERIVED"))
                    && row.contains("DERIVED"),
                "{file} names no source and is not marked DERIVED"
            ),
        }
    }
}
