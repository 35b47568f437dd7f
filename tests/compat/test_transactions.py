"""Transactions with real clients against a real `weir server`:
confluent-kafka's (librdkafka 2.16) transactional producer
(init/begin/produce/send_offsets_to_transaction/commit and abort) and a
read_committed consumer; kafka-python's transactional producer too."""

import os
import tempfile
import time
import unittest
import uuid

import confluent_kafka
from confluent_kafka import TopicPartition
import kafka

from harness import Broker, BrokerTestCase

BROKER_CONFIG = """
group.initial.rebalance.delay.ms=0
offsets.topic.num.partitions=3
transaction.state.log.num.partitions=3
"""


def name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Transactions(BrokerTestCase):
    @classmethod
    def setUpClass(cls):
        fd, cls.config_path = tempfile.mkstemp(prefix="weir-txn-", suffix=".properties")
        with os.fdopen(fd, "w") as f:
            f.write(BROKER_CONFIG)
        cls.broker = Broker(extra_args=["--config", cls.config_path]).start()
        cls.bootstrap = cls.broker.bootstrap

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        os.remove(cls.config_path)

    def producer(self, txn_id):
        p = confluent_kafka.Producer({
            "bootstrap.servers": self.bootstrap,
            "transactional.id": txn_id,
            "transaction.timeout.ms": 30000,
        })
        p.init_transactions(30)
        return p

    def read_committed(self, topic, expect, timeout=30):
        c = confluent_kafka.Consumer({
            "bootstrap.servers": self.bootstrap,
            "group.id": name("reader"),
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        })
        c.subscribe([topic])
        got = []
        deadline = time.time() + timeout
        while time.time() < deadline and len(got) < expect:
            m = c.poll(0.2)
            if m is None or m.error():
                continue
            got.append(m.value())
        # Linger a little: nothing more (aborted data) may show up.
        end = time.time() + 1.0
        while time.time() < end:
            m = c.poll(0.1)
            if m is not None and not m.error():
                got.append(m.value())
        c.close()
        return got

    def test_commit_abort_and_offsets(self):
        topic = name("txn")
        self.create_topic(topic, partitions=2)
        group = name("g")
        p = self.producer(name("tid"))

        p.begin_transaction()
        for i in range(3):
            p.produce(topic, value=f"c{i}".encode(), partition=i % 2)
        p.commit_transaction(30)

        p.begin_transaction()
        for i in range(3):
            p.produce(topic, value=f"a{i}".encode(), partition=i % 2)
        p.flush(10)
        p.abort_transaction(30)

        # Consume-transform-produce: offsets committed with the transaction.
        p.begin_transaction()
        p.produce(topic, value=b"c3", partition=0)
        meta = confluent_kafka.Consumer({"bootstrap.servers": self.bootstrap, "group.id": group})
        p.send_offsets_to_transaction(
            [TopicPartition(topic, 0, 42)], meta.consumer_group_metadata(), 30)
        p.commit_transaction(30)

        # An aborted offset commit stays invisible.
        p.begin_transaction()
        p.produce(topic, value=b"a3", partition=0)
        p.send_offsets_to_transaction(
            [TopicPartition(topic, 0, 99)], meta.consumer_group_metadata(), 30)
        p.abort_transaction(30)

        got = self.read_committed(topic, 4)
        self.assertEqual(sorted(got), [b"c0", b"c1", b"c2", b"c3"])
        committed = meta.committed([TopicPartition(topic, 0)], timeout=10)
        self.assertEqual(committed[0].offset, 42)
        meta.close()

    def test_second_producer_fences_the_first(self):
        topic = name("fence")
        self.create_topic(topic)
        tid = name("tid")
        p1 = self.producer(tid)
        p1.begin_transaction()
        p1.produce(topic, value=b"zombie")
        p1.flush(10)
        # The new instance aborts the zombie's open transaction.
        p2 = self.producer(tid)
        p2.begin_transaction()
        p2.produce(topic, value=b"live")
        p2.commit_transaction(30)
        with self.assertRaises(confluent_kafka.KafkaException):
            p1.commit_transaction(10)
        self.assertEqual(self.read_committed(topic, 1), [b"live"])

    def test_kafka_python_transactional_producer(self):
        topic = name("kp")
        self.create_topic(topic)
        p = kafka.KafkaProducer(bootstrap_servers=self.bootstrap,
                                transactional_id=name("kp-tid"))
        p.init_transactions()
        p.begin_transaction()
        p.send(topic, b"k1")
        p.commit_transaction()
        p.begin_transaction()
        p.send(topic, b"k-aborted")
        p.abort_transaction()
        p.close()
        self.assertEqual(self.read_committed(topic, 1), [b"k1"])


if __name__ == "__main__":
    unittest.main()
