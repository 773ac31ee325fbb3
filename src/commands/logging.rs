//! Logs: one line per event on stderr, compact text for people or JSON for log pipelines.
//!
//! JSON lines carry `time` (RFC 3339, UTC), `severity` (Cloud Logging's names), `component`,
//! `message`, and the event's structured fields as top-level keys.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::commands::cli::{LogArgs, LogFormat, LogLevel};
use crate::untrusted_text;

/// Installs the global subscriber. Called once, before anything is logged.
pub fn init(args: &LogArgs) {
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(level_filter(args.effective_level()))
        .with_writer(std::io::stderr)
        // A failed write (a closed stderr) is dropped. Reporting it would use eprintln!, which
        // panics, and a panic in PID 1 would take the app's exit status down with it.
        .log_internal_errors(false)
        .event_format(LineFormat::new(args.log_format, SystemTime))
        .finish();
    // Only fails if a subscriber is already set, which would be a bug in main, not user input.
    let _ = tracing::subscriber::set_global_default(subscriber);
}

fn level_filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Off => LevelFilter::OFF,
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Trace => LevelFilter::TRACE,
    }
}

/// Formats one event as a text or JSON line; generic over the clock so tests can fix it.
pub struct LineFormat<T> {
    format: LogFormat,
    clock: T,
}

impl<T> LineFormat<T> {
    pub fn new(format: LogFormat, clock: T) -> Self {
        LineFormat { format, clock }
    }
}

impl<S, N, T> FormatEvent<S, N> for LineFormat<T>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    T: FormatTime,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut out: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let component = meta.target().rsplit("::").next().unwrap_or("meshwait");
        let mut fields = Fields {
            json: self.format == LogFormat::Json,
            message: String::new(),
            rest: String::new(),
        };
        event.record(&mut fields);
        match self.format {
            LogFormat::Text => {
                self.clock.format_time(&mut out)?;
                write!(out, " {:<5} {component}: ", meta.level().as_str())?;
                untrusted_text::write_escaped(&mut out, &fields.message)?;
                out.write_str(&fields.rest)?;
            }
            LogFormat::Json => {
                out.write_str("{\"time\":\"")?;
                self.clock.format_time(&mut out)?;
                write!(
                    out,
                    "\",\"severity\":\"{}\",\"component\":",
                    severity(*meta.level())
                )?;
                json_string(&mut out, component)?;
                out.write_str(",\"message\":")?;
                json_string(&mut out, &fields.message)?;
                write!(out, "{}}}", fields.rest)?;
            }
        }
        out.write_char('\n')
    }
}

/// Cloud Logging's severity names.
fn severity(level: Level) -> &'static str {
    match level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG | Level::TRACE => "DEBUG",
    }
}

struct Fields {
    json: bool,
    message: String,
    rest: String,
}

impl Fields {
    fn push(&mut self, field: &Field, value: &str, quote: bool) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else if self.json {
            let _ = write!(self.rest, ",\"{}\":", field.name());
            let _ = if quote {
                json_string(&mut self.rest, value)
            } else {
                self.rest.write_str(value)
            };
        } else if quote
            && (value.is_empty()
                || value.contains(['"', '=', '\\'])
                || value
                    .chars()
                    .any(|c| c.is_whitespace() || untrusted_text::is_unsafe(c)))
        {
            // Debug-quoted: escapes the newline that would otherwise split one event in two, and
            // (like `untrusted_text`) the line separators and bidirectional controls.
            let _ = write!(self.rest, " {}={value:?}", field.name());
        } else {
            let _ = write!(self.rest, " {}={value}", field.name());
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, value, true);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, &value.to_string(), false);
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, &value.to_string(), false);
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, if value { "true" } else { "false" }, false);
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field, &format!("{value:?}"), true);
    }
}

/// A JSON string. Beyond what JSON requires, DEL, C1, the line separators and the bidirectional
/// controls are escaped too: JSON logs are read raw (`kubectl logs`) as often as parsed.
pub(crate) fn json_string(out: &mut dyn fmt::Write, text: &str) -> fmt::Result {
    out.write_char('"')?;
    for c in text.chars() {
        match c {
            '"' => out.write_str("\\\"")?,
            '\\' => out.write_str("\\\\")?,
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            // JSON escapes UTF-16 units: a tag character (U+E0000 up) takes a surrogate pair.
            c if untrusted_text::is_unsafe(c) => {
                for unit in c.encode_utf16(&mut [0; 2]) {
                    write!(out, "\\u{unit:04x}")?;
                }
            }
            c => out.write_char(c)?,
        }
    }
    out.write_char('"')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    struct FixedClock;
    impl FormatTime for FixedClock {
        fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
            w.write_str("2026-01-02T03:04:05.678Z")
        }
    }

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn capture(format: LogFormat, emit: impl FnOnce()) -> String {
        let sink = Capture::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(LevelFilter::TRACE)
            .with_writer(move || writer.clone())
            .event_format(LineFormat::new(format, FixedClock))
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        String::from_utf8(sink.0.lock().unwrap().clone()).unwrap()
    }

    fn sample() {
        tracing::warn!(
            url = "http://localhost:15020/healthz/ready",
            status = 503u64,
            attempt = 7u64,
            ready = false,
            "proxy not ready: \"no\\config\"\n"
        );
    }

    #[test]
    fn text_golden_line() {
        assert_eq!(
            capture(LogFormat::Text, sample),
            "2026-01-02T03:04:05.678Z WARN  tests: proxy not ready: \"no\\config\"\\n url=http://localhost:15020/healthz/ready status=503 attempt=7 ready=false\n"
        );
    }

    #[test]
    fn json_golden_line() {
        assert_eq!(
            capture(LogFormat::Json, sample),
            "{\"time\":\"2026-01-02T03:04:05.678Z\",\"severity\":\"WARNING\",\"component\":\"tests\",\"message\":\"proxy not ready: \\\"no\\\\config\\\"\\n\",\"url\":\"http://localhost:15020/healthz/ready\",\"status\":503,\"attempt\":7,\"ready\":false}\n"
        );
    }

    #[test]
    fn json_lines_parse_with_every_field_typed() {
        let line = capture(LogFormat::Json, || {
            sample();
            tracing::error!(
                pid = 42u64,
                signal = "SIGTERM",
                exit_code = 143i64,
                "app died"
            );
        });
        let lines: Vec<serde_json::Value> = line
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["status"], 503);
        assert_eq!(lines[0]["ready"], false);
        assert_eq!(lines[0]["message"], "proxy not ready: \"no\\config\"\n");
        assert_eq!(lines[1]["severity"], "ERROR");
        assert_eq!(lines[1]["pid"], 42);
        assert_eq!(lines[1]["signal"], "SIGTERM");
        assert_eq!(lines[1]["exit_code"], 143);
        assert_eq!(lines[1]["time"], "2026-01-02T03:04:05.678Z");
    }

    #[test]
    fn text_quotes_values_with_spaces() {
        let line = capture(LogFormat::Text, || {
            tracing::info!(why = "connection refused", "waiting");
        });
        assert!(
            line.ends_with("waiting why=\"connection refused\"\n"),
            "{line}"
        );
    }

    /// Guards one event per line: a value with a line break but no space (a body read from a
    /// proxy, `a\nb`) was written raw, and a collector took its second half for a new event.
    #[test]
    fn text_values_never_break_the_line() {
        let line = capture(LogFormat::Text, || {
            tracing::info!(body = "ready\nforged", tab = "a\tb", cr = "x\ry", "probe");
        });
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(
            line.ends_with("probe body=\"ready\\nforged\" tab=\"a\\tb\" cr=\"x\\ry\"\n"),
            "{line}"
        );
    }

    /// Guards the Unicode line separators and bidirectional controls in a body read from a proxy:
    /// they reached text and JSON lines raw, so a viewer could break or reorder the line.
    #[test]
    fn unicode_separators_and_bidi_controls_are_escaped() {
        let body = "ok\u{2028}forged\u{202e}desrever\u{85}\u{e0041}";
        let text = capture(LogFormat::Text, || tracing::warn!(body, "probe {body}"));
        assert_eq!(text.lines().count(), 1);
        assert!(
            text.ends_with(
                "probe ok\\u{2028}forged\\u{202e}desrever\\u{85}\\u{e0041} body=\"ok\\u{2028}forged\\u{202e}desrever\\u{85}\\u{e0041}\"\n"
            ),
            "{text}"
        );
        let json = capture(LogFormat::Json, || tracing::warn!(body, "probe {body}"));
        assert!(
            json.contains("\"body\":\"ok\\u2028forged\\u202edesrever\\u0085\\udb40\\udc41\""),
            "{json}"
        );
        assert!(
            !json.contains('\u{2028}') && !json.contains('\u{202e}'),
            "{json}"
        );
        let parsed: serde_json::Value = serde_json::from_str(json.trim_end()).unwrap();
        assert_eq!(parsed["body"], body, "escaped, not altered");
        assert_eq!(parsed["message"], format!("probe {body}"));
    }

    /// Guards each reason to quote a text value: without the quotes an empty value, a quote, an
    /// `=` or a backslash would make the line's `key=value` pairs ambiguous.
    #[test]
    fn text_quotes_values_a_reader_could_misparse() {
        let line = capture(LogFormat::Text, || {
            tracing::info!(
                empty = "",
                eq = "a=b",
                quote = "say \"hi\"",
                slash = "c:\\d",
                plain = "ok",
                "values"
            );
        });
        assert!(
            line.ends_with(
                "values empty=\"\" eq=\"a=b\" quote=\"say \\\"hi\\\"\" slash=\"c:\\\\d\" plain=ok\n"
            ),
            "{line}"
        );
    }

    #[test]
    fn severities() {
        assert_eq!(severity(Level::TRACE), "DEBUG");
        assert_eq!(severity(Level::WARN), "WARNING");
        assert_eq!(severity(Level::ERROR), "ERROR");
    }

    /// The components are part of the log format: every module that logs names its own with a
    /// `LOG` constant (a module path would change when the code moves), and together they are
    /// the list the manual (docs/logs.md) gives users.
    #[test]
    fn every_component_is_fixed_and_documented() {
        // The code, not its unit tests (which log to check the format).
        let files: Vec<(String, String)> = crate::source_files("")
            .into_iter()
            .map(|(path, text)| {
                let code = text
                    .split("#[cfg(test)]\nmod tests")
                    .next()
                    .unwrap()
                    .to_string();
                (path, code)
            })
            .collect();
        let mut components = Vec::new();
        for (path, code) in &files {
            let macros = ["error!(", "warn!(", "info!(", "debug!(", "trace!("]
                .iter()
                .map(|m| code.matches(&format!("tracing::{m}")).count())
                .sum::<usize>();
            let targeted = code.matches("!(target: LOG,").count();
            assert_eq!(macros, targeted, "{path}: a log line without `target: LOG`");
            let declared: Vec<&str> = code
                .lines()
                .filter_map(|l| l.strip_prefix("const LOG: &str = \""))
                .filter_map(|rest| rest.strip_suffix("\";"))
                .collect();
            match (macros, declared.as_slice()) {
                (0, []) => {}
                (_, [name]) => components.push(name.to_string()),
                _ => panic!("{path}: {macros} log lines, LOG declared {declared:?}"),
            }
        }
        components.sort();
        components.dedup();
        let page = crate::manual_page("logs.md");
        let start = page.find("The `component` of a line is one of").unwrap();
        let end = start + page[start..].find("; these names").unwrap();
        let mut documented: Vec<String> = page[start..end]
            .split('`')
            .skip(3)
            .step_by(2)
            .map(str::to_string)
            .collect();
        documented.sort();
        assert_eq!(components, documented);
        assert!(components.len() >= 10, "{components:?}");
    }
}
