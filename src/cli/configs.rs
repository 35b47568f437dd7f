//! `weir configs`: like kafka-configs.sh for topics and brokers.

use super::args::{parse, split_pair, CliError, Kind};
use super::help_requested;
use crate::client::admin::{AlterOp, RESOURCE_BROKER, RESOURCE_TOPIC};
use crate::client::Admin;

pub const USAGE: &str = "\
usage: weir configs --bootstrap-server HOST:PORT --entity-type topics|brokers
                    --entity-name NAME (--describe [--all] | --alter [--add-config k=v[,k=v]]
                    [--delete-config k[,k]])

options:
  --describe              print the configs set on the entity (--all: every config)
  --alter                 change configs
  --add-config k=v,...    set these configs (repeatable)
  --delete-config k,...   remove these configs, back to the default (repeatable)";

const SPEC: &[(&str, Kind)] = &[
    ("bootstrap-server", Kind::Value),
    ("entity-type", Kind::Value),
    ("entity-name", Kind::Value),
    ("describe", Kind::Switch),
    ("all", Kind::Switch),
    ("alter", Kind::Switch),
    ("add-config", Kind::Multi),
    ("delete-config", Kind::Multi),
];

pub async fn run(args: &[String]) -> Result<(), CliError> {
    let p = parse(args, SPEC)?;
    if help_requested(&p, USAGE) {
        return Ok(());
    }
    let (resource, label) = match p.required("entity-type")? {
        "topics" | "topic" => (RESOURCE_TOPIC, "topic"),
        "brokers" | "broker" => (RESOURCE_BROKER, "broker"),
        other => {
            return Err(CliError::new(format!(
                "--entity-type must be topics or brokers, got '{other}'"
            )))
        }
    };
    let name = p.required("entity-name")?;
    if p.has("describe") == p.has("alter") {
        return Err(CliError::new("give exactly one of --describe, --alter"));
    }
    let mut changes: Vec<(String, AlterOp, Option<String>)> = Vec::new();
    for list in p.values("add-config") {
        for item in list.split(',').filter(|s| !s.is_empty()) {
            let (k, v) = split_pair(item)
                .ok_or_else(|| CliError::new(format!("--add-config expects k=v, got '{item}'")))?;
            changes.push((k, AlterOp::Set, Some(v)));
        }
    }
    for list in p.values("delete-config") {
        for k in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            changes.push((k.to_string(), AlterOp::Delete, None));
        }
    }
    if p.has("alter") && changes.is_empty() {
        return Err(CliError::new(
            "--alter needs --add-config or --delete-config",
        ));
    }
    let admin = Admin::connect(p.required("bootstrap-server")?).await?;
    if p.has("describe") {
        let entries = admin.describe_configs(resource, name).await?;
        let all = p.has("all");
        println!(
            "{} configs for {label} {name} are:",
            if all { "All" } else { "Dynamic" }
        );
        for e in entries.iter().filter(|e| all || e.is_dynamic()) {
            let value = if e.is_sensitive {
                "null".to_string()
            } else {
                e.value.clone().unwrap_or_else(|| "null".to_string())
            };
            println!("  {}={} sensitive={}", e.name, value, e.is_sensitive);
        }
    } else {
        admin.alter_configs(resource, name, &changes).await?;
        println!("Completed updating config for {label} {name}.");
    }
    Ok(())
}
