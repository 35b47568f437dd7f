"""aiokafka (asyncio) and kafkajs (Node) against a real `weir server`."""

import asyncio
import json
import os
import shutil
import subprocess
import unittest
import uuid

from harness import BrokerTestCase, kafka_partition

HERE = os.path.dirname(os.path.abspath(__file__))


class AioKafka(BrokerTestCase):
    def test_produce_and_consume(self):
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

        topic = f"aio-{uuid.uuid4().hex[:8]}"
        self.create_topic(topic, 2)

        async def scenario():
            producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all",
                                        enable_idempotence=True, compression_type="gzip")
            await producer.start()
            try:
                metas = [await producer.send_and_wait(topic, f"v{i}".encode(), key=f"k{i}".encode())
                         for i in range(50)]
            finally:
                await producer.stop()
            consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap,
                                        enable_auto_commit=False)
            await consumer.start()
            try:
                tps = [TopicPartition(topic, p) for p in range(2)]
                consumer.assign(tps)
                await consumer.seek_to_beginning(*tps)
                got = []
                while len(got) < 50:
                    batch = await consumer.getmany(timeout_ms=5000)
                    if not batch:
                        break
                    for tp, msgs in batch.items():
                        got += [(tp.partition, m.offset, m.key, m.value) for m in msgs]
                end = await consumer.end_offsets(tps)
            finally:
                await consumer.stop()
            return metas, got, end

        metas, got, end = asyncio.run(scenario())
        for i, m in enumerate(metas):
            self.assertEqual(m.partition, kafka_partition(f"k{i}".encode(), 2))
        self.assertEqual(len(got), 50)
        stored = {(p, o): (k, v) for p, o, k, v in got}
        for i, m in enumerate(metas):
            self.assertEqual(stored[(m.partition, m.offset)], (f"k{i}".encode(), f"v{i}".encode()))
        self.assertEqual(sum(end.values()), 50)


@unittest.skipUnless(shutil.which("node"), "node is not installed")
class KafkaJs(BrokerTestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.isdir(os.path.join(HERE, "kafkajs", "node_modules", "kafkajs")):
            subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund"],
                           cwd=os.path.join(HERE, "kafkajs"), check=True, timeout=300)
        super().setUpClass()

    def test_admin_keyed_produce_and_group_consume(self):
        topic = f"kjs-{uuid.uuid4().hex[:8]}"
        r = subprocess.run(["node", os.path.join(HERE, "kafkajs", "roundtrip.js"),
                            self.bootstrap, topic, "40"], capture_output=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        out = json.loads(r.stdout.decode().strip().splitlines()[-1])
        self.assertEqual(out["partitions"], 3)
        self.assertTrue(all(e == 0 for e in out["errors"]), out)
        self.assertEqual(out["high"], 40)
        # the group consumer saw every record once, each where murmur2 put it
        self.assertEqual(sorted(m["value"] for m in out["consumed"]),
                         sorted(f"v{i}" for i in range(40)))
        for m in out["consumed"]:
            self.assertEqual(kafka_partition(m["key"].encode(), 3), m["partition"])
        self.assertEqual(out["committed"], 40, "kafkajs commits what it consumed")
        # read back with kcat: each key sits where Java's murmur2 puts it
        seen = 0
        for p in range(3):
            lines = self.kcat("-C", "-t", topic, "-p", str(p), "-o", "beginning", "-e", "-q",
                              "-f", "%k\n").split()
            for key in lines:
                self.assertEqual(kafka_partition(key, 3), p, key)
            seen += len(lines)
        self.assertEqual(seen, 40)


if __name__ == "__main__":
    unittest.main()
