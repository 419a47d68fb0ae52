//! The direction of the layers, checked on the source: arrows point down only.
//!
//! Every `.rs` file under `src/` is read with its comments and literals blanked out, and every
//! path that starts at `crate::`, `super::` or `self::` — in `use` lines, grouped or not, and
//! inline — is resolved to the module it names (inline `mod … { }` blocks included). Then:
//! - `domain` names nothing above it: not `app` (nor the `App` re-exports at the crate root),
//!   `graphql`, `http`, `cli`, `headless` or `config` (it reads its own `Settings`), and no axum
//!   or async-graphql type;
//! - infrastructure (`db`, `net`, `crypto`, `mcp`, `events`, `supervisor`, `metrics`) names
//!   neither the domain nor anything above it;
//! - `graphql` and `http` reach data through the domain: they may name row types
//!   (`db::models`, `db::types`) but no `db` function, never import `db` itself or its
//!   transaction macros, and never open a connection (`.db.conn(`).
//!
//! A failure names each file, line and path.

use std::path::{Path, PathBuf};

/// Top-level items above the domain, with the crate-root re-exports of `app`.
const ABOVE_DOMAIN: &[&str] = &[
    "app",
    "graphql",
    "http",
    "cli",
    "headless",
    "config",
    "App",
    "AppHandle",
];
/// Infrastructure modules: below the domain.
const INFRASTRUCTURE: &[&str] = &[
    "db",
    "net",
    "crypto",
    "mcp",
    "events",
    "supervisor",
    "metrics",
];
/// The edge: thin layers that call the domain.
const EDGE: &[&str] = &["graphql", "http"];
/// What the edge may name of `db`: row and column types.
const DB_TYPES: &[&str] = &["models", "types"];
/// The crate-root macros that run SQL.
const SQL_MACROS: &[&str] = &["transaction", "with_conn"];
/// Web frameworks the domain never sees.
const WEB_CRATES: &[&str] = &["axum", "async_graphql", "async_graphql_axum"];

#[test]
fn layers_depend_only_downwards() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    collect_sources(&root.join("src"), &mut files);
    assert!(files.len() > 50, "the sources were not found");
    let mut found = Vec::new();
    for file in files {
        let relative = file
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let source = std::fs::read_to_string(&file).unwrap();
        found.extend(violations(&relative, &source));
    }
    assert!(
        found.is_empty(),
        "layers depend upwards:\n{}",
        found.join("\n")
    );
}

#[test]
fn grouped_nested_and_inline_paths_of_the_domain_are_seen() {
    let found = violations(
        "src/domain/servers.rs",
        "use crate::{db, app::App};\nuse crate::domain::{\n    access,\n    super::x,\n};\n\
         fn f() { let _ = crate::graphql::sdl(); }\nuse crate::AppHandle;\nuse crate::config::Config;\n\
         use axum::Router;\n",
    );
    assert_eq!(
        found,
        [
            "src/domain/servers.rs:1: `crate::app::App` (the domain must not depend on layers above it)",
            "src/domain/servers.rs:6: `crate::graphql::sdl` (the domain must not depend on layers above it)",
            "src/domain/servers.rs:7: `crate::AppHandle` (the domain must not depend on layers above it)",
            "src/domain/servers.rs:8: `crate::config::Config` (the domain must not depend on layers above it)",
            "src/domain/servers.rs:9: `axum::…` (the domain never sees web framework types)",
        ]
    );
}

#[test]
fn relative_paths_resolve_from_the_file_and_its_inline_modules() {
    // From src/domain/oauth/flow.rs, three `super`s reach the crate root.
    let found = violations(
        "src/domain/oauth/flow.rs",
        "use super::super::super::http::router;",
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("`crate::http::router`"), "{found:?}");
    // Inside an inline module, `super` is the file's module: `crate::domain::app` is not the
    // app.
    let found = violations(
        "src/domain/servers.rs",
        "mod tests {\n    use super::super::app;\n}\nuse super::super::app;\n",
    );
    assert_eq!(
        found,
        ["src/domain/servers.rs:4: `crate::app` (the domain must not depend on layers above it)"]
    );
    // `self` and `super` in a module file.
    let found = violations(
        "src/mcp/mod.rs",
        "use self::pool::SessionPool;\nuse super::domain;",
    );
    assert_eq!(
        found,
        [
            "src/mcp/mod.rs:2: `crate::domain` (infrastructure must not depend on the domain or above)"
        ]
    );
}

#[test]
fn comments_and_literals_are_not_paths() {
    let source = "// use crate::app::App;\n/* crate::http /* nested */ crate::cli */\n\
                  const A: &str = \"crate::app\";\nconst B: &str = r#\"crate::\"graphql\"#;\n\
                  const C: char = '\"';\nfn f<'a>(x: &'a str) -> &'a str { x }\nconst D: char = '\\'';\n";
    assert_eq!(
        violations("src/domain/status.rs", source),
        Vec::<String>::new()
    );
    // …but code after them still is.
    let source = format!("{source}use crate::headless;\n");
    assert_eq!(
        violations("src/domain/status.rs", &source),
        [
            "src/domain/status.rs:8: `crate::headless` (the domain must not depend on layers above it)"
        ]
    );
}

#[test]
fn infrastructure_and_the_edge_are_held_to_their_rules() {
    assert_eq!(
        violations(
            "src/events.rs",
            "fn f() { crate::domain::status::record(); }\nuse crate::App;"
        ),
        [
            "src/events.rs:1: `crate::domain::status::record` (infrastructure must not depend on the domain or above)",
            "src/events.rs:2: `crate::App` (infrastructure must not depend on the domain or above)",
        ]
    );
    assert_eq!(
        violations(
            "src/graphql/loaders.rs",
            "use crate::db::models::UserRow;\nuse crate::db::{self, DbError};\n\
             use crate::transaction;\nasync fn f(app: &App) { let c = app.db.conn().await; }\n\
             fn g() { crate::db::servers::find(); }\n",
        ),
        [
            "src/graphql/loaders.rs:2: `crate::db` (graphql/ and http/ reach data through the domain)",
            "src/graphql/loaders.rs:2: `crate::db::DbError` (graphql/ and http/ reach data through the domain)",
            "src/graphql/loaders.rs:3: `crate::transaction` (graphql/ and http/ reach data through the domain)",
            "src/graphql/loaders.rs:4: `.db.conn(` (graphql/ and http/ reach data through the domain)",
            "src/graphql/loaders.rs:5: `crate::db::servers::find` (graphql/ and http/ reach data through the domain)",
        ]
    );
    // The layers above may use everything below them.
    assert!(
        violations(
            "src/app.rs",
            "use crate::domain::Context;\nuse crate::db::Db;"
        )
        .is_empty()
    );
}

/// Every `.rs` file under `dir`, except the binary's root (a crate of its own).
fn collect_sources(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_sources(&path, files);
        } else if path.extension().is_some_and(|ext| ext == "rs") && !path.ends_with("src/main.rs")
        {
            files.push(path);
        }
    }
    files.sort();
}

/// The module path of a source file (`src/domain/oauth/flow.rs` → `domain::oauth::flow`).
fn module_of(relative: &str) -> Vec<String> {
    let inside = relative.strip_prefix("src/").unwrap_or(relative);
    let inside = inside.strip_suffix(".rs").unwrap_or(inside);
    let mut module: Vec<String> = inside.split('/').map(str::to_owned).collect();
    if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
        module.pop();
    }
    module
}

/// The rule broken by each path of `source` (a file at `relative`), as `file:line: … (rule)`.
fn violations(relative: &str, source: &str) -> Vec<String> {
    let module = module_of(relative);
    let layer = module.first().map(String::as_str).unwrap_or("");
    let in_domain = layer == "domain";
    let in_infrastructure = INFRASTRUCTURE.contains(&layer);
    let in_edge = EDGE.contains(&layer);
    let tokens = tokenize(&blank(source));
    let mut found = Vec::new();
    let mut report = |line: usize, what: String, rule: &str| {
        found.push(format!("{relative}:{line}: `{what}` ({rule})"));
    };
    const ABOVE: &str = "the domain must not depend on layers above it";
    const BELOW: &str = "infrastructure must not depend on the domain or above";
    const EDGE_DATA: &str = "graphql/ and http/ reach data through the domain";

    // Inline modules open at a brace depth: (name, depth outside it).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut pending_mod: Option<String> = None;
    let mut depth = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        let (line, token) = (&tokens[i].0, &tokens[i].1);
        match token {
            Token::Open => {
                if let Some(name) = pending_mod.take() {
                    inline.push((name, depth));
                }
                depth += 1;
            }
            Token::Close => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|(_, at)| *at == depth) {
                    inline.pop();
                }
            }
            Token::Ident(word) if word == "mod" => {
                if let Some(Token::Ident(name)) = tokens.get(i + 1).map(|t| &t.1) {
                    pending_mod = Some(name.clone());
                    i += 2;
                    continue;
                }
            }
            Token::Punct(';') => pending_mod = None,
            _ => {}
        }
        let next_is_sep = matches!(tokens.get(i + 1), Some((_, Token::PathSep)));
        let after_sep = i > 0 && matches!(tokens[i - 1].1, Token::PathSep);
        if let Token::Ident(word) = token
            && next_is_sep
        {
            if in_domain && WEB_CRATES.contains(&word.as_str()) {
                report(
                    *line,
                    format!("{word}::…"),
                    "the domain never sees web framework types",
                );
            }
            if !after_sep && matches!(word.as_str(), "crate" | "super" | "self") {
                let mut base: Vec<String> = if word == "crate" {
                    Vec::new()
                } else {
                    let mut current = module.clone();
                    current.extend(inline.iter().map(|(name, _)| name.clone()));
                    if word == "super" {
                        current.pop();
                    }
                    current
                };
                let mut j = i + 2;
                while matches!(tokens.get(j), Some((_, Token::Ident(s))) if s == "super")
                    && matches!(tokens.get(j + 1), Some((_, Token::PathSep)))
                {
                    base.pop();
                    j += 2;
                }
                let mut paths = Vec::new();
                parse_tree(&tokens, &mut j, base, &mut paths);
                for (path, at) in paths {
                    let first = path.first().map(String::as_str).unwrap_or("*");
                    let shown = std::iter::once("crate")
                        .chain(path.iter().map(String::as_str))
                        .collect::<Vec<_>>()
                        .join("::");
                    if in_domain && (ABOVE_DOMAIN.contains(&first) || first == "*") {
                        report(at, shown, ABOVE);
                    } else if in_infrastructure
                        && (first == "domain" || ABOVE_DOMAIN.contains(&first) || first == "*")
                    {
                        report(at, shown, BELOW);
                    } else if in_edge
                        && ((first == "db"
                            && !path
                                .get(1)
                                .is_some_and(|second| DB_TYPES.contains(&second.as_str())))
                            || SQL_MACROS.contains(&first))
                    {
                        report(at, shown, EDGE_DATA);
                    }
                }
                i = j;
                continue;
            }
        }
        if in_edge
            && matches!(token, Token::Punct('.'))
            && matches!(tokens.get(i + 1), Some((_, Token::Ident(s))) if s == "db")
            && matches!(tokens.get(i + 2), Some((_, Token::Punct('.'))))
            && matches!(tokens.get(i + 3), Some((_, Token::Ident(s))) if s == "conn")
            && matches!(tokens.get(i + 4), Some((_, Token::Punct('('))))
        {
            report(*line, ".db.conn(".to_owned(), EDGE_DATA);
        }
        i += 1;
    }
    found
}

/// Parse the rest of a path or use tree after `prefix::`, with `*j` on the token after `::`.
/// Each complete path is pushed with the line of its last segment.
fn parse_tree(
    tokens: &[(usize, Token)],
    j: &mut usize,
    prefix: Vec<String>,
    paths: &mut Vec<(Vec<String>, usize)>,
) {
    let Some((line, token)) = tokens.get(*j) else {
        return;
    };
    match token {
        Token::Open => {
            *j += 1;
            while let Some((_, token)) = tokens.get(*j) {
                match token {
                    Token::Close => {
                        *j += 1;
                        return;
                    }
                    Token::Punct(',') => *j += 1,
                    _ => {
                        let before = *j;
                        parse_tree(tokens, j, prefix.clone(), paths);
                        if *j == before {
                            *j += 1;
                        }
                    }
                }
            }
        }
        Token::Punct('*') => {
            let mut path = prefix;
            path.push("*".to_owned());
            paths.push((path, *line));
            *j += 1;
        }
        Token::Ident(segment) => {
            let mut path = prefix;
            if segment != "self" {
                path.push(segment.clone());
            }
            *j += 1;
            let continues = matches!(tokens.get(*j), Some((_, Token::PathSep)))
                && matches!(
                    tokens.get(*j + 1),
                    Some((_, Token::Ident(_) | Token::Open | Token::Punct('*')))
                );
            if continues {
                *j += 1;
                parse_tree(tokens, j, path, paths);
            } else {
                if matches!(tokens.get(*j), Some((_, Token::Ident(s))) if s == "as") {
                    *j += 2;
                }
                paths.push((path, *line));
            }
        }
        _ => paths.push((prefix, *line)),
    }
}

#[derive(Debug, PartialEq)]
enum Token {
    Ident(String),
    PathSep,
    Open,
    Close,
    Punct(char),
}

/// The tokens that matter for paths, each with its line (from 1).
fn tokenize(chars: &[char]) -> Vec<(usize, Token)> {
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push((line, Token::Ident(chars[start..i].iter().collect())));
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            tokens.push((line, Token::PathSep));
            i += 2;
        } else {
            tokens.push((
                line,
                match c {
                    '{' => Token::Open,
                    '}' => Token::Close,
                    other => Token::Punct(other),
                },
            ));
            i += 1;
        }
    }
    tokens
}

/// The source with comments, string literals and character literals replaced by spaces (line
/// breaks kept, so lines still count).
fn blank(source: &str) -> Vec<char> {
    let chars: Vec<char> = source.chars().collect();
    let mut out = chars.clone();
    let erase = |out: &mut Vec<char>, from: usize, to: usize| {
        for c in &mut out[from..to.min(chars.len())] {
            if *c != '\n' {
                *c = ' ';
            }
        }
    };
    let is_ident = |c: Option<&char>| c.is_some_and(|c| c.is_alphanumeric() || *c == '_');
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '/' if chars.get(i + 1) == Some(&'/') => {
                let end = (i..chars.len())
                    .find(|&k| chars[k] == '\n')
                    .unwrap_or(chars.len());
                erase(&mut out, i, end);
                i = end;
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                let mut nesting = 0;
                let mut k = i;
                while k < chars.len() {
                    if chars[k] == '/' && chars.get(k + 1) == Some(&'*') {
                        nesting += 1;
                        k += 2;
                    } else if chars[k] == '*' && chars.get(k + 1) == Some(&'/') {
                        nesting -= 1;
                        k += 2;
                        if nesting == 0 {
                            break;
                        }
                    } else {
                        k += 1;
                    }
                }
                erase(&mut out, i, k);
                i = k;
            }
            'r' if !is_ident(i.checked_sub(1).and_then(|p| chars.get(p)))
                || (i >= 1
                    && chars[i - 1] == 'b'
                    && !is_ident(i.checked_sub(2).and_then(|p| chars.get(p)))) =>
            {
                let hashes = chars[i + 1..].iter().take_while(|c| **c == '#').count();
                if chars.get(i + 1 + hashes) != Some(&'"') {
                    i += 1;
                    continue;
                }
                let mut k = i + 2 + hashes;
                while k < chars.len() {
                    if chars[k] == '"' && chars[k + 1..].iter().take(hashes).all(|c| *c == '#') {
                        k += 1 + hashes;
                        break;
                    }
                    k += 1;
                }
                erase(&mut out, i, k);
                i = k;
            }
            '"' => {
                let mut k = i + 1;
                while k < chars.len() {
                    match chars[k] {
                        '\\' => k += 2,
                        '"' => {
                            k += 1;
                            break;
                        }
                        _ => k += 1,
                    }
                }
                erase(&mut out, i, k);
                i = k;
            }
            '\'' => {
                if chars.get(i + 1) == Some(&'\\') {
                    let end = (i + 3..chars.len())
                        .find(|&k| chars[k] == '\'')
                        .map_or(chars.len(), |k| k + 1);
                    erase(&mut out, i, end);
                    i = end;
                } else if chars.get(i + 2) == Some(&'\'') {
                    erase(&mut out, i, i + 3);
                    i += 3;
                } else {
                    // A lifetime or a label.
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    out
}
