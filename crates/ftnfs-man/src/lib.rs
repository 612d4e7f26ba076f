//! Man pages (roff) of the ftnfs programs: the synopsis, options and subcommands come from
//! each program's clap definition (`clap_mangen`), so they cannot drift from `--help`; the
//! written sections (description, exports file, signals, files, examples…) come from
//! `Documentation/man/*.md`, converted here. `ftnfsd --man` and `ftnfsctl --man` print
//! their page; `scripts/man` writes them all; `man -l` shows one.

use std::io::Write;

/// The man page of `cmd` in section 8: clap's title, name, synopsis, options and
/// subcommands, around the sections of `written` (Markdown, `## NAME` headings; its own
/// SYNOPSIS and OPTIONS are left out: clap's replace them).
pub fn render(cmd: clap::Command, written: &str) -> std::io::Result<Vec<u8>> {
    let has_subcommands = cmd.get_subcommands().next().is_some();
    let has_version = cmd.get_version().is_some() || cmd.get_long_version().is_some();
    let man = clap_mangen::Man::new(cmd).section("8").manual("ftnfs");
    let sections = sections(written);
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    for (name, body) in &sections {
        if name == "DESCRIPTION" {
            write_section(&mut out, name, body)?;
        }
    }
    man.render_options_section(&mut out)?;
    if has_subcommands {
        man.render_subcommands_section(&mut out)?;
    }
    for (name, body) in &sections {
        if !matches!(name.as_str(), "DESCRIPTION" | "SYNOPSIS" | "OPTIONS") {
            write_section(&mut out, name, body)?;
        }
    }
    if has_version {
        man.render_version_section(&mut out)?;
    }
    Ok(out)
}

/// `## NAME` sections of a Markdown page: (name, lines).
fn sections(md: &str) -> Vec<(String, Vec<&str>)> {
    let mut out: Vec<(String, Vec<&str>)> = Vec::new();
    for line in md.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            out.push((h.trim().to_uppercase(), Vec::new()));
        } else if let Some((_, body)) = out.last_mut() {
            body.push(line);
        }
    }
    out
}

/// One section as roff: paragraphs (`.PP`), bullets (`.IP \(bu 2`, continued by indented
/// lines), `code` and **bold** in bold.
fn write_section(out: &mut Vec<u8>, name: &str, body: &[&str]) -> std::io::Result<()> {
    writeln!(out, ".SH {}", escape(name))?;
    let mut fresh = true; // a paragraph starts at the next text line
    for line in body {
        let t = line.trim();
        if t.is_empty() {
            fresh = true;
            continue;
        }
        if let Some(item) = t.strip_prefix("- ") {
            writeln!(out, ".IP \\(bu 2")?;
            writeln!(out, "{}", inline(item))?;
            fresh = false;
            continue;
        }
        if fresh {
            writeln!(out, ".PP")?;
            fresh = false;
        }
        writeln!(out, "{}", inline(t))?;
    }
    Ok(())
}

/// Text safe for roff: backslashes escaped, a leading `.` or `'` guarded.
fn escape(s: &str) -> String {
    let s = s.replace('\\', "\\e");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

/// Inline Markdown: `code` and **bold** become bold (with real minus signs in code).
fn inline(s: &str) -> String {
    let s = escape(s);
    let mut out = String::with_capacity(s.len() + 16);
    let mut code = false;
    let mut bold = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '`' => {
                out.push_str(if code { "\\fR" } else { "\\fB" });
                code = !code;
            }
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                out.push_str(if bold { "\\fR" } else { "\\fB" });
                bold = !bold;
            }
            '-' if code => out.push_str("\\-"),
            c => out.push(c),
        }
    }
    if code || bold {
        out.push_str("\\fR");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_becomes_roff() {
        assert_eq!(
            inline("use `--x` **now**"),
            "use \\fB\\-\\-x\\fR \\fBnow\\fR"
        );
        assert_eq!(inline(".dot \\ back"), "\\&.dot \\e back");
        let md = "# t\n## SYNOPSIS\nskipped\n## SIGNALS\nSIGHUP: reload.\n\n- one\n  more\n- two\n";
        let cmd = clap::Command::new("x").about("X does").arg(
            clap::Arg::new("v")
                .long("verbose")
                .help("Say more")
                .action(clap::ArgAction::SetTrue),
        );
        let page = String::from_utf8(render(cmd, md).unwrap()).unwrap();
        assert!(
            page.contains(
                ".SH SIGNALS\n.PP\nSIGHUP: reload.\n.IP \\(bu 2\none\nmore\n.IP \\(bu 2\ntwo\n"
            ),
            "{page}"
        );
        assert!(
            page.contains("verbose") && page.contains("Say more"),
            "{page}"
        );
        assert!(!page.contains("skipped"), "{page}");
    }
}
