//! docs/options.md against `--help`: the page documents every option and `MESHWAIT_*` variable
//! meshwait takes, and names none that meshwait does not take, so a new, renamed or removed
//! option cannot leave the page behind.

// Tests state what they expect by unwrapping and panicking; the lints against both are for
// meshwait itself, which usually runs as PID 1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use std::collections::BTreeSet;

/// Variables the page names because they do not exist: its example of a misspelt variable, which
/// meshwait warns about.
const NAMED_AS_TYPOS: &[&str] = &["MESHWAIT_DRAIN_TIMOUT"];

/// One option or argument as `--help` lists it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Item {
    /// `--mesh`, or `<DIR>` for an argument.
    name: String,
    /// `-v`
    short: Option<String>,
    env: Option<String>,
}

/// One row of the page's table: its first two cells, and the subcommand a "(drain only)" mark in
/// the first one restricts it to.
struct Row {
    line: usize,
    option: String,
    env: String,
    only: Option<String>,
}

struct Help {
    /// `meshwait --help`: the global options and the run options.
    top: Vec<Item>,
    /// Each subcommand's own `--help`.
    subs: Vec<(String, Vec<Item>)>,
}

fn help_text(args: &[&str]) -> String {
    let out = meshwait().args(args).arg("--help").output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "meshwait {args:?} --help: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn help() -> Help {
    let top = help_text(&[]);
    let subs: Vec<(String, Vec<Item>)> = subcommands(&top)
        .into_iter()
        .map(|sub| {
            let items = items(&help_text(&[&sub]));
            (sub, items)
        })
        .collect();
    assert!(
        subs.iter().any(|(sub, _)| sub == "drain"),
        "no subcommands found in meshwait --help:\n{top}"
    );
    Help {
        top: items(&top),
        subs,
    }
}

/// The names under "Commands:", but `help`, which has no options of its own.
fn subcommands(top: &str) -> Vec<String> {
    top.lines()
        .skip_while(|line| *line != "Commands:")
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// The options and arguments of a help text, in both of clap's layouts: one line each (`-h`,
/// and `--help` where nothing has a long description), or a first line followed by indented
/// description, possible values and `[env: ...]` lines.
fn items(help: &str) -> Vec<Item> {
    let mut items: Vec<(String, String)> = Vec::new();
    for line in help.lines() {
        let indent = line.len() - line.trim_start().len();
        let rest = line.trim_start();
        // Options start at most 6 columns in ("  -v, --verbose", "      --mesh"); the
        // possible-values lists, which also start with '-', are deeper.
        if indent > 0 && indent <= 6 && (rest.starts_with('-') || rest.starts_with('<')) {
            items.push((rest.to_string(), String::new()));
        } else if indent == 0 && !rest.is_empty() {
            // A section heading ends the previous item.
            items.push((String::new(), String::new()));
        } else if let Some((_, text)) = items.last_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    items
        .into_iter()
        .filter(|(first, _)| !first.is_empty())
        .map(|(first, text)| {
            let (short, long) = match first.split_once(", ") {
                Some((short, long)) if short.len() == 2 => (Some(short.to_string()), long),
                _ => (None, first.as_str()),
            };
            let name = if long.starts_with('<') {
                long[..=long.find('>').unwrap()].to_string()
            } else {
                long.chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .collect()
            };
            let all = format!("{first}\n{text}");
            let env = all.split_once("[env: ").map(|(_, after)| {
                after
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect()
            });
            Item { name, short, env }
        })
        .collect()
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// Every `--long` flag written in `text`.
fn long_flags(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let chars: Vec<char> = text.chars().collect();
    for i in 0..chars.len() {
        let starts = chars[i] == '-'
            && chars.get(i + 1) == Some(&'-')
            && chars.get(i + 2).is_some_and(char::is_ascii_lowercase)
            && (i == 0 || !is_word(chars[i - 1]));
        if starts {
            let flag: String = chars[i..]
                .iter()
                .skip(2)
                .take_while(|c| c.is_ascii_alphanumeric() || **c == '-')
                .collect();
            found.insert(format!("--{flag}"));
        }
    }
    found
}

/// Every `-x` short flag written in `text`.
fn short_flags(text: &str) -> BTreeSet<String> {
    let chars: Vec<char> = text.chars().collect();
    (0..chars.len())
        .filter(|&i| {
            chars[i] == '-'
                && chars.get(i + 1).is_some_and(char::is_ascii_alphabetic)
                && (i == 0 || !is_word(chars[i - 1]))
                && chars.get(i + 2).is_none_or(|c| !is_word(*c))
        })
        .map(|i| format!("-{}", chars[i + 1]))
        .collect()
}

/// Every `MESHWAIT_*` variable named in `text` (not the `MESHWAIT_*` pattern itself).
fn variables(text: &str) -> BTreeSet<String> {
    text.match_indices("MESHWAIT_")
        .filter(|(at, _)| !text[..*at].ends_with(|c: char| is_word(c)))
        .map(|(at, _)| {
            text[at..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect::<String>()
        })
        .filter(|name| name.len() > "MESHWAIT_".len())
        .collect()
}

fn page() -> String {
    let path = [env!("CARGO_MANIFEST_DIR"), "docs", "options.md"]
        .iter()
        .collect::<std::path::PathBuf>();
    std::fs::read_to_string(&path).unwrap()
}

/// Table cells, split at the `|` that are not escaped as `\|`.
fn cells(line: &str) -> Vec<String> {
    line.trim()
        .trim_start_matches('|')
        .replace("\\|", "\0")
        .split('|')
        .map(|cell| cell.replace('\0', "|"))
        .collect()
}

/// The body rows of every table on `page` whose header starts with the cells `header`: each
/// row's line number (from 1) and its cells.
fn table_rows(page: &str, header: &[&str]) -> Vec<(usize, Vec<String>)> {
    let mut rows = Vec::new();
    let mut in_table = false;
    let mut previous_was_row = false;
    for (n, line) in page.lines().enumerate() {
        let is_row = line.starts_with('|');
        if is_row && !previous_was_row {
            let cells = cells(line);
            in_table = cells.len() >= header.len()
                && header
                    .iter()
                    .zip(&cells)
                    .all(|(want, cell)| cell.trim() == *want);
        } else if is_row && in_table && !line.starts_with("|---") {
            rows.push((n + 1, cells(line)));
        }
        previous_was_row = is_row;
    }
    rows
}

/// The rows of the options table, the one headed "Option | Environment" (the presets table also
/// starts with `--mesh`, as a column heading).
fn rows(page: &str) -> Vec<Row> {
    let rows: Vec<Row> = table_rows(page, &["Option", "Environment"])
        .into_iter()
        .map(|(line, cells)| {
            let option = cells[0].clone();
            let only = option.split_once(" only)").map(|(before, _)| {
                before
                    .rsplit_once('(')
                    .map_or(before, |(_, sub)| sub)
                    .to_string()
            });
            Row {
                line,
                option,
                env: cells.get(1).cloned().unwrap_or_default(),
                only,
            }
        })
        .collect();
    assert!(rows.len() > 10, "no options table in docs/options.md");
    rows
}

/// Whether `row`'s first cell names `item` (with its short flag), and its second cell `item`'s
/// variable.
fn row_documents(row: &Row, item: &Item) -> bool {
    let named = if item.name.starts_with('<') {
        row.option.contains(&format!("`{}`", item.name))
    } else {
        long_flags(&row.option).contains(&item.name)
    };
    let short = item
        .short
        .as_ref()
        .is_none_or(|short| short_flags(&row.option).contains(short));
    let env = item
        .env
        .as_ref()
        .is_none_or(|env| variables(&row.env).contains(env));
    named && short && env
}

fn is_help_or_version(item: &Item) -> bool {
    item.name == "--help" || item.name == "--version"
}

fn describe(item: &Item) -> String {
    let short = item
        .short
        .as_deref()
        .map(|s| format!("{s}, "))
        .unwrap_or_default();
    let env = item
        .env
        .as_deref()
        .map(|e| format!(" [{e}]"))
        .unwrap_or_default();
    format!("{short}{}{env}", item.name)
}

#[test]
fn the_options_page_documents_every_option_and_variable_of_help() {
    let help = help();
    let rows = rows(&page());
    let mut missing = Vec::new();
    // Global and run options: a row without a "(... only)" mark.
    for item in help.top.iter().filter(|item| !is_help_or_version(item)) {
        if !rows
            .iter()
            .any(|row| row.only.is_none() && row_documents(row, item))
        {
            missing.push(format!("meshwait --help: {}", describe(item)));
        }
    }
    // A subcommand's option that `meshwait --help` does not list with the same variable (drain's
    // --timeout is MESHWAIT_DRAIN_TIMEOUT, not MESHWAIT_TIMEOUT): a row marked "(drain only)".
    // An argument without a variable is the usage block's business.
    for (sub, items) in &help.subs {
        for item in items {
            let shared = help.top.contains(item);
            let arg_without_variable = item.name.starts_with('<') && item.env.is_none();
            if shared || arg_without_variable || is_help_or_version(item) {
                continue;
            }
            if !rows
                .iter()
                .any(|row| row.only.as_deref() == Some(sub.as_str()) && row_documents(row, item))
            {
                missing.push(format!(
                    "meshwait {sub} --help: {} (wants a row marked \"({sub} only)\")",
                    describe(item)
                ));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/options.md has no table row for:\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn the_options_page_names_only_options_and_variables_that_exist() {
    let help = help();
    let page = page();
    let every_item = || {
        help.top
            .iter()
            .chain(help.subs.iter().flat_map(|(_, items)| items))
    };
    let flags: BTreeSet<&str> = every_item().map(|item| item.name.as_str()).collect();
    let envs: BTreeSet<&str> = every_item()
        .filter_map(|item| item.env.as_deref())
        .collect();
    let mut unknown = Vec::new();

    for (n, line) in page.lines().enumerate() {
        for flag in long_flags(line) {
            if !flags.contains(flag.as_str()) {
                unknown.push(format!("line {}: {flag} is in no --help", n + 1));
            }
        }
        for var in variables(line) {
            if !envs.contains(var.as_str()) && !NAMED_AS_TYPOS.contains(&var.as_str()) {
                unknown.push(format!("line {}: {var} is in no --help", n + 1));
            }
        }
    }
    for typo in NAMED_AS_TYPOS {
        assert!(
            !envs.contains(typo),
            "{typo} exists now: drop it from NAMED_AS_TYPOS"
        );
    }

    // Each row's options belong where the row says: a marked row to its subcommand, an unmarked
    // one to `meshwait --help`, with the variable the row gives.
    for row in rows(&page) {
        let scope: &[Item] = match &row.only {
            None => &help.top,
            Some(sub) => match help.subs.iter().find(|(name, _)| name == sub) {
                Some((_, items)) => items,
                None => {
                    unknown.push(format!(
                        "line {}: ({sub} only): no such subcommand",
                        row.line
                    ));
                    continue;
                }
            },
        };
        let where_ = row
            .only
            .as_deref()
            .map_or(String::new(), |sub| format!(" {sub}"));
        for flag in long_flags(&row.option) {
            match scope.iter().find(|item| item.name == flag) {
                None => unknown.push(format!(
                    "line {}: {flag} is not in meshwait{where_} --help",
                    row.line
                )),
                Some(item) if !row_documents(&row, item) => unknown.push(format!(
                    "line {}: meshwait{where_} --help has {}",
                    row.line,
                    describe(item)
                )),
                Some(_) => {}
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "docs/options.md names what meshwait does not take:\n  {}",
        unknown.join("\n  ")
    );
}

/// The page's "which command takes which option" table lists, for each subcommand, exactly the
/// options its `--help` has (besides logging, help and version), so a subcommand that gains or
/// loses an option changes the table too.
#[test]
fn the_options_page_says_which_subcommand_takes_which_option() {
    const EVERYWHERE: &[&str] = &[
        "--log-format",
        "--log-level",
        "--verbose",
        "--quiet",
        "--help",
        "--version",
    ];
    let listed: Vec<(String, BTreeSet<String>)> = table_rows(&page(), &["Command"])
        .into_iter()
        .map(|(_, cells)| {
            let sub = cells[0].trim().trim_matches('`').to_string();
            let mut names = long_flags(&cells[1]);
            if cells[1].contains("`<DIR>`") {
                names.insert("<DIR>".to_string());
            }
            (sub, names)
        })
        .collect();
    let help = help();
    let mut checked = 0;
    for (sub, items) in &help.subs {
        if sub == "run" {
            continue;
        }
        let takes: BTreeSet<String> = items
            .iter()
            .map(|item| item.name.clone())
            .filter(|name| !EVERYWHERE.contains(&name.as_str()))
            .collect();
        let Some((_, names)) = listed.iter().find(|(name, _)| name == sub) else {
            panic!("docs/options.md: no row for `{sub}` in the table headed \"Command\"");
        };
        assert_eq!(
            names, &takes,
            "docs/options.md: the row for `{sub}` against `meshwait {sub} --help`"
        );
        checked += 1;
    }
    assert!(checked >= 5, "{checked} subcommands checked");
}
