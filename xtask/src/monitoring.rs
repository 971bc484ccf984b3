//! The monitoring artefacts: the Grafana dashboard (`deploy/grafana/keel-dashboard.json`)
//! and Prometheus's scrape configuration, alerting rules and their unit tests
//! (`deploy/prometheus/`). promtool checks the Prometheus files and runs the rules' tests;
//! every metric a dashboard query, an alert or an alert test names must be one the code
//! emits (a `counter!`, `gauge!` or `histogram!` of the workspace), so neither drifts from it.
//!
//! promtool comes from Debian's `prometheus` package, installed when it is missing without
//! letting the package start (or leave enabled) a Prometheus server.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::postgres::{apt_install, has_command, is_root};

const PROMETHEUS_CONFIG: &str = "deploy/prometheus/prometheus.yml";
const ALERT_RULES: &str = "deploy/prometheus/alerts.yml";
const ALERT_TESTS: &str = "deploy/prometheus/alerts.test.yml";
const DASHBOARD: &str = "deploy/grafana/keel-dashboard.json";

/// The dashboard's Prometheus data source is chosen when it is imported: every panel and
/// query names the template variable, never a data source uid of one Grafana.
const DATASOURCE_VARIABLE: &str = "datasource";
const DATASOURCE_UIDS: [&str; 2] = ["${datasource}", "$datasource"];
const MIN_SCHEMA_VERSION: u64 = 39;

/// Debian's hook that `invoke-rc.d` and `deb-systemd-invoke` ask before starting a service.
const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";
/// The server binary of Debian's `prometheus` package (promtool is beside it).
const PROMETHEUS_SERVER: &str = "/usr/bin/prometheus";

/// Checks the monitoring artefacts under `root` (the workspace): the dashboard's structure,
/// that every metric the dashboard and the alerts name is emitted by the code, then
/// `promtool check config`, `check rules` and `test rules`, and the dashboard's queries
/// through promtool's PromQL parser. Installs promtool if it is missing.
pub fn check(root: &Path) -> anyhow::Result<()> {
    println!("==> monitoring ({DASHBOARD}, deploy/prometheus/)");
    let emitted = EmittedMetrics::scan(root)?;
    println!(
        "  metrics emitted by the code: {} ({} counters, {} gauges, {} histograms) in {} files",
        emitted.kinds.len(),
        emitted.count(MetricKind::Counter),
        emitted.count(MetricKind::Gauge),
        emitted.count(MetricKind::Histogram),
        emitted.files
    );
    let queries = check_dashboard(root, &emitted)?;
    check_alert_metrics(root, &emitted)?;

    ensure_promtool()?;
    println!("  {}", promtool_version()?);
    promtool(root, &["check", "config", PROMETHEUS_CONFIG])?;
    promtool(root, &["check", "rules", ALERT_RULES])?;
    promtool(root, &["test", "rules", ALERT_TESTS])?;
    check_query_syntax(&queries)
}

// ---------------------------------------------------------------------------------------
// Metrics the code emits

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// Which histograms the exporter gives buckets (`ops::metrics`:
/// `PrometheusBuilder::set_buckets_for_metric(Matcher::…)` or `set_buckets`). The others
/// it serves as summaries: `name{quantile="…"}`, `name_sum`, `name_count`, no `_bucket`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum BucketMatcher {
    All,
    Full(String),
    Prefix(String),
    Suffix(String),
}

impl BucketMatcher {
    fn matches(&self, name: &str) -> bool {
        match self {
            Self::All => true,
            Self::Full(full) => name == full,
            Self::Prefix(prefix) => name.starts_with(prefix.as_str()),
            Self::Suffix(suffix) => name.ends_with(suffix.as_str()),
        }
    }
}

#[derive(Debug, Default)]
struct EmittedMetrics {
    /// Metric name → kind, from `counter!("…"`, `gauge!("…"`, `histogram!("…"`.
    kinds: BTreeMap<String, MetricKind>,
    buckets: Vec<BucketMatcher>,
    /// `.rs` files scanned.
    files: usize,
}

impl EmittedMetrics {
    /// Scans every `.rs` file of the workspace but `target/`, `xtask/` and hidden folders.
    fn scan(root: &Path) -> anyhow::Result<Self> {
        let mut files = Vec::new();
        rust_files(root, &root.join("xtask"), &mut files)?;
        let mut emitted = Self::default();
        for file in &files {
            let source =
                fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            emitted.add_source(&source);
        }
        emitted.files = files.len();
        if emitted.kinds.is_empty() {
            bail!(
                "found no counter!/gauge!/histogram! with a literal name in the {} .rs files under {}",
                files.len(),
                root.display()
            );
        }
        Ok(emitted)
    }

    fn add_source(&mut self, source: &str) {
        for (kind, name) in macro_metric_names(source) {
            // A name used as two kinds keeps the first; the exporter would refuse it anyway.
            self.kinds.entry(name).or_insert(kind);
        }
        for matcher in bucket_matchers(source) {
            if !self.buckets.contains(&matcher) {
                self.buckets.push(matcher);
            }
        }
    }

    fn count(&self, kind: MetricKind) -> usize {
        self.kinds.values().filter(|k| **k == kind).count()
    }

    fn has_buckets(&self, histogram: &str) -> bool {
        self.buckets
            .iter()
            .any(|matcher| matcher.matches(histogram))
    }

    /// The metric a series name of the exposition belongs to, if the code emits it.
    fn metric_of(&self, series: &str) -> Option<&str> {
        if let Some((name, kind)) = self.kinds.get_key_value(series)
            && (*kind != MetricKind::Histogram || !self.has_buckets(series))
        {
            return Some(name);
        }
        for suffix in ["_bucket", "_sum", "_count"] {
            let Some(base) = series.strip_suffix(suffix) else {
                continue;
            };
            if let Some((name, MetricKind::Histogram)) = self.kinds.get_key_value(base)
                && (suffix != "_bucket" || self.has_buckets(base))
            {
                return Some(name);
            }
        }
        None
    }

    /// Why `series` is not emitted, with a hint when it is close to a metric that is.
    fn explain_unknown(&self, series: &str) -> String {
        if self.kinds.get(series) == Some(&MetricKind::Histogram) {
            return format!(
                "{series} is a histogram with buckets: query {series}_bucket, _sum or _count"
            );
        }
        if let Some(base) = series.strip_suffix("_bucket")
            && self.kinds.get(base) == Some(&MetricKind::Histogram)
        {
            return format!(
                "{base} has no buckets (only histograms matched by set_buckets_for_metric do), \
                 so it is served as a summary: query {base}{{quantile=\"0.99\"}}, {base}_sum or {base}_count"
            );
        }
        format!("{series} is not a metric the code emits")
    }
}

fn rust_files(dir: &Path, skip: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let entries = fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let file_type = entry
            .file_type()
            .with_context(|| format!("reading the type of {}", path.display()))?;
        if file_type.is_dir() {
            if name.starts_with('.') || name == "target" || path == skip {
                continue;
            }
            rust_files(&path, skip, out)?;
        } else if file_type.is_file() && name.ends_with(".rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// Names given as a string literal to `counter!(`, `gauge!(` or `histogram!(` (with or
/// without the `metrics::` path); `describe_counter!` and names built at run time are not
/// metric emissions this sees.
fn macro_metric_names(source: &str) -> Vec<(MetricKind, String)> {
    let mut names = Vec::new();
    for (kind, invocation) in [
        (MetricKind::Counter, "counter!("),
        (MetricKind::Gauge, "gauge!("),
        (MetricKind::Histogram, "histogram!("),
    ] {
        for (at, _) in source.match_indices(invocation) {
            let preceded_by_ident = source[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            if preceded_by_ident {
                continue;
            }
            if let Some(name) = leading_string_literal(&source[at + invocation.len()..])
                && is_metric_name(name)
            {
                names.push((kind, name.to_owned()));
            }
        }
    }
    names
}

/// The histograms that get buckets, from `set_buckets_for_metric(Matcher::Kind("…"` and
/// `set_buckets(` (every histogram).
fn bucket_matchers(source: &str) -> Vec<BucketMatcher> {
    let mut matchers = Vec::new();
    if source.contains(".set_buckets(") {
        matchers.push(BucketMatcher::All);
    }
    for (at, _) in source.match_indices("set_buckets_for_metric(") {
        let rest = source[at + "set_buckets_for_metric(".len()..].trim_start();
        let Some(rest) = rest.strip_prefix("Matcher::") else {
            continue;
        };
        let Some((variant, argument)) = rest.split_once('(') else {
            continue;
        };
        let Some(text) = leading_string_literal(argument).map(str::to_owned) else {
            continue;
        };
        match variant {
            "Full" => matchers.push(BucketMatcher::Full(text)),
            "Prefix" => matchers.push(BucketMatcher::Prefix(text)),
            "Suffix" => matchers.push(BucketMatcher::Suffix(text)),
            _ => {}
        }
    }
    matchers
}

/// The contents of a `"…"` literal at the start of `text` (after whitespace), if any.
fn leading_string_literal(text: &str) -> Option<&str> {
    let text = text.trim_start().strip_prefix('"')?;
    let end = text.find('"')?;
    Some(&text[..end])
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

// ---------------------------------------------------------------------------------------
// PromQL

/// Words of PromQL that are never metric names: operators, modifiers, aggregations.
/// (Function names are recognised by the `(` that follows them.)
const PROMQL_KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "offset",
    "bool",
    "atan2",
    "inf",
    "nan",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];
/// Words followed by a list of label names in parentheses.
const PROMQL_LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The metric names a PromQL expression selects, in order of appearance (repeats kept).
/// Label matchers (`{…}`), ranges and subqueries (`[…]`), strings, numbers, durations,
/// label lists (`by (…)`), function names, keywords and Grafana variables (`$__range`,
/// `${var}`) are not names. A selector written only as `{__name__="…"}` names none.
fn promql_metric_names(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&chars, i);
        } else if c == '{' {
            i = skip_group(&chars, i, '{', '}');
        } else if c == '[' {
            i = skip_group(&chars, i, '[', ']');
        } else if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '$' {
            i += 1;
            if chars.get(i) == Some(&'{') {
                i = skip_group(&chars, i, '{', '}');
            } else {
                while i < chars.len() && is_word_char(chars[i]) {
                    i += 1;
                }
            }
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            // A number (1e3, 0x1f, .5) or a duration (5m, 1h30m).
            while i < chars.len() && (is_word_char(chars[i]) || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (is_word_char(chars[i]) || chars[i] == ':') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let lower = word.to_ascii_lowercase();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let opens_paren = chars.get(next) == Some(&'(');
            if PROMQL_LABEL_LISTS.contains(&lower.as_str()) {
                if opens_paren {
                    i = skip_group(&chars, next, '(', ')');
                }
            } else if !PROMQL_KEYWORDS.contains(&lower.as_str()) && !opens_paren {
                names.push(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// From the opening quote at `start` to just past the closing one.
fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() {
        if chars[i] == '\\' && quote != '`' {
            i += 2;
        } else if chars[i] == quote {
            return i + 1;
        } else {
            i += 1;
        }
    }
    chars.len()
}

/// From `open` at `start` to just past its matching `close`, skipping strings inside
/// (a label value may hold braces: `route="/orders/{order_id}"`).
fn skip_group(chars: &[char], start: usize, open: char, close: char) -> usize {
    let mut depth = 0usize;
    let mut i = start;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(chars, i);
            continue;
        }
        if c == open {
            depth += 1;
        } else if c == close {
            depth -= 1;
            if depth == 0 {
                return i + 1;
            }
        }
        i += 1;
    }
    chars.len()
}

// ---------------------------------------------------------------------------------------
// The dashboard

/// One query of the dashboard, named for messages.
#[derive(Debug)]
struct PanelQuery {
    panel: String,
    ref_id: String,
    expr: String,
}

fn check_dashboard(root: &Path, emitted: &EmittedMetrics) -> anyhow::Result<Vec<PanelQuery>> {
    let path = root.join(DASHBOARD);
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let dashboard: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {DASHBOARD} as JSON"))?;
    let (panel_count, queries) = dashboard_queries(&dashboard)
        .map_err(|problems| anyhow::anyhow!("{DASHBOARD}:\n  {}", problems.join("\n  ")))?;
    println!(
        "  {DASHBOARD}: {panel_count} panels with unique ids, {} queries, all on ${{{DATASOURCE_VARIABLE}}}",
        queries.len()
    );

    let mut unknown = Vec::new();
    let mut used = BTreeSet::new();
    for query in &queries {
        for series in promql_metric_names(&query.expr) {
            if emitted.metric_of(&series).is_some() {
                used.insert(series);
            } else {
                unknown.push(format!(
                    "{} query {}: {}",
                    query.panel,
                    query.ref_id,
                    emitted.explain_unknown(&series)
                ));
            }
        }
    }
    if !unknown.is_empty() {
        bail!(
            "{DASHBOARD} queries metrics the code does not emit:\n  {}",
            unknown.join("\n  ")
        );
    }
    let used_metrics: BTreeSet<&str> = used
        .iter()
        .filter_map(|series| emitted.metric_of(series))
        .collect();
    println!(
        "  {DASHBOARD}: the queries use {} series of {} metrics, all emitted by the code",
        used.len(),
        used_metrics.len()
    );
    let unused: Vec<&str> = emitted
        .kinds
        .keys()
        .map(String::as_str)
        .filter(|name| !used_metrics.contains(name))
        .collect();
    if !unused.is_empty() {
        println!("  not on the dashboard: {}", unused.join(", "));
    }
    Ok(queries)
}

/// The panel count and every query, or every structural problem found: the data-source
/// variable, unique panel ids, each panel and query on that variable, no empty query.
fn dashboard_queries(dashboard: &Value) -> Result<(usize, Vec<PanelQuery>), Vec<String>> {
    let mut problems = Vec::new();
    match dashboard["schemaVersion"].as_u64() {
        Some(version) if version >= MIN_SCHEMA_VERSION => {}
        other => problems.push(format!(
            "schemaVersion is {other:?}; expected {MIN_SCHEMA_VERSION} or later"
        )),
    }
    let has_variable = dashboard["templating"]["list"]
        .as_array()
        .is_some_and(|variables| {
            variables.iter().any(|variable| {
                variable["name"] == DATASOURCE_VARIABLE
                    && variable["type"] == "datasource"
                    && variable["query"] == "prometheus"
            })
        });
    if !has_variable {
        problems.push(format!(
            "no template variable `{DATASOURCE_VARIABLE}` of type datasource with query prometheus"
        ));
    }

    let mut panels = Vec::new();
    match dashboard["panels"].as_array() {
        Some(top) => collect_panels(top, &mut panels),
        None => problems.push("no `panels` array".to_owned()),
    }
    let mut ids = BTreeMap::new();
    let mut queries = Vec::new();
    for panel in &panels {
        let title = panel["title"].as_str().unwrap_or("(untitled)");
        let Some(id) = panel["id"].as_u64() else {
            problems.push(format!("panel \"{title}\" has no numeric id"));
            continue;
        };
        let name = format!("panel {id} \"{title}\"");
        if let Some(first) = ids.insert(id, title) {
            problems.push(format!("{name}: the same id as panel \"{first}\""));
        }
        let kind = panel["type"].as_str().unwrap_or_default();
        if kind == "row" || kind == "text" {
            continue;
        }
        if !is_datasource_variable(&panel["datasource"]) {
            problems.push(format!(
                "{name}: datasource is {}; expected {{\"type\": \"prometheus\", \"uid\": \"${{{DATASOURCE_VARIABLE}}}\"}}",
                panel["datasource"]
            ));
        }
        let targets = panel["targets"].as_array().map_or(&[][..], Vec::as_slice);
        if targets.is_empty() {
            problems.push(format!("{name}: no queries (targets)"));
        }
        for target in targets {
            let ref_id = target["refId"].as_str().unwrap_or("?").to_owned();
            if !target["datasource"].is_null() && !is_datasource_variable(&target["datasource"]) {
                problems.push(format!(
                    "{name} query {ref_id}: datasource is {}; expected the ${{{DATASOURCE_VARIABLE}}} variable",
                    target["datasource"]
                ));
            }
            match target["expr"].as_str().map(str::trim) {
                Some(expr) if !expr.is_empty() => queries.push(PanelQuery {
                    panel: name.clone(),
                    ref_id,
                    expr: expr.to_owned(),
                }),
                _ => problems.push(format!("{name} query {ref_id}: no PromQL `expr`")),
            }
        }
    }
    if problems.is_empty() {
        Ok((panels.len(), queries))
    } else {
        Err(problems)
    }
}

/// Every panel, with those inside (collapsed) rows.
fn collect_panels<'a>(panels: &'a [Value], out: &mut Vec<&'a Value>) {
    for panel in panels {
        out.push(panel);
        if let Some(inner) = panel["panels"].as_array() {
            collect_panels(inner, out);
        }
    }
}

fn is_datasource_variable(datasource: &Value) -> bool {
    datasource["type"] == "prometheus"
        && datasource["uid"]
            .as_str()
            .is_some_and(|uid| DATASOURCE_UIDS.contains(&uid))
}

/// promtool's parser on every dashboard query, as the recording rules of a scratch rule
/// file (Grafana's interval variables replaced by durations).
fn check_query_syntax(queries: &[PanelQuery]) -> anyhow::Result<()> {
    let mut rules = String::from("groups:\n  - name: dashboard-queries\n    rules:\n");
    for (index, query) in queries.iter().enumerate() {
        let expr = query
            .expr
            .replace("${__rate_interval}", "1m")
            .replace("$__rate_interval", "1m")
            .replace("${__interval}", "1m")
            .replace("$__interval", "1m")
            .replace("${__range}", "1h")
            .replace("$__range", "1h");
        // A JSON string is a YAML double-quoted scalar.
        let quoted = serde_json::to_string(&expr).context("quoting a query")?;
        rules.push_str(&format!(
            "      # {} query {}\n      - record: dashboard_query_{index}\n        expr: {quoted}\n",
            query.panel.replace('\n', " "),
            query.ref_id
        ));
    }
    let file =
        std::env::temp_dir().join(format!("keel-dashboard-queries-{}.yml", std::process::id()));
    fs::write(&file, rules).with_context(|| format!("writing {}", file.display()))?;
    let output = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .context("running promtool check rules on the dashboard's queries");
    let result = match output {
        Ok(output) if output.status.success() => {
            println!(
                "  {DASHBOARD}: promtool parses all {} queries",
                queries.len()
            );
            Ok(())
        }
        Ok(output) => Err(anyhow::anyhow!(
            "a query of {DASHBOARD} is not valid PromQL (in {}, the comment above each rule names its panel and query):\n{}{}",
            file.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )),
        Err(error) => Err(error),
    };
    // Kept on failure: the message points into it.
    if result.is_ok() {
        let _ = fs::remove_file(&file);
    }
    result
}

// ---------------------------------------------------------------------------------------
// The alerting rules and their tests

/// The metrics the alerts' expressions and the alert tests' input series name must be
/// emitted by the code: a renamed metric would leave an alert that never fires, and tests
/// that pass on series no process serves.
fn check_alert_metrics(root: &Path, emitted: &EmittedMetrics) -> anyhow::Result<()> {
    let mut unknown = Vec::new();
    let rules_text = read(root, ALERT_RULES)?;
    let exprs = yaml_values(&rules_text, "expr");
    if exprs.is_empty() {
        bail!("{ALERT_RULES} has no `expr:`");
    }
    for expr in &exprs {
        for series in promql_metric_names(expr) {
            if emitted.metric_of(&series).is_none() {
                unknown.push(format!(
                    "{ALERT_RULES}: {}",
                    emitted.explain_unknown(&series)
                ));
            }
        }
    }
    let tests_text = read(root, ALERT_TESTS)?;
    let inputs = yaml_values(&tests_text, "series");
    for series in &inputs {
        let name = series.split('{').next().unwrap_or_default().trim();
        if emitted.metric_of(name).is_none() {
            unknown.push(format!(
                "{ALERT_TESTS}: input series {}",
                emitted.explain_unknown(name)
            ));
        }
    }
    if !unknown.is_empty() {
        bail!(
            "the alerts name metrics the code does not emit:\n  {}",
            unknown.join("\n  ")
        );
    }
    println!(
        "  {ALERT_RULES}: {} expressions and {} test input series use only metrics the code emits",
        exprs.len(),
        inputs.len()
    );
    Ok(())
}

fn read(root: &Path, relative: &str) -> anyhow::Result<String> {
    let path = root.join(relative);
    fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

/// The values of every `key:` of a YAML text, as far as the rule files need: plain and
/// quoted scalars on the key's line, and `|` / `>` block scalars (lines kept as they are,
/// which is the same PromQL either way).
fn yaml_values(text: &str, key: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut values = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let content = line.trim_start();
        let content = content.strip_prefix("- ").unwrap_or(content).trim_start();
        let Some(rest) = content
            .strip_prefix(key)
            .and_then(|rest| rest.strip_prefix(':'))
        else {
            continue;
        };
        let indent = line.len() - content.len();
        let rest = rest.trim();
        if rest.starts_with('|') || rest.starts_with('>') {
            let block: Vec<&str> = lines[index + 1..]
                .iter()
                .take_while(|next| {
                    next.trim().is_empty() || next.len() - next.trim_start().len() > indent
                })
                .map(|next| next.trim())
                .collect();
            values.push(block.join("\n").trim().to_owned());
        } else if let Some(quoted) = rest.strip_prefix('\'') {
            let end = quoted.rfind('\'').unwrap_or(quoted.len());
            values.push(quoted[..end].replace("''", "'"));
        } else if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.rfind('"').unwrap_or(quoted.len());
            values.push(quoted[..end].replace("\\\"", "\"").replace("\\\\", "\\"));
        } else {
            values.push(rest.to_owned());
        }
    }
    values
}

// ---------------------------------------------------------------------------------------
// promtool

fn promtool(root: &Path, args: &[&str]) -> anyhow::Result<()> {
    let shown = format!("promtool {}", args.join(" "));
    let output = Command::new("promtool")
        .args(args)
        .current_dir(root)
        .output()
        .with_context(|| format!("running {shown}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!(
            "{shown} failed ({}):\n{}{}",
            output.status,
            stdout.trim_end(),
            stderr.trim_end()
        );
    }
    let results: Vec<&str> = stdout
        .lines()
        .chain(stderr.lines())
        .map(str::trim)
        .filter(|line| line.starts_with("SUCCESS"))
        .collect();
    println!("  {shown}: {}", results.join("; "));
    Ok(())
}

fn promtool_version() -> anyhow::Result<String> {
    let output = Command::new("promtool")
        .arg("--version")
        .output()
        .context("running promtool --version")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let text = if text.trim().is_empty() {
        String::from_utf8_lossy(&output.stderr)
    } else {
        text
    };
    Ok(text
        .lines()
        .next()
        .unwrap_or("unknown version")
        .trim()
        .to_owned())
}

/// promtool on PATH, else Debian's `prometheus` package (which carries it) through
/// `postgres::apt_install`. The package's maintainer scripts would start a Prometheus
/// server and enable it at boot: a `policy-rc.d` that denies every start is in place while
/// it installs, and on systemd hosts the unit is disabled afterwards.
fn ensure_promtool() -> anyhow::Result<()> {
    if has_command("promtool") {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "promtool is not installed and installing it (Debian's prometheus package) needs root: \
             run `apt-get install --no-install-recommends prometheus` as root, or put a promtool on PATH, then run this again"
        );
    }
    println!("  promtool: not installed; installing Debian's prometheus package, which carries it");
    {
        let _deny = DenyServiceStarts::install(Path::new(POLICY_RC_D))?;
        apt_install(&["prometheus"])?;
    }
    if Path::new("/run/systemd/system").is_dir() {
        // Enabled by the package's postinst for the next boot; the server is not wanted.
        let status = Command::new("systemctl")
            .args(["disable", "--now", "prometheus.service"])
            .status();
        if !status.is_ok_and(|status| status.success()) {
            println!(
                "  prometheus: could not disable prometheus.service; `systemctl disable --now prometheus` does"
            );
        }
    }
    stop_package_server()?;
    if !has_command("promtool") {
        bail!("Debian's prometheus package is installed but promtool is not on PATH");
    }
    Ok(())
}

/// Stops a Prometheus server that the package's install started anyway (an existing
/// `policy-rc.d` that allows starts); fails if it keeps running.
fn stop_package_server() -> anyhow::Result<()> {
    let Some(pid) = package_server_pid() else {
        return Ok(());
    };
    println!("  prometheus: the package started a server (pid {pid}); stopping it");
    let mut stop = if Path::new("/run/systemd/system").is_dir() {
        let mut command = Command::new("systemctl");
        command.args(["stop", "prometheus.service"]);
        command
    } else {
        let mut command = Command::new("/etc/init.d/prometheus");
        command.arg("stop");
        command
    };
    let _ = stop.status();
    for _ in 0..50 {
        if package_server_pid().is_none() {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    bail!(
        "installing Debian's prometheus package started a Prometheus server (pid {pid}) that did not stop; stop it with `kill {pid}`"
    )
}

/// A running `/usr/bin/prometheus`. Only called when promtool was missing, i.e. the
/// package was not installed before, so such a server is the install's.
fn package_server_pid() -> Option<u32> {
    let entries = fs::read_dir("/proc").ok()?;
    entries.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let cmdline = fs::read(entry.path().join("cmdline")).ok()?;
        let program = cmdline.split(|byte| *byte == 0).next()?;
        (program == PROMETHEUS_SERVER.as_bytes()).then_some(pid)
    })
}

/// A `policy-rc.d` that denies every service start (exit 101), in place until dropped.
/// One that is already there (a container's, an administrator's) is left as it is.
#[derive(Debug)]
struct DenyServiceStarts {
    written: Option<PathBuf>,
}

impl DenyServiceStarts {
    fn install(path: &Path) -> anyhow::Result<Self> {
        if path.exists() {
            return Ok(Self { written: None });
        }
        fs::write(
            path,
            "#!/bin/sh\n# Written by cargo xtask while it installs Debian's prometheus package for promtool;\n# removed when the install is done. 101: no service may start.\nexit 101\n",
        )
        .with_context(|| format!("writing {}", path.display()))?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("making {} executable", path.display()))?;
        Ok(Self {
            written: Some(path.to_owned()),
        })
    }
}

impl Drop for DenyServiceStarts {
    fn drop(&mut self) {
        if let Some(path) = &self.written {
            let _ = fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(expr: &str) -> Vec<String> {
        promql_metric_names(expr)
    }

    #[test]
    fn a_rate_by_labels_names_its_counter_only() {
        assert_eq!(
            names(
                "sum by (service, route) (rate(keel_http_requests_total{status=~\"5..\"}[$__rate_interval]))"
            ),
            ["keel_http_requests_total"]
        );
    }

    #[test]
    fn a_histogram_quantile_names_the_bucket_series() {
        assert_eq!(
            names(
                "histogram_quantile(0.99, sum by (aggregate, command, le) (rate(keel_command_duration_seconds_bucket[5m])))"
            ),
            ["keel_command_duration_seconds_bucket"]
        );
    }

    #[test]
    fn both_sides_of_binary_operators_are_names_and_keywords_are_not() {
        assert_eq!(
            names(
                "sum(rate(a_sum[1m])) / sum(rate(a_count[1m])) > 0 and on (instance) group_left (job) up unless absent(b) or c offset 5m > bool 1e3"
            ),
            ["a_sum", "a_count", "up", "b", "c"]
        );
    }

    #[test]
    fn a_grouping_after_the_aggregated_expression_is_not_a_name() {
        assert_eq!(
            names("max(keel_saga_flows) by (status) + ignoring(status) count without (x) (y)"),
            ["keel_saga_flows", "y"]
        );
    }

    #[test]
    fn label_values_with_braces_and_quotes_are_skipped() {
        assert_eq!(
            names(
                r#"keel_http_requests_total{route="/orders/{order_id}", code!='a}b', x=~"q\"}z"} * other"#
            ),
            ["keel_http_requests_total", "other"]
        );
    }

    #[test]
    fn grafana_variables_numbers_and_subqueries_are_not_names() {
        assert_eq!(
            names(
                "increase(keel_projector_dead_letters_total[$__range]) * ${factor} + $scale - 0.5 * .25 + deriv(sum(lag)[10m:1m])"
            ),
            ["keel_projector_dead_letters_total", "lag"]
        );
    }

    #[test]
    fn recording_rule_names_and_name_only_selectors() {
        assert_eq!(
            names("job:keel_commands:rate5m + {__name__=\"hidden\"} + SUM(x) BY (y)"),
            ["job:keel_commands:rate5m", "x"]
        );
    }

    #[test]
    fn a_multi_line_expression_with_a_comment() {
        assert_eq!(
            names(
                "sum by (projection) (keel_projector_lag_messages) > 100 # lag_note\nand\nsum by (projection) (deriv(keel_projector_lag_messages[5m])) > 0"
            ),
            ["keel_projector_lag_messages", "keel_projector_lag_messages"]
        );
    }

    const SOURCE: &str = r#"
        metrics::counter!("keel_a_total", "x" => y).increment(1);
        metrics::counter!(
            "keel_b_total",
            "aggregate" => aggregate,
        )
        .increment(1);
        gauge!("keel_c").set(1.0);
        let h = metrics::histogram!("keel_d_seconds");
        metrics::histogram!("keel_batch_size").record(3.0);
        metrics::describe_counter!("keel_described_total", "not an emission");
        metrics::counter!(name_at_run_time).increment(1);
        PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
    "#;

    fn emitted() -> EmittedMetrics {
        let mut emitted = EmittedMetrics::default();
        emitted.add_source(SOURCE);
        emitted
    }

    #[test]
    fn metric_names_come_from_literal_macro_arguments() {
        let emitted = emitted();
        let found: Vec<(&str, MetricKind)> = emitted
            .kinds
            .iter()
            .map(|(name, kind)| (name.as_str(), *kind))
            .collect();
        assert_eq!(
            found,
            [
                ("keel_a_total", MetricKind::Counter),
                ("keel_b_total", MetricKind::Counter),
                ("keel_batch_size", MetricKind::Histogram),
                ("keel_c", MetricKind::Gauge),
                ("keel_d_seconds", MetricKind::Histogram),
            ]
        );
        assert_eq!(emitted.buckets, [BucketMatcher::Suffix("_seconds".into())]);
    }

    #[test]
    fn histograms_with_buckets_have_bucket_series_and_the_others_are_summaries() {
        let emitted = emitted();
        for (series, metric) in [
            ("keel_a_total", Some("keel_a_total")),
            ("keel_c", Some("keel_c")),
            ("keel_d_seconds_bucket", Some("keel_d_seconds")),
            ("keel_d_seconds_sum", Some("keel_d_seconds")),
            ("keel_d_seconds_count", Some("keel_d_seconds")),
            ("keel_d_seconds", None),
            ("keel_batch_size", Some("keel_batch_size")),
            ("keel_batch_size_sum", Some("keel_batch_size")),
            ("keel_batch_size_count", Some("keel_batch_size")),
            ("keel_batch_size_bucket", None),
            ("keel_c_sum", None),
            ("keel_described_total", None),
            ("keel_missing_total", None),
        ] {
            assert_eq!(emitted.metric_of(series), metric, "{series}");
        }
        assert!(
            emitted
                .explain_unknown("keel_batch_size_bucket")
                .contains("summary")
        );
        assert!(
            emitted
                .explain_unknown("keel_d_seconds")
                .contains("_bucket")
        );
    }

    #[test]
    fn yaml_values_reads_plain_quoted_and_block_scalars() {
        let yaml = "rules:\n  - alert: A\n    expr: max(a) > 1\n  - alert: B\n    expr: >-\n      sum(b) > 1\n      and\n      sum(c) > 0\n    for: 5m\n  - expr: 'x{l=\"v\"}'\ninput_series:\n  - series: 'd{job=\"j\"}'\n    values: \"1x2\"\n";
        assert_eq!(
            yaml_values(yaml, "expr"),
            ["max(a) > 1", "sum(b) > 1\nand\nsum(c) > 0", "x{l=\"v\"}"]
        );
        assert_eq!(yaml_values(yaml, "series"), ["d{job=\"j\"}"]);
    }

    fn panel(id: u64, uid: &str, expr: &str) -> Value {
        serde_json::json!({
            "id": id, "type": "timeseries", "title": format!("p{id}"),
            "datasource": {"type": "prometheus", "uid": uid},
            "targets": [{"refId": "A", "expr": expr, "datasource": {"type": "prometheus", "uid": uid}}]
        })
    }

    fn dashboard(panels: Vec<Value>) -> Value {
        serde_json::json!({
            "schemaVersion": 39,
            "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus"}]},
            "panels": panels
        })
    }

    #[test]
    fn a_dashboard_on_the_variable_with_unique_ids_passes() {
        let row = serde_json::json!({
            "id": 3, "type": "row", "title": "r", "collapsed": true,
            "panels": [panel(4, "$datasource", "b")]
        });
        let (count, queries) =
            dashboard_queries(&dashboard(vec![panel(1, "${datasource}", "a"), row]))
                .expect("valid");
        assert_eq!(count, 3);
        let exprs: Vec<&str> = queries.iter().map(|q| q.expr.as_str()).collect();
        assert_eq!(exprs, ["a", "b"]);
    }

    #[test]
    fn duplicate_ids_fixed_datasources_and_empty_queries_are_reported() {
        let problems = dashboard_queries(&dashboard(vec![
            panel(1, "${datasource}", "a"),
            panel(1, "P1809F7CD0C75ACF3", "b"),
            panel(2, "${datasource}", " "),
        ]))
        .expect_err("invalid");
        assert_eq!(problems.len(), 4, "{problems:#?}");
        assert!(problems[0].contains("the same id as"));
        assert!(problems[1].contains("P1809F7CD0C75ACF3"));
        assert!(problems[3].contains("no PromQL"));
    }

    #[test]
    fn the_policy_guard_removes_only_the_file_it_wrote() {
        let dir = std::env::temp_dir().join(format!("keel-policy-rc-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("policy-rc.d");
        {
            let _guard = DenyServiceStarts::install(&path).unwrap();
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o755);
            assert!(fs::read_to_string(&path).unwrap().contains("exit 101"));
        }
        assert!(!path.exists());
        fs::write(&path, "#!/bin/sh\nexit 0\n").unwrap();
        drop(DenyServiceStarts::install(&path).unwrap());
        assert_eq!(fs::read_to_string(&path).unwrap(), "#!/bin/sh\nexit 0\n");
        fs::remove_dir_all(&dir).unwrap();
    }
}
