//! `weir topics`: like kafka-topics.sh.

use super::args::{parse, CliError, Kind};
use super::help_requested;
use crate::client::admin::{AlterOp, NewTopic, RESOURCE_TOPIC};
use crate::client::Admin;

pub const USAGE: &str = "\
usage: weir topics --bootstrap-server HOST:PORT ACTION [options]

actions (exactly one):
  --create                 create --topic (with --partitions, --replication-factor, --config)
  --list                   list topic names
  --describe               describe --topic, or every topic
  --alter                  grow --topic to --partitions N and/or set --config k=v
  --delete                 delete --topic

options:
  --topic NAME
  --partitions N           partition count (create: broker default when absent)
  --replication-factor N   replicas per partition (broker default when absent)
  --config k=v             topic config, repeatable
  --if-not-exists          with --create: no error when the topic exists
  --if-exists              with --delete/--alter: no error when the topic is absent";

const SPEC: &[(&str, Kind)] = &[
    ("bootstrap-server", Kind::Value),
    ("create", Kind::Switch),
    ("list", Kind::Switch),
    ("describe", Kind::Switch),
    ("alter", Kind::Switch),
    ("delete", Kind::Switch),
    ("topic", Kind::Value),
    ("partitions", Kind::Value),
    ("replication-factor", Kind::Value),
    ("config", Kind::Multi),
    ("if-not-exists", Kind::Switch),
    ("if-exists", Kind::Switch),
];

pub async fn run(args: &[String]) -> Result<(), CliError> {
    let p = parse(args, SPEC)?;
    if help_requested(&p, USAGE) {
        return Ok(());
    }
    let actions: Vec<&str> = ["create", "list", "describe", "alter", "delete"]
        .into_iter()
        .filter(|a| p.has(a))
        .collect();
    if actions.len() != 1 {
        return Err(CliError::new(
            "give exactly one of --create, --list, --describe, --alter, --delete",
        ));
    }
    let bootstrap = p.required("bootstrap-server")?;
    let admin = Admin::connect(bootstrap).await?;
    match actions[0] {
        "create" => {
            let topic = p.required("topic")?;
            let new = NewTopic {
                name: topic.to_string(),
                partitions: p.number("partitions", -1)?,
                replication_factor: p.number("replication-factor", -1)?,
                configs: p.pairs("config")?,
            };
            match admin.create_topic(new).await {
                Ok(()) => println!("Created topic {topic}."),
                Err(e) if p.has("if-not-exists") && e.code() == Some(36) => {}
                Err(e) => return Err(CliError::new(format!("cannot create topic {topic}: {e}"))),
            }
        }
        "list" => {
            for t in admin.list_topics(true).await? {
                println!("{t}");
            }
        }
        "describe" => {
            let topics = match p.value("topic") {
                Some(t) => vec![t.to_string()],
                None => admin.list_topics(true).await?,
            };
            for info in admin.describe_topics(&topics).await? {
                let configs = match admin.describe_configs(RESOURCE_TOPIC, &info.name).await {
                    Ok(entries) => entries
                        .iter()
                        .filter(|e| e.is_dynamic())
                        .map(|e| format!("{}={}", e.name, e.value.as_deref().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join(","),
                    // A broker without DescribeConfigs still gets a description.
                    Err(_) => String::new(),
                };
                let rf = info.partitions.first().map_or(0, |p| p.replicas.len());
                println!(
                    "Topic: {}\tTopicId: {}\tPartitionCount: {}\tReplicationFactor: {}\tConfigs: {}",
                    info.name,
                    topic_id_base64(&info.topic_id),
                    info.partitions.len(),
                    rf,
                    configs
                );
                for part in &info.partitions {
                    println!(
                        "\tTopic: {}\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}",
                        info.name,
                        part.partition,
                        if part.leader >= 0 {
                            part.leader.to_string()
                        } else {
                            "none".to_string()
                        },
                        join_ids(&part.replicas),
                        join_ids(&part.isr)
                    );
                }
            }
        }
        "alter" => {
            let topic = p.required("topic")?;
            if !p.has("partitions") && !p.has("config") {
                return Err(CliError::new("--alter needs --partitions and/or --config"));
            }
            let result = async {
                if p.has("partitions") {
                    admin
                        .create_partitions(topic, p.number("partitions", 0)?)
                        .await?;
                }
                let changes: Vec<(String, AlterOp, Option<String>)> = p
                    .pairs("config")?
                    .into_iter()
                    .map(|(k, v)| (k, AlterOp::Set, Some(v)))
                    .collect();
                if !changes.is_empty() {
                    admin.alter_configs(RESOURCE_TOPIC, topic, &changes).await?;
                }
                Ok::<(), CliError>(())
            }
            .await;
            match result {
                Ok(()) => {}
                Err(e) if p.has("if-exists") && e.0.contains("UNKNOWN_TOPIC_OR_PARTITION") => {}
                Err(e) => return Err(CliError::new(format!("cannot alter topic {topic}: {e}"))),
            }
        }
        "delete" => {
            let topic = p.required("topic")?;
            match admin.delete_topic(topic).await {
                Ok(()) => {}
                Err(e) if p.has("if-exists") && e.code() == Some(3) => {}
                Err(e) => return Err(CliError::new(format!("cannot delete topic {topic}: {e}"))),
            }
        }
        _ => unreachable!("actions are checked above"),
    }
    Ok(())
}

fn join_ids(ids: &[i32]) -> String {
    ids.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Kafka prints topic ids as URL-safe base64 without padding.
pub fn topic_id_base64(id: &[u8; 16]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(22);
    for chunk in id.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn topic_id_is_base64url() {
        assert_eq!(super::topic_id_base64(&[0; 16]), "AAAAAAAAAAAAAAAAAAAAAA");
        let mut id = [0u8; 16];
        id[0] = 0xfb;
        id[15] = 0xff;
        let s = super::topic_id_base64(&id);
        assert_eq!(s.len(), 22);
        assert!(s.starts_with("-w"));
        assert!(s.ends_with("_w"));
    }
}
