//! Every advertised (API, version) pair answers with a response that decodes
//! at that version: the version table is honest and no handler sets a field
//! its version cannot carry.
#![cfg(not(madsim))]

mod broker_support;

use broker_support::*;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use weir::protocol::versions::supported_versions;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn range(key: ApiKey) -> std::ops::RangeInclusive<i16> {
    let (lo, hi) = supported_versions(key).unwrap();
    lo..=hi
}

#[tokio::test]
async fn every_advertised_version_answers() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::connect(server.local_addr()).await;

    for v in range(ApiKey::ApiVersions) {
        assert_eq!(
            c.call(v, &ApiVersionsRequest::default()).await.error_code,
            0
        );
    }
    for v in range(ApiKey::CreateTopics) {
        let r = c
            .call(
                v,
                &CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
                    .with_name(name(&format!("ct-{v}")))
                    .with_num_partitions(1)
                    .with_replication_factor(1)]),
            )
            .await;
        assert_eq!(r.topics[0].error_code, 0, "CreateTopics v{v}");
    }
    let m = "ct-7";
    for v in range(ApiKey::Metadata) {
        let req = if v == 0 {
            MetadataRequest::default().with_topics(Some(vec![]))
        } else {
            MetadataRequest::default().with_topics(None)
        };
        let r = c.call(v, &req).await;
        assert_eq!(r.topics.len(), 6, "Metadata v{v}");
    }
    let id = c
        .call(12, &MetadataRequest::default().with_topics(None))
        .await
        .topics[5]
        .topic_id;
    for v in range(ApiKey::Produce) {
        let r = c
            .call(
                v,
                &ProduceRequest::default()
                    .with_transactional_id(None)
                    .with_acks(-1)
                    .with_timeout_ms(1000)
                    .with_topic_data(vec![TopicProduceData::default()
                        .with_name(name(m))
                        .with_partition_data(vec![PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(batch(&[record("k", b"v", 10)])))])]),
            )
            .await;
        assert_eq!(
            r.responses[0].partition_responses[0].error_code, 0,
            "Produce v{v}"
        );
        // An error response must encode too.
        let r = c
            .call(
                v,
                &ProduceRequest::default()
                    .with_transactional_id(None)
                    .with_acks(1)
                    .with_topic_data(vec![TopicProduceData::default()
                        .with_name(name("missing"))
                        .with_partition_data(vec![PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(batch(&[record("k", b"v", 10)])))])]),
            )
            .await;
        assert_eq!(
            r.responses[0].partition_responses[0].error_code, 3,
            "Produce v{v}"
        );
    }
    for v in range(ApiKey::Fetch) {
        let topic = FetchTopic::default().with_partitions(vec![FetchPartition::default()
            .with_partition(0)
            .with_fetch_offset(0)
            .with_partition_max_bytes(1 << 20)]);
        let topic = if v >= 13 {
            topic.with_topic_id(id)
        } else {
            topic.with_topic(name(m))
        };
        let r = c
            .call(
                v,
                &FetchRequest::default()
                    .with_replica_id(BrokerId(-1))
                    .with_max_bytes(1 << 20)
                    .with_topics(vec![topic]),
            )
            .await;
        let p = &r.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "Fetch v{v}");
        assert_eq!(
            decode_records(p.records.clone().unwrap()).len(),
            9,
            "Fetch v{v}"
        );
    }
    for v in range(ApiKey::ListOffsets) {
        for ts in [-1, -2, 0] {
            let r = c
                .call(
                    v,
                    &ListOffsetsRequest::default()
                        .with_replica_id(BrokerId(-1))
                        .with_topics(vec![ListOffsetsTopic::default()
                            .with_name(name(m))
                            .with_partitions(vec![ListOffsetsPartition::default()
                                .with_partition_index(0)
                                .with_timestamp(ts)])]),
                )
                .await;
            assert_eq!(r.topics[0].partitions[0].error_code, 0, "ListOffsets v{v}");
        }
    }
    for v in range(ApiKey::InitProducerId) {
        let r = c
            .call(
                v,
                &InitProducerIdRequest::default().with_transactional_id(None),
            )
            .await;
        assert_eq!(r.error_code, 0, "InitProducerId v{v}");
    }
    for v in range(ApiKey::DescribeConfigs) {
        let r = c
            .call(
                v,
                &DescribeConfigsRequest::default().with_resources(vec![
                    DescribeConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(StrBytes::from_static_str("ct-7"))
                        .with_configuration_keys(None),
                    DescribeConfigsResource::default()
                        .with_resource_type(4)
                        .with_resource_name(StrBytes::from_static_str(""))
                        .with_configuration_keys(None),
                ]),
            )
            .await;
        assert_eq!(r.results[0].error_code, 0, "DescribeConfigs v{v}");
        assert_eq!(r.results[1].error_code, 0, "DescribeConfigs v{v}");
    }
    for v in range(ApiKey::IncrementalAlterConfigs) {
        let r = c
            .call(
                v,
                &IncrementalAlterConfigsRequest::default().with_resources(vec![
                    AlterConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(StrBytes::from_static_str("ct-7"))
                        .with_configs(vec![AlterableConfig::default()
                            .with_name(StrBytes::from_static_str("retention.ms"))
                            .with_config_operation(0)
                            .with_value(Some(StrBytes::from_static_str("60000")))]),
                ]),
            )
            .await;
        assert_eq!(r.responses[0].error_code, 0, "IncrementalAlterConfigs v{v}");
    }
    for v in range(ApiKey::CreatePartitions) {
        let r = c
            .call(
                v,
                &CreatePartitionsRequest::default().with_topics(vec![
                    CreatePartitionsTopic::default()
                        .with_name(name(m))
                        .with_count(2 + v as i32),
                ]),
            )
            .await;
        assert_eq!(r.results[0].error_code, 0, "CreatePartitions v{v}");
    }
    for v in range(ApiKey::DescribeCluster) {
        let r = c.call(v, &DescribeClusterRequest::default()).await;
        assert_eq!(r.error_code, 0, "DescribeCluster v{v}");
    }
    for v in range(ApiKey::DeleteTopics) {
        let topic = format!("ct-{}", v + 1);
        let req = if v >= 6 {
            DeleteTopicsRequest::default().with_topics(vec![
                DeleteTopicState::default().with_name(Some(name(&topic)))
            ])
        } else {
            DeleteTopicsRequest::default().with_topic_names(vec![name(&topic)])
        };
        let r = c.call(v, &req).await;
        assert_eq!(r.responses[0].error_code, 0, "DeleteTopics v{v} {topic}");
    }
    server.shutdown().await.unwrap();
}
