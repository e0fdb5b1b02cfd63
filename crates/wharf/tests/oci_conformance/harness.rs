//! Ginkgo's part: specs run in registration order, each ends at its first failed assertion (or
//! skip), later specs still run, and every result is recorded for the report.

use std::fmt::Write as _;

use crate::client::{Client, Exchange, Response, render_exchange};
use crate::data::{Config, TestData};

/// Why a spec stopped early: a failed assertion (or a Go panic), or a skip.
#[derive(Debug, Clone)]
pub enum Stop {
    Fail(String),
    Skip(String),
}

pub type SpecResult = Result<(), Stop>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Failed,
    Skipped,
}

#[derive(Debug, Clone)]
pub struct SpecRecord {
    pub workflow: &'static str,
    pub context: &'static str,
    pub title: &'static str,
    pub outcome: Outcome,
    pub message: String,
    pub warnings: Vec<String>,
    pub exchanges: Vec<Exchange>,
}

/// The running suite: configuration, test data, client, and results so far.
pub struct Suite {
    pub config: Config,
    pub data: TestData,
    pub client: Client,
    workflow: &'static str,
    context: &'static str,
    warnings: Vec<String>,
    /// `OCI_DEBUG`: print every HTTP exchange.
    debug: bool,
    pub records: Vec<SpecRecord>,
}

impl Suite {
    pub fn new(config: Config, data: TestData, client: Client) -> Suite {
        // strconv.ParseBool's true values.
        let debug = matches!(
            std::env::var("OCI_DEBUG").as_deref(),
            Ok("1" | "t" | "T" | "TRUE" | "true" | "True")
        );
        Suite {
            config,
            data,
            client,
            workflow: "",
            context: "",
            warnings: Vec::new(),
            debug,
            records: Vec::new(),
        }
    }

    pub fn workflow(&mut self, name: &'static str) {
        self.workflow = name;
        println!("\n{name}");
    }

    pub fn context(&mut self, name: &'static str) {
        self.context = name;
    }

    /// Called before each spec body.
    pub fn begin(&mut self) {
        self.client.log.clear();
        self.warnings.clear();
    }

    /// `Warn(msg)`: printed, attached to the spec, not a failure.
    pub fn warn(&mut self, message: &str) {
        eprintln!("WARNING: {message}");
        self.warnings.push(message.to_owned());
    }

    /// `SkipIfDisabled(test)`.
    pub fn skip_if_disabled(&self, test: u8) -> SpecResult {
        if test & self.config.tests_to_run == 0 {
            return Err(Stop::Skip(
                "you have skipped this test; if this is an error, check your environment variable settings".to_owned(),
            ));
        }
        Ok(())
    }

    /// Called after each spec body.
    pub fn record(&mut self, title: &'static str, result: SpecResult) {
        let (outcome, message) = match result {
            Ok(()) => (Outcome::Passed, String::new()),
            Err(Stop::Fail(message)) => (Outcome::Failed, message),
            Err(Stop::Skip(message)) => (Outcome::Skipped, message),
        };
        let label = match outcome {
            Outcome::Passed => "PASS",
            Outcome::Failed => "FAIL",
            Outcome::Skipped => "SKIP",
        };
        println!("  [{label}] {} / {title}", self.context);
        if outcome == Outcome::Failed {
            println!("         {}", message.replace('\n', "\n         "));
        }
        if self.debug {
            for exchange in &self.client.log {
                print!("{}", render_exchange(exchange));
            }
        }
        self.records.push(SpecRecord {
            workflow: self.workflow,
            context: self.context,
            title,
            outcome,
            message,
            warnings: std::mem::take(&mut self.warnings),
            exchanges: std::mem::take(&mut self.client.log),
        });
    }

    /// The summary table and the details of every failure; `Err` when any spec failed.
    pub fn report(&self) -> Result<String, String> {
        let mut out = String::new();
        let _ = writeln!(out, "\nOCI Distribution Conformance Tests — summary");
        let _ = writeln!(
            out,
            "{:<22} {:>7} {:>7} {:>8} {:>6}",
            "Workflow", "Passed", "Failed", "Skipped", "Total"
        );
        let mut workflows: Vec<&'static str> = Vec::new();
        for record in &self.records {
            if !workflows.contains(&record.workflow) {
                workflows.push(record.workflow);
            }
        }
        let count = |records: &mut dyn Iterator<Item = &SpecRecord>| {
            let mut counts = [0usize; 3];
            for r in records {
                counts[match r.outcome {
                    Outcome::Passed => 0,
                    Outcome::Failed => 1,
                    Outcome::Skipped => 2,
                }] += 1;
            }
            counts
        };
        for workflow in &workflows {
            let c = count(&mut self.records.iter().filter(|r| r.workflow == *workflow));
            let _ = writeln!(
                out,
                "{:<22} {:>7} {:>7} {:>8} {:>6}",
                workflow,
                c[0],
                c[1],
                c[2],
                c.iter().sum::<usize>()
            );
        }
        let total = count(&mut self.records.iter());
        let _ = writeln!(
            out,
            "{:<22} {:>7} {:>7} {:>8} {:>6}",
            "All",
            total[0],
            total[1],
            total[2],
            total.iter().sum::<usize>()
        );

        let warned: Vec<&SpecRecord> = self
            .records
            .iter()
            .filter(|r| !r.warnings.is_empty())
            .collect();
        if !warned.is_empty() {
            let _ = writeln!(out, "\nWarnings:");
            for r in warned {
                for w in &r.warnings {
                    let _ = writeln!(
                        out,
                        "  {} / {} / {}: WARNING: {w}",
                        r.workflow, r.context, r.title
                    );
                }
            }
        }
        let skipped: Vec<&SpecRecord> = self
            .records
            .iter()
            .filter(|r| r.outcome == Outcome::Skipped)
            .collect();
        if !skipped.is_empty() {
            let _ = writeln!(out, "\nSkipped:");
            for r in skipped {
                let _ = writeln!(
                    out,
                    "  {} / {} / {}: {}",
                    r.workflow, r.context, r.title, r.message
                );
            }
        }

        let failed: Vec<&SpecRecord> = self
            .records
            .iter()
            .filter(|r| r.outcome == Outcome::Failed)
            .collect();
        if failed.is_empty() {
            return Ok(out);
        }
        let _ = writeln!(out, "\nFailures ({}):", failed.len());
        for r in failed {
            let _ = writeln!(out, "\n[FAIL] {} / {} / {}", r.workflow, r.context, r.title);
            let _ = writeln!(out, "  {}", r.message.replace('\n', "\n  "));
            if r.exchanges.is_empty() {
                let _ = writeln!(out, "  (no HTTP request was made)");
            }
            let n = r.exchanges.len();
            for (i, exchange) in r.exchanges.iter().enumerate() {
                let tag = if i + 1 == n {
                    " (last, the one that failed)"
                } else {
                    ""
                };
                let _ = writeln!(out, "  request {}/{}{tag}:", i + 1, n);
                out.push_str(&render_exchange(exchange));
            }
        }
        Err(out)
    }
}

/// Registers and runs one spec: `spec!(suite, "title", { body; Ok(()) })`. The body is an async
/// block returning `SpecResult`; `?` ends the spec like a failed Gomega assertion or `g.Skip`.
macro_rules! spec {
    ($suite:ident, $title:expr, $body:block) => {{
        $suite.begin();
        let result: $crate::harness::SpecResult = async { $body }.await;
        $suite.record($title, result);
    }};
}
pub(crate) use spec;

/// `RunOnlyIf(v)`.
pub fn run_only_if(v: bool) -> SpecResult {
    if v {
        Ok(())
    } else {
        Err(Stop::Skip("you have skipped this test.".to_owned()))
    }
}

/// `RunOnlyIfNot(v)`.
pub fn run_only_if_not(v: bool) -> SpecResult {
    run_only_if(!v)
}

/// A failed Gomega assertion.
pub fn fail<T>(message: impl Into<String>) -> Result<T, Stop> {
    Err(Stop::Fail(message.into()))
}

/// `Expect(cond)...`, with a message built only on failure.
pub fn expect(cond: bool, message: impl FnOnce() -> String) -> SpecResult {
    if cond { Ok(()) } else { fail(message()) }
}

/// `Expect(resp.StatusCode()).To(Equal(code))`.
pub fn expect_status(resp: &Response, code: u16) -> SpecResult {
    expect(resp.status == code, || {
        format!(
            "Expected status code {code}, got {} {}",
            resp.status, resp.reason
        )
    })
}

/// `Expect(resp.StatusCode()).To(SatisfyAny(Equal(a), Equal(b), ...))`.
pub fn expect_status_in(resp: &Response, codes: &[u16]) -> SpecResult {
    expect(codes.contains(&resp.status), || {
        format!(
            "Expected status code to be one of {codes:?}, got {} {}",
            resp.status, resp.reason
        )
    })
}

/// `SatisfyAll(BeNumerically(">=", 200), BeNumerically("<", 300))`.
pub fn expect_2xx(resp: &Response) -> SpecResult {
    expect((200..300).contains(&resp.status), || {
        format!(
            "Expected a 2xx status code, got {} {}",
            resp.status, resp.reason
        )
    })
}

/// 2xx, or one of `codes`.
pub fn expect_2xx_or(resp: &Response, codes: &[u16]) -> SpecResult {
    expect(
        (200..300).contains(&resp.status) || codes.contains(&resp.status),
        || {
            format!(
                "Expected a 2xx status code or one of {codes:?}, got {} {}",
                resp.status, resp.reason
            )
        },
    )
}

/// `Expect(x).ToNot(BeEmpty())`.
pub fn expect_not_empty(value: &str, what: &str) -> SpecResult {
    expect(!value.is_empty(), || {
        format!("Expected {what} not to be empty")
    })
}

/// `Expect(actual).To(Equal(expected))` for strings.
pub fn expect_eq(actual: &str, expected: &str, what: &str) -> SpecResult {
    expect(actual == expected, || {
        format!("Expected {what}\n    {actual:?}\nto equal\n    {expected:?}")
    })
}

/// A Go runtime panic (nil dereference, index out of range) fails the spec.
pub fn panic_fail<T>(what: &str) -> Result<T, Stop> {
    fail(format!("Test Panicked: {what}"))
}
