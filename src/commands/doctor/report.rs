//! doctor's report: the check list as text for people or one JSON document for scripts.

use std::fmt::Write as _;

use crate::commands::logging::json_string;
use crate::proxy::diagnosis::{self, Explained, Facts};
use crate::proxy::mesh::Mesh;
use crate::untrusted_text;

/// How much of one check's evidence the text report shows: several neighbour pieces may share a
/// line, and a terminal must not be flooded by one check.
const EVIDENCE_SHOWN: usize = 600;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    Pass,
    Fail,
    /// Evidence only: neither right nor wrong by itself.
    Info,
}

impl Mark {
    fn symbol(self) -> &'static str {
        match self {
            Mark::Pass => "✓",
            Mark::Fail => "✗",
            Mark::Info => "·",
        }
    }

    fn word(self) -> &'static str {
        match self {
            Mark::Pass => "pass",
            Mark::Fail => "fail",
            Mark::Info => "info",
        }
    }
}

/// One line of the report.
#[derive(Clone, Debug)]
pub struct Check {
    pub name: &'static str,
    pub mark: Mark,
    pub evidence: String,
    /// The hint table's id, when the hint came from it.
    pub hint_id: Option<&'static str>,
    pub hint: Option<String>,
}

impl Check {
    pub fn new(name: &'static str, mark: Mark, evidence: impl Into<String>) -> Check {
        Check {
            name,
            mark,
            evidence: evidence.into(),
            hint_id: None,
            hint: None,
        }
    }

    pub fn hint(mut self, text: impl Into<String>) -> Check {
        self.hint = Some(text.into());
        self
    }

    pub fn explained(mut self, mesh: Mesh, facts: &Facts) -> Check {
        if let Some(hint) = diagnosis::diagnose(mesh, facts) {
            self.hint_id = Some(hint.id);
            self.hint = Some(Explained { hint, facts }.to_string());
        }
        self
    }
}

/// How many checks failed.
pub fn problems(checks: &[Check]) -> usize {
    checks.iter().filter(|c| c.mark == Mark::Fail).count()
}

pub fn text(mesh: Mesh, checks: &[Check]) -> String {
    let mut out = format!("meshwait doctor (--mesh {})\n", mesh.name());
    // One missing sidecar fails several checks with the same hint: give it once.
    let mut shown: Vec<&str> = Vec::new();
    for c in checks {
        // Evidence quotes neighbours (another process's argv, a proxy's answer): escaped here,
        // in the one place text reaches the operator's terminal.
        let evidence = untrusted_text::shown(&c.evidence, EVIDENCE_SHOWN);
        let _ = writeln!(out, "{} {:<14} {evidence}", c.mark.symbol(), c.name);
        let Some(hint) = &c.hint else {
            continue;
        };
        let hint = untrusted_text::shown(hint, usize::MAX);
        let _ = match c.hint_id {
            Some(id) if shown.contains(&id) => writeln!(out, "  {:<14} → [{id}] as above", ""),
            Some(id) => {
                shown.push(id);
                writeln!(out, "  {:<14} → [{id}] {hint}", "")
            }
            None => writeln!(out, "  {:<14} → {hint}", ""),
        };
    }
    let _ = match problems(checks) {
        0 => writeln!(out, "nothing wrong found"),
        1 => writeln!(out, "1 problem found"),
        n => writeln!(out, "{n} problems found"),
    };
    out
}

pub fn json(mesh: Mesh, checks: &[Check]) -> String {
    let mut out = format!(
        "{{\"mesh\":\"{}\",\"ok\":{},\"problems\":{},\"checks\":[",
        mesh.name(),
        problems(checks) == 0,
        problems(checks)
    );
    for (i, c) in checks.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("\n{\"check\":");
        let _ = json_string(&mut out, c.name);
        let _ = write!(out, ",\"result\":\"{}\",\"evidence\":", c.mark.word());
        let _ = json_string(&mut out, &c.evidence);
        out.push_str(",\"hint_id\":");
        match c.hint_id {
            Some(id) => {
                let _ = json_string(&mut out, id);
            }
            None => out.push_str("null"),
        }
        out.push_str(",\"hint\":");
        match &c.hint {
            Some(hint) => {
                let _ = json_string(&mut out, hint);
            }
            None => out.push_str("null"),
        }
        out.push('}');
    }
    out.push_str("\n]}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::sidecar_http::Outcome;

    fn sample() -> Vec<Check> {
        vec![
            Check::new("init", Mark::Pass, "PID 1 is meshwait: meshwait -- app"),
            Check::new("readiness", Mark::Fail, "http://localhost:15020/healthz/ready: HTTP 503")
                .explained(
                    Mesh::Istio,
                    &Facts::probe(Outcome::NotReady {
                        status: 503,
                        body: "config not received from XDS server (is Istiod running?): cds updates: 0 successful, 0 rejected; lds updates: 0 successful, 0 rejected".into(),
                    }),
                ),
            Check::new("in flight", Mark::Info, "quote \" and back\\slash"),
        ]
    }

    #[test]
    fn text_report() {
        let text = text(Mesh::Istio, &sample());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "meshwait doctor (--mesh istio)");
        assert_eq!(
            lines[1],
            "✓ init           PID 1 is meshwait: meshwait -- app"
        );
        assert_eq!(
            lines[2],
            "✗ readiness      http://localhost:15020/healthz/ready: HTTP 503"
        );
        assert!(
            lines[3].starts_with(
                "                 → [no-config-from-istiod] Envoy has received no configuration"
            ),
            "{}",
            lines[3]
        );
        assert_eq!(lines[4], "· in flight      quote \" and back\\slash");
        assert_eq!(lines[5], "1 problem found");
    }

    /// Guards the operator's terminal: a neighbour's argv holding `ESC[2J` and a line break
    /// cleared the screen and printed a forged check line.
    #[test]
    fn text_report_escapes_and_caps_evidence() {
        let hostile = "meshwait -- app \u{1b}[2J\u{1b}[31m\n✓ init forged\u{2028}\u{202e}x";
        let checks = vec![
            Check::new("init", Mark::Pass, hostile),
            Check::new("in flight", Mark::Info, "y".repeat(5000)).hint("a\nb"),
        ];
        let text = text(Mesh::Istio, &checks);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert_eq!(
            lines[1],
            "✓ init           meshwait -- app \\u{1b}[2J\\u{1b}[31m\\n✓ init forged\\u{2028}\\u{202e}x"
        );
        assert_eq!(
            lines[2].chars().count(),
            17 + EVIDENCE_SHOWN + 1,
            "{}",
            lines[2]
        );
        assert!(lines[2].ends_with('…'));
        assert!(lines[3].ends_with("→ a\\nb"), "{}", lines[3]);
        let json = json(Mesh::Istio, &checks);
        assert!(!json.contains(['\u{1b}', '\u{2028}', '\u{202e}']), "{json}");
        assert_eq!(json.lines().count(), 4, "{json}");
    }

    #[test]
    fn json_report_shape() {
        let json = json(Mesh::Istio, &sample());
        assert!(json.starts_with("{\"mesh\":\"istio\",\"ok\":false,\"problems\":1,\"checks\":["));
        assert!(json.contains("\"check\":\"readiness\",\"result\":\"fail\""));
        assert!(json.contains("\"hint_id\":\"no-config-from-istiod\""));
        assert!(json.contains("\"evidence\":\"quote \\\" and back\\\\slash\""));
        assert!(json.ends_with("]}\n"));
    }
}
