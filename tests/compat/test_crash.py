"""kill -9 of the broker during acks=all produce, then a restart: every
acknowledged record is still there, exactly once, in order."""

import threading
import time
import unittest
import uuid

import confluent_kafka
from confluent_kafka import KafkaError, TopicPartition

from harness import Broker


class KillDuringProduce(unittest.TestCase):
    def test_kill9_restart_loses_no_acknowledged_record(self):
        broker = Broker().start()
        try:
            self.run_scenario(broker)
        finally:
            log = broker.log_tail()
            broker.cleanup()
            self.assertNotIn("panicked", log)

    def run_scenario(self, broker):
        topic = f"crash-{uuid.uuid4().hex[:8]}"
        acked, failed = [], []
        lock = threading.Lock()

        def on_delivery(err, msg):
            with lock:
                (failed if err else acked).append((msg.value(), msg.offset()))

        producer = confluent_kafka.Producer({
            "bootstrap.servers": broker.bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 2,
            "message.timeout.ms": 60000,
            "retry.backoff.ms": 50,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 500,
        })
        # create via auto-creation on first produce
        sent = 0
        killed_at = None
        restarted = False
        deadline = time.time() + 90
        while time.time() < deadline:
            producer.produce(topic, value=f"{sent:08d}".encode(), on_delivery=on_delivery)
            sent += 1
            producer.poll(0)
            if sent % 500 == 0:
                producer.poll(0.01)
            with lock:
                n_acked = len(acked)
            if killed_at is None and n_acked >= 20000:
                broker.kill9()  # mid-stream: requests are in flight
                killed_at = n_acked
                time.sleep(0.5)
                broker.start()
                restarted = True
            if restarted and sent >= killed_at + 40000:
                break
        self.assertEqual(producer.flush(60), 0, "records still unresolved after 60 s")
        self.assertTrue(restarted, "the broker was never killed: too few acks in 90 s")
        self.assertEqual(failed, [], "an idempotent producer with retries should not fail")

        consumer = confluent_kafka.Consumer({
            "bootstrap.servers": broker.bootstrap, "group.id": "unused",
            "enable.auto.commit": False, "enable.partition.eof": True})
        consumer.assign([TopicPartition(topic, 0, confluent_kafka.OFFSET_BEGINNING)])
        stored = []
        end = time.time() + 60
        while time.time() < end:
            m = consumer.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    break
                self.fail(m.error())
            stored.append((m.value(), m.offset()))
        consumer.close()

        stored_values = [v for v, _ in stored]
        self.assertEqual(len(set(stored_values)), len(stored_values), "duplicates stored")
        self.assertEqual([o for _, o in stored], list(range(len(stored))), "offset gaps")
        by_value = dict(stored)
        for value, offset in acked:
            self.assertIn(value, by_value, f"acknowledged record {value!r} lost")
            self.assertEqual(by_value[value], offset, "acknowledged offset changed")
        # per-partition order = send order for an idempotent producer
        self.assertEqual(stored_values, sorted(stored_values))


if __name__ == "__main__":
    unittest.main()
