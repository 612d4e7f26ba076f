//! What an operator sees when ftnfsctl fails (issue 15): one line with the whole cause on
//! standard error, exit status 1, no backtrace; with `--json`, a JSON object on standard
//! output instead.

use std::process::Command;

fn ctl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ftnfsctl"))
        .args(["--socket", "/nonexistent/ftnfsd.sock"])
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("ftnfsctl runs")
}

#[test]
fn a_failure_is_one_line_with_its_cause_and_exit_status_1() {
    let o = ctl(&["status"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8(o.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(
        err.starts_with("ftnfsctl: cannot connect to /nonexistent/ftnfsd.sock: "),
        "{err:?}"
    );
    assert!(
        err.contains("No such file or directory"),
        "the root cause: {err:?}"
    );
    assert!(
        !err.contains("backtrace") && !err.contains("Caused by"),
        "{err:?}"
    );
    assert!(o.stdout.is_empty());
}

#[test]
fn a_failure_with_json_is_a_json_error_object() {
    let o = ctl(&["locks", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON on stdout");
    assert_eq!(v["ok"], false);
    assert!(v["error"]
        .as_str()
        .is_some_and(|e| e.starts_with("cannot connect to")));
}
