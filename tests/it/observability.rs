//! The chart's Grafana dashboard (`helm/sessiond/dashboards/*.json`) and
//! alerts (`helm/sessiond/templates/prometheusrule.yaml`) against a running
//! sessiond: every metric they read must be on its `/metrics`. A misspelt or
//! renamed metric does not fail anywhere else: the panel stays empty and the
//! alert never fires. The chart tests (`tests/helm`) check their shape; this
//! checks their names.
//!
//! The expressions are read like PromQL, not grepped (`observability/promql.rs`).
//! Each metric must be a series name on `/metrics` (so a histogram is read
//! through its `_bucket`, `_sum` or `_count` series, never by its family
//! name), what `rate()` and its kin read must be a counter or a histogram's
//! series, and what `histogram_quantile` reads must be a `_bucket`.

use std::collections::{BTreeMap, BTreeSet};

use sessiond::pb::Consistency;

use crate::support::scrape_metrics;
use crate::support::{Backend, Server, free_port, get, lock, set, unlock};

mod promql;

use promql::{Use, metrics_read};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const DASHBOARDS: &str = "helm/sessiond/dashboards";
const RULES: &str = "helm/sessiond/templates/prometheusrule.yaml";

/// Functions whose argument must be a counter (or a histogram's series).
const COUNTER_FUNCTIONS: &[&str] = &["rate", "irate", "increase", "resets"];

/// One PromQL expression and where it was found.
#[derive(Debug)]
struct Query {
    origin: String,
    expr: String,
}

/// Every query of the dashboards: panel targets (rows' nested panels too)
/// and the template variables' queries.
fn dashboard_queries() -> Vec<Query> {
    let mut queries = vec![];
    let dir = format!("{ROOT}/{DASHBOARDS}");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no dashboard in {dir}");
    for path in files {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut panels: Vec<&serde_json::Value> = vec![];
        for panel in dashboard["panels"].as_array().expect("a panels list") {
            panels.push(panel);
            panels.extend(panel["panels"].as_array().into_iter().flatten());
        }
        for panel in panels {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().expect("a target with an expr");
                queries.push(Query {
                    origin: format!("{file}: panel {} {}", panel["title"], target["refId"]),
                    expr: expr.to_owned(),
                });
            }
        }
        for var in dashboard["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if var["type"] == "query" {
                let query = var["query"].get("query").unwrap_or(&var["query"]);
                queries.push(Query {
                    origin: format!("{file}: variable ${}", var["name"].as_str().unwrap()),
                    expr: query.as_str().expect("a variable query").to_owned(),
                });
            }
        }
    }
    queries
}

/// The `expr:` of every rule in the template, inline or as a block scalar.
fn rule_queries() -> Vec<Query> {
    let template = std::fs::read_to_string(format!("{ROOT}/{RULES}")).unwrap();
    let lines: Vec<&str> = template.lines().collect();
    let indent = |line: &str| line.len() - line.trim_start().len();
    let mut alert = String::new();
    let mut queries = vec![];
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_start();
        i += 1;
        if let Some(name) = line.strip_prefix("- alert:") {
            alert = name.trim().to_owned();
        }
        let Some(rest) = line.strip_prefix("expr:") else {
            continue;
        };
        let mut expr = rest.trim().to_owned();
        if ["|", "|-", ">", ">-"].contains(&expr.as_str()) {
            let at = indent(lines[i - 1]);
            let body = lines[i..]
                .iter()
                .take_while(|l| l.trim().is_empty() || indent(l) > at)
                .count();
            expr = lines[i..i + body].join("\n");
            i += body;
        }
        queries.push(Query {
            origin: format!("{RULES}: {alert}"),
            expr,
        });
    }
    let alerts = template.matches("- alert:").count();
    assert!(alerts >= 6, "{RULES} holds {alerts} alerts");
    assert_eq!(queries.len(), alerts, "one expr per alert in {RULES}");
    queries
}

/// What `/metrics` exposes: every series name, and the type of each family.
struct Exposition {
    series: BTreeSet<String>,
    types: BTreeMap<String, String>,
}

impl Exposition {
    fn parse(text: &str) -> Exposition {
        let mut series = BTreeSet::new();
        let mut types = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                types.insert(name.to_owned(), kind.to_owned());
            } else if !line.starts_with('#') && !line.trim().is_empty() {
                let end = line.find(['{', ' ']).unwrap();
                series.insert(line[..end].to_owned());
            }
        }
        Exposition { series, types }
    }

    /// `counter`, `gauge`, or `histogram _bucket` (`_sum`, `_count`) for a
    /// histogram's series.
    fn kind(&self, name: &str) -> Option<String> {
        if let Some(kind) = self.types.get(name) {
            return Some(kind.clone());
        }
        ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
            let family = name.strip_suffix(suffix)?;
            (self.types.get(family)? == "histogram").then(|| format!("histogram {suffix}"))
        })
    }

    /// What is wrong with the metrics `q` reads; empty when nothing is.
    fn problems(&self, q: &Query) -> Vec<String> {
        let uses = metrics_read(&q.expr);
        if uses.is_empty() {
            return vec![format!("{}: reads no metric: {}", q.origin, q.expr)];
        }
        let mut problems = vec![];
        for Use { name, within } in uses {
            let kind = self.kind(&name);
            let inside = |f: &[&str]| within.iter().any(|w| f.contains(&w.as_str()));
            if !self.series.contains(&name) {
                let hint = match self.types.get(&name).map(String::as_str) {
                    Some("histogram") => " (a histogram: read its _bucket, _sum or _count)",
                    _ => "",
                };
                problems.push(format!("{}: {name} is not on /metrics{hint}", q.origin));
            } else if inside(COUNTER_FUNCTIONS)
                && !kind
                    .as_deref()
                    .is_some_and(|k| k == "counter" || k.starts_with("histogram"))
            {
                problems.push(format!(
                    "{}: {name} is a {}: rate() and increase() want a counter",
                    q.origin,
                    kind.unwrap_or_default()
                ));
            } else if inside(&["histogram_quantile"])
                && kind.as_deref() != Some("histogram _bucket")
            {
                problems.push(format!(
                    "{}: histogram_quantile reads {name}, not a _bucket series",
                    q.origin
                ));
            }
        }
        problems
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alerts_read_only_exposed_metrics() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let s = Server::start(Backend::Redis, &["--metrics-listen", &listen]).await;
    let mut c = s.client().await;
    c.update_session(set("u", &[("a", "1")])).await.unwrap();
    for consistency in [
        Consistency::Cached,
        Consistency::Cached,
        Consistency::Strong,
    ] {
        get(&mut c, "u", consistency).await.unwrap();
    }
    get(&mut c, "nobody", Consistency::Cached)
        .await
        .unwrap_err();
    let grant = lock(&mut c, "u", 5000, 0).await.unwrap();
    unlock(&mut c, "u", grant.lock_token).await.unwrap();
    s.stats().await;

    let exposed = Exposition::parse(&scrape_metrics(port).await);
    assert!(
        exposed
            .series
            .contains("grpc_server_handling_seconds_bucket"),
        "{:?}",
        exposed.series
    );
    let queries: Vec<Query> = dashboard_queries()
        .into_iter()
        .chain(rule_queries())
        .collect();
    assert!(queries.len() >= 30, "only {} queries found", queries.len());
    let problems: Vec<String> = queries.iter().flat_map(|q| exposed.problems(q)).collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Most of what sessiond exposes is on the dashboard.
    let read: BTreeSet<String> = queries
        .iter()
        .flat_map(|q| metrics_read(&q.expr))
        .map(|u| u.name)
        .collect();
    assert!(
        read.len() >= 20,
        "the dashboard and alerts read only {read:?}"
    );
}

/// The check itself, on the golden `/metrics` text: a misspelt name, a
/// histogram read by its family name, a gauge under rate() and a quantile of
/// a counter are each caught; the right spellings pass.
#[test]
fn a_misspelt_or_misused_metric_is_caught() {
    let golden = std::fs::read_to_string(format!("{ROOT}/tests/it/golden/metrics.prom")).unwrap();
    let exposed = Exposition::parse(&golden);
    let check = |expr: &str| {
        exposed.problems(&Query {
            origin: "test".into(),
            expr: expr.into(),
        })
    };
    for wrong in [
        r#"sum(rate(sessiond_cache_hit_total{job="$job"}[5m]))"#,
        "rate(grpc_server_handling_seconds[5m])",
        "histogram_quantile(0.99, sum by (le) (rate(grpc_server_handling_seconds_buckets[5m])))",
        "rate(sessiond_store_up[5m]) > 0",
        "histogram_quantile(0.5, rate(sessiond_lock_acquisitions_total[5m]))",
        "sessiond_store_errors",
        r#"label_values(sessiond_store_upp{namespace="$namespace"}, job)"#,
        "{{ .Values.x }} > 1",
    ] {
        assert_eq!(check(wrong).len(), 1, "{wrong} passed: {:?}", check(wrong));
    }
    for right in [
        r#"sum(rate(sessiond_cache_hits_total{job="$job"}[5m]))"#,
        "histogram_quantile(0.99, sum by (le) (rate(grpc_server_handling_seconds_bucket[5m])))",
        "rate(grpc_server_handling_seconds_sum[5m]) / rate(grpc_server_handling_seconds_count[5m])",
        "min(sessiond_store_up) == 0",
        r#"label_values(sessiond_store_up{namespace="$namespace"}, job)"#,
    ] {
        assert_eq!(check(right), Vec::<String>::new(), "{right}");
    }
}
